"""Benchmark 12: goal exits (README.md, "Goals and exits"). n executions of an abandoned-cart
flow wait with a send in line (the workspace's SMS queue is paused, so the worker holds
each text); then one `order.paid` event per contact goes through `POST /api/v1/events`
(gunicorn, 8 clients). Measured: events per second and the seconds until every execution
has exited, beside the same number of events that end nothing (`page.viewed`, the same
request path) posted just before; afterwards, that every pending send was cancelled and
none was sent."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bench.harness import Cluster
from bench.load import Client, wait_for

CONCURRENCY = 8


def journeys(cluster: Cluster, n: int, row: Callable[..., None]) -> None:
    from core.audit import COMMAND
    from core.models import Contact
    from flows import services
    from flows.models import Execution, Flow
    from messaging.delivery import pauses
    from messaging.models import Message

    print(f"journeys: {n} waiting executions with a held send, exited by one event each",
          flush=True)
    workspace, key = cluster.workspace("journeys")
    Contact.objects.bulk_create([Contact(workspace=workspace, external_id=f"j{i}",
                                         phone="+14155552671") for i in range(n)],
                                batch_size=5000)
    pauses.queue_pause(queue="sms", workspace=workspace, actor=COMMAND, reason="bench")
    flow = Flow.objects.create(
        workspace=workspace, name="cart", trigger={"type": "manual"},
        settings={"goal": {"event": "order.paid"}, "exit_on": [{"event": "unsubscribed"}]},
        nodes=[{"id": "remind", "type": "send_sms", "data": {"body": "Finish checkout"}},
               {"id": "wait", "type": "delay", "data": {"seconds": 86400}}],
        edges=[{"id": "e", "source": "remind", "target": "wait"}])
    services.flow_set_status(flow=flow, status=Flow.Status.ACTIVE)
    services.bulk_start_create(flow=flow, contact_ids=None, rules=None, data={})
    held = Message.objects.filter(workspace=workspace, status="scheduled", due_at__isnull=True)
    wait_for(lambda: held.count() >= n, timeout=3600, interval=1.0)

    failures: list[int] = []
    baseline = _post_events(cluster, key, n, "page.viewed", failures)
    spent = _post_events(cluster, key, n, "order.paid", failures)
    executions = Execution.objects.filter(flow=flow)
    row("journeys", f"goal events accepted per second ({n} contacts, 8 clients)", n / spent,
        "events/s", n / baseline, "events that end nothing (page.viewed)", "ratio >= 0.5")
    row("journeys", f"{n} waiting executions exited by one event each", spent, "s",
        target="within seconds", higher_is_better=False)
    row("journeys", "executions not exited", float(executions.exclude(status="exited").count()),
        "executions", target="0")
    messages = Message.objects.filter(workspace=workspace)
    row("journeys", "pending sends not cancelled",
        float(messages.exclude(status="cancelled").count()), "messages", target="0")
    row("journeys", "events refused", float(len(failures)), "requests", target="0")


def _post_events(cluster: Cluster, key: str, n: int, name: str, failures: list[int]) -> float:
    """Post one event of this name per contact with 8 clients; return the seconds spent."""
    indexes = iter(range(n))
    lock = threading.Lock()

    def post() -> None:
        client = Client(cluster.web_url, {"Authorization": f"Bearer {key}"})
        while True:
            with lock:
                i = next(indexes, None)
            if i is None:
                return
            status, _ = client.post("/api/v1/events", {"name": name,
                                                       "contact_external_id": f"j{i}"})
            if status != 202:
                failures.append(status)

    started = time.perf_counter()
    threads = [threading.Thread(target=post) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started
