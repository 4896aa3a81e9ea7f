"""The per-flow hourly totals of finished executions (monitoring/migrations/0014) say what the
executions table says through inserts, updates, branch rows, deletes and compaction; the
overview's execution figures read from them match counting the rows: the counts exactly,
the duration percentiles within the buckets' precision (PostgreSQL, where triggers keep
the totals; elsewhere the overview counts the rows)."""
from __future__ import annotations

import importlib
import math
from collections import Counter
from datetime import UTC, timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from flows.models import Execution
from monitoring import counters, rollups
from monitoring.dashboard.selectors import overview
from monitoring.dashboard.selectors.windows import window_for
from tests.factories import ExecutionFactory, FlowFactory, WorkspaceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the per-flow totals are PostgreSQL triggers")]

migration = importlib.import_module("monitoring.migrations.0014_flow_hourly_counts")

RANGES = ["24h", "7d", "30d", "all"]

TOTALS = """
SELECT workspace_id, flow_id, hour, status, bucket, sum(n) FROM (
  SELECT workspace_id, flow_id, hour, status, bucket, n FROM monitoring_flowhourlycount
  UNION ALL
  SELECT workspace_id, flow_id, hour, status, bucket, n FROM monitoring_flowhourlydelta
) AS counted GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0
"""


def bucket_of(seconds: float) -> int:
    """The bucket monitoring.rollups describes for a duration."""
    if seconds < rollups.SMALLEST_SECONDS:
        return 0
    return 1 + math.floor(rollups.BUCKETS_PER_DOUBLING
                          * math.log2(seconds / rollups.SMALLEST_SECONDS))


def totals() -> Counter:
    """Every per-flow total, pending deltas included."""
    with connection.cursor() as cursor:
        cursor.execute(TOTALS)
        return Counter({tuple(key): n for *key, n in cursor.fetchall()})


def from_the_table() -> Counter:
    """The same totals counted from the executions contacts entered that finished."""
    counted: Counter = Counter()
    for execution in Execution.objects.entered().filter(completed_at__isnull=False):
        hour = rollups.hour_start(execution.completed_at.astimezone(UTC))
        counted[(execution.workspace_id, execution.flow_id, hour, execution.status,
                 bucket_of(execution.duration_seconds))] += 1
    return counted


def pending_deltas() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_flowhourlydelta")
        return cursor.fetchone()[0]


# Durations away from a bucket's edge (no power of two), one under a millisecond.
DURATIONS = [0.0, 0.0004, 0.3, 1.5, 7.0, 40.0, 95.0, 3700.0]


STATUSES = ["completed", "completed", "failed", "cancelled"]


