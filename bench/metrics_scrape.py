"""Benchmark: GET /metrics against a large history.

Messages (and a fifth as many flow steps) are generated inside PostgreSQL with
generate_series, copying one real row so every column is valid, in chunks. The figure is the
scrape time through gunicorn (median of 10; the counters kept by triggers), the baseline the
same history families computed the old way, by scanning the tables (median of 3, in this
process against the same database).
"""
from __future__ import annotations

import statistics
import time
import urllib.request
from collections.abc import Callable

from bench.harness import Cluster

CHUNK = 500_000
STATUSES = "ARRAY['sent','sent','sent','delivered','failed','queued','scheduled','cancelled']"
TOKEN = "bench-scrape"


def _copy_rows(cursor, table: str, template_id: object, n: int, override: dict[str, str],
               log: str) -> None:
    """Insert n copies of one row, with some columns computed from the series index i."""
    cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                   "ORDER BY ordinal_position", [table])
    columns = [row[0] for row in cursor.fetchall()]
    select = ", ".join(override.get(c, f't."{c}"') for c in columns)
    quoted = ", ".join(f'"{c}"' for c in columns)
    for offset in range(0, n, CHUNK):
        size = min(CHUNK, n - offset)
        started = time.monotonic()
        cursor.execute(f"INSERT INTO {table} ({quoted}) SELECT {select} FROM {table} t, "
                       f"generate_series({offset + 1}, {offset + size}) AS i WHERE t.id = %s",
                       [template_id])
        print(f"  {log}: {offset + size} rows ({time.monotonic() - started:.1f}s)", flush=True)


def history(n: int, workspace_name: str = "metrics") -> tuple[int, int]:
    """Generate n messages and n // 5 steps in the named workspace (its flow "history");
    return the table sizes after."""
    from django.db import connection
    from django.utils import timezone

    from core.models import Contact, Workspace
    from flows.models import Execution, Flow, Step
    from messaging.delivery import creation
    from messaging.models import Message

    workspace = Workspace.objects.get(name=workspace_name)
    [message] = creation.message_create_many(messages=[creation.message_build(
        workspace=workspace, channel="sms", to="+14155552671", content={"body": "history"},
        send_at=timezone.now() + timezone.timedelta(days=365))])
    contact = Contact.objects.create(workspace=workspace, external_id="history")
    flow = Flow.objects.create(workspace=workspace, name="history", edges=[],
                               nodes=[{"id": "n", "type": "end"}])
    from flows import services

    services.flow_publish(flow=flow)
    execution = Execution.objects.create(workspace=workspace, flow=flow, contact=contact,
                                         version=flow.versions.first(), current_node="",
                                         status="completed")
    step = Step.objects.create(execution=execution, node_id="n", node_type="condition",
                               status="completed", completed_at=timezone.now())
    with connection.cursor() as cursor:
        _copy_rows(cursor, "messaging_message", message.pk, n, {
            "id": "gen_random_uuid()",
            "channel": "(ARRAY['sms','email','webhook'])[1 + i %% 3]",
            "status": f"({STATUSES})[1 + i %% 8]",
            "created_at": "now() - make_interval(secs => i %% 86400)",
            "scheduled_for": "NULL", "due_at": "NULL",
            "sent_at": "CASE WHEN i %% 8 < 4 THEN now() - make_interval(secs => i %% 86400) "
                       "+ make_interval(secs => (i %% 97) / 10.0) END"}, "messages")
        _copy_rows(cursor, "flows_step", step.pk, n // 5, {
            "id": "nextval(pg_get_serial_sequence('flows_step', 'id'))",
            "node_id": "'n' || i", "node_type": "(ARRAY['condition','send_sms','delay'])"
                                                "[1 + i %% 3]",
            "started_at": "now() - make_interval(secs => i %% 3600)",
            "completed_at": "now() - make_interval(secs => i %% 3600) "
                            "+ make_interval(secs => (i %% 50) / 10.0)"}, "steps")
        cursor.execute("ANALYZE messaging_message; ANALYZE flows_step")
    return Message.objects.count(), Step.objects.count()


def metrics(cluster: Cluster, n: int, row: Callable[..., None]) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from monitoring import counters
    from monitoring.metrics import RelayCollector

    print(f"metrics: /metrics with {n} messages and {n // 5} steps in history", flush=True)
    cluster.workspace("metrics")
    messages, steps = history(n)
    counters.counters_compact()

    def scrape() -> float:
        request = urllib.request.Request(f"{cluster.web_url}/metrics",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
        return (time.perf_counter() - started) * 1000

    scrape()  # warm the worker's connection
    counted = statistics.median(scrape() for _ in range(10))

    class Scan(RelayCollector):
        """The history families as every scrape computed them before the counters."""

        def collect(self):  # type: ignore[override]
            for part in (self.messages, self.delivery_latency, self.attempts,
                         self.executions, self.step_latency):
                yield from part()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Scan())
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        generate_latest(registry)
        timings.append((time.perf_counter() - started) * 1000)
    scanned = statistics.median(timings)
    row("metrics", f"/metrics scrape, {messages} messages and {steps} steps", counted, "ms",
        scanned, "the same families by table scan (before)", "< 100 ms",
        higher_is_better=False)
