"""Benchmark 12: goal exits (README.md, "Goals and exits"). n + SINGLE executions of an
abandoned-cart flow wait with a send in line (the workspace's SMS queue is paused, so the
worker holds each text); then one `order.paid` event per contact arrives: for SINGLE of them
one `POST /api/v1/events` each (gunicorn, 8 clients), for the n others `POST
/api/v1/events/batch` with BATCH events a request (2 clients, one per gunicorn worker).
Measured: events per second and the seconds until every execution has exited, beside the
same number of events that end nothing (`page.viewed`, the same request path) posted just
before; the CPU seconds gunicorn and the workers spent on the batches; afterwards, that
every pending send was cancelled and none was sent."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from bench.harness import Cluster, cpu_of_tree
from bench.load import Client, wait_for

CONCURRENCY = 8
BATCH = 1000  # settings.EVENT_BATCH_LIMIT
BATCH_CLIENTS = 2
SINGLE = 1000


def journeys(cluster: Cluster, n: int, row: Callable[..., None]) -> None:
    from core.audit import COMMAND
    from core.models import Contact
    from flows import services
    from flows.models import Execution, Flow
    from messaging.delivery import pauses
    from messaging.models import Message

    single = min(n, SINGLE)
    print(f"journeys: {n} + {single} waiting executions with a held send, exited by one event "
          "each", flush=True)
    workspace, key = cluster.workspace("journeys")
    Contact.objects.bulk_create([Contact(workspace=workspace, external_id=f"j{i}",
                                         phone="+14155552671") for i in range(n + single)],
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
    wait_for(lambda: held.count() >= n + single, timeout=3600, interval=1.0)

    failures: list[int] = []
    ones = range(n, n + single)
    baseline = _post(cluster, key, _singles("page.viewed", ones), CONCURRENCY, failures)
    spent = _post(cluster, key, _singles("order.paid", ones), CONCURRENCY, failures)
    row("journeys", f"goal events accepted per second, one a request ({single} contacts, "
        f"{CONCURRENCY} clients)", single / spent, "events/s", single / baseline,
        "events that end nothing (page.viewed)", "ratio >= 0.5")
    baseline = _post(cluster, key, _batches("page.viewed", range(n)), BATCH_CLIENTS, failures)
    cpu = _cpu(cluster)
    spent = _post(cluster, key, _batches("order.paid", range(n)), BATCH_CLIENTS, failures)
    cpu = _cpu(cluster) - cpu
    row("journeys", f"goal events accepted per second, {BATCH} a request ({n} contacts)",
        n / spent, "events/s", n / baseline, "events that end nothing (page.viewed)")
    row("journeys", f"{n} waiting executions exited by one event each, {BATCH} a request",
        spent, "s", target="within seconds", higher_is_better=False)
    row("journeys", f"web + worker CPU per 1,000 goal events, {BATCH} a request",
        cpu / n * 1000, "s")
    executions = Execution.objects.filter(flow=flow)
    row("journeys", "executions not exited", float(executions.exclude(status="exited").count()),
        "executions", target="0")
    messages = Message.objects.filter(workspace=workspace)
    row("journeys", "pending sends not cancelled",
        float(messages.exclude(status="cancelled").count()), "messages", target="0")
    row("journeys", "events refused", float(len(failures)), "requests", target="0")


def _cpu(cluster: Cluster) -> float:
    """Return the CPU seconds gunicorn and the workers (with their children) spent so far."""
    return sum(cpu_of_tree(cluster.procs[name].pid) for name in ("web", "worker"))


def _singles(name: str, indexes: range) -> Iterator[tuple[str, dict]]:
    return (("/api/v1/events", {"name": name, "contact_external_id": f"j{i}"})
            for i in indexes)


def _batches(name: str, indexes: range) -> Iterator[tuple[str, dict]]:
    return (("/api/v1/events/batch", {"events": [
        {"name": name, "contact_external_id": f"j{i}"} for i in indexes[at:at + BATCH]]})
        for at in range(0, len(indexes), BATCH))


def _post(cluster: Cluster, key: str, requests: Iterator[tuple[str, dict]], clients: int,
          failures: list[int]) -> float:
    """Post the requests with this many clients; return the seconds spent."""
    lock = threading.Lock()

    def post() -> None:
        client = Client(cluster.web_url, {"Authorization": f"Bearer {key}"})
        while True:
            with lock:
                request = next(requests, None)
            if request is None:
                return
            status, _ = client.post(*request)
            if status != 202:
                failures.append(status)

    started = time.perf_counter()
    threads = [threading.Thread(target=post) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started