def build(workspace) -> None:
    """Two flows' executions (16 each) finished over the last days with every status and
    duration, one running, and a parallel branch that finished."""
    now = timezone.now()
    for f, name in enumerate(["Welcome", "Reminder"]):
        flow = FlowFactory(workspace=workspace, name=name)
        for j, seconds in enumerate(DURATIONS * 2):
            completed = now - timedelta(hours=(j * 7 + f * 3) % 80, minutes=3)
            ExecutionFactory(workspace=workspace, flow=flow, status=STATUSES[(j + j // 8) % 4],
                             started_at=completed - timedelta(seconds=seconds),
                             completed_at=completed)
    entered = ExecutionFactory(workspace=workspace, flow=flow, status="running",
                               started_at=now - timedelta(hours=2))
    ExecutionFactory(workspace=workspace, flow=flow, status="completed", root=entered,
                     parent=entered, started_at=now - timedelta(hours=2),
                     completed_at=now - timedelta(hours=1))


def test_the_bucket_definition_is_the_triggers():
    assert migration.BUCKETS_PER_DOUBLING == rollups.BUCKETS_PER_DOUBLING
    assert migration.SMALLEST_SECONDS == rollups.SMALLEST_SECONDS
    for seconds in DURATIONS[2:]:
        middle = rollups.bucket_seconds(bucket_of(seconds))
        assert middle == pytest.approx(seconds, rel=rollups.BUCKET_PRECISION)


def test_the_totals_follow_inserts_updates_branches_and_deletes():
    workspace = WorkspaceFactory()
    build(workspace)
    build(WorkspaceFactory())
    assert totals() == from_the_table()
    assert sum(totals().values()) == 64  # the branch and the running ones count nowhere
    now = timezone.now()
    executions = Execution.objects.filter(workspace=workspace)
    executions.filter(status="running").update(status="completed", completed_at=now)
    executions.filter(status="failed").update(status="completed")  # a retried failure
    counters.counters_compact()
    moved = executions.filter(status="cancelled").first()
    moved.started_at -= timedelta(hours=31)  # another hour and another bucket
    moved.completed_at -= timedelta(hours=30)
    moved.save()
    executions.filter(root__isnull=False).update(status="failed", completed_at=now)
    executions.filter(status="completed", completed_at__lt=now - timedelta(hours=40)).delete()
    executions.filter(status="cancelled").first().delete()
    assert pending_deltas() > 0
    assert totals() == from_the_table()
    counters.counters_compact()
    assert pending_deltas() == 0
    assert totals() == from_the_table()


def test_the_migration_counts_what_is_there_and_reverses():
    build(WorkspaceFactory())
    editor = SimpleNamespace(connection=connection)
    expected = from_the_table()
    migration.uninstall(None, editor)
    assert totals() == Counter()
    ExecutionFactory(status="failed", completed_at=timezone.now())  # counted by the scan
    migration.install(None, editor)
    assert pending_deltas() == 0  # folded at once
    assert totals() == from_the_table() != expected
    ExecutionFactory(status="completed", completed_at=timezone.now())  # by the trigger
    assert totals() == from_the_table()


def figures(workspace, key: str) -> tuple[list, list, list]:
    window = window_for(workspace, key)
    kpis = [(k.key, k.value, k.trend, k.previous)
            for k in overview.overview_kpis(workspace, window)]
    flows = overview.flow_figures(workspace, window)
    return kpis, [(f.flow_id, f.name, f.finished, f.completed, f.failed) for f in flows], [
        (f.p50, f.p90, f.p99, f.approximate) for f in flows]


def rolled_and_scanned(workspace, key: str, monkeypatch) -> tuple[tuple, tuple]:
    rolled = figures(workspace, key)
    with monkeypatch.context() as patched:
        patched.setattr(overview, "rollups_cover", lambda *args: False)
        scanned = figures(workspace, key)
    return rolled, scanned


def assert_close(rolled: list, scanned: list) -> None:
    """The percentiles from the buckets are within their precision of percentile_cont's."""
    assert len(rolled) == len(scanned)
    for (*from_buckets, approximate), (*exact, exactly) in zip(rolled, scanned, strict=True):
        assert approximate and not exactly
        for value, truth in zip(from_buckets, exact, strict=True):
            if truth is None:
                assert value is None
            else:
                assert abs(value - truth) <= (rollups.BUCKET_PRECISION * truth
                                              + rollups.SMALLEST_SECONDS)


@pytest.mark.parametrize("key", RANGES)
def test_the_overview_execution_figures_from_the_totals_match_the_rows(key, monkeypatch):
    workspace = WorkspaceFactory()
    build(workspace)
    build(WorkspaceFactory())  # another workspace's count for it alone
    for _ in range(2):
        (kpis, flows, percentiles), (exact_kpis, exact_flows, exact) = rolled_and_scanned(
            workspace, key, monkeypatch)
        assert kpis == exact_kpis
        assert flows == exact_flows and flows
        assert_close(percentiles, exact)
        counters.counters_compact()


def test_the_flows_shown_are_the_busiest_then_by_name(monkeypatch):
    workspace = WorkspaceFactory()
    now = timezone.now()
    for name, finished in [("d", 1), ("c", 2), ("b", 2), ("a", 1), ("e", 3)]:
        flow = FlowFactory(workspace=workspace, name=name)
        for _ in range(finished):
            ExecutionFactory(workspace=workspace, flow=flow, started_at=now - timedelta(hours=2),
                             completed_at=now - timedelta(hours=1))
    monkeypatch.setattr(overview, "FLOWS_SHOWN", 2)  # c ties with b, the second: b shows
    rolled, scanned = rolled_and_scanned(workspace, "24h", monkeypatch)
    assert [row[1] for row in rolled[1]] == ["e", "b"]
    assert rolled[1] == scanned[1]


def test_the_overview_reads_the_totals_not_the_executions(staff):
    workspace = WorkspaceFactory()
    build(workspace)
    with CaptureQueriesContext(connection) as queries:
        response = staff.get("/dashboard/", {"workspace": str(workspace.pk), "range": "24h"})
    assert response.status_code == 200
    counted = [q["sql"] for q in queries.captured_queries if "flows_execution" in q["sql"]
               and ("COUNT(" in q["sql"].upper() or "percentile_cont" in q["sql"])]
    assert counted == []
    assert any("monitoring_flowhourlycount" in q["sql"] for q in queries.captured_queries)
    html = response.content.decode()
    assert "≈" in html and "approximate (within 4.4%)" in html
