"""The per-flow hourly totals of finished executions (monitoring/migrations/0014) say what the
executions table says through inserts, updates, branch rows, deletes and compaction
(PostgreSQL, where triggers keep the totals)."""
from __future__ import annotations

import importlib
import math
from collections import Counter
from datetime import UTC, timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone

from flows.models import Execution
from monitoring import counters, rollups
from tests.factories import ExecutionFactory, FlowFactory, WorkspaceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the per-flow totals are PostgreSQL triggers")]

migration = importlib.import_module("monitoring.migrations.0014_flow_hourly_counts")

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
