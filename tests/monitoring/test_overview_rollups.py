"""The overview from the hourly totals (monitoring.rollups) says what counting the tables
says, through inserts, bulk and single updates, deletes and compaction (PostgreSQL, where
triggers keep the totals; elsewhere the overview counts the tables)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from flows.models import Execution
from messaging.models import Message
from monitoring import counters
from monitoring.dashboard.selectors import overview
from monitoring.dashboard.selectors.windows import window_for
from tests.factories import ExecutionFactory, MessageFactory, WorkspaceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the hourly totals are PostgreSQL triggers")]

RANGES = ["24h", "7d", "30d", "all"]


def read_all(workspace, key: str) -> dict:
    """Everything the overview shows that comes from messages and executions."""
    window = window_for(workspace, key)
    return {
        "kpis": [(k.key, k.value, k.trend, k.previous)
                 for k in overview.overview_kpis(workspace, window)],
        "message_counts": overview.status_counts(Message, workspace, window, "created_at"),
        "execution_counts": overview.status_counts(Execution, workspace, window,
                                                   "started_at"),
        "messages": rounded(overview.message_series(workspace, window)),
        "executions": rounded(overview.execution_series(workspace, window)),
    }


def rounded(series: overview.TimeSeries) -> tuple:
    """The series to the millisecond: PostgreSQL averages intervals to the microsecond."""
    return series.labels, {name: [None if v is None else round(v, 3) for v in values]
                           for name, values in series.values.items()}


def both_ways(workspace, key: str, monkeypatch) -> tuple[dict, dict]:
    """Return the overview's figures from the hourly totals and from counting the tables."""
    rolled = read_all(workspace, key)
    with monkeypatch.context() as patched:
        patched.setattr(overview, "rollups_cover", lambda *args: False)
        scanned = read_all(workspace, key)
    return rolled, scanned


def build(workspace) -> None:
    now = timezone.now()
    for hours, status, sent_after in [(1, "sent", 3), (1, "failed", None), (5, "delivered", 9),
                                      (30, "sent", 1), (30, "queued", None),
                                      (50, "undelivered", None), (200, "suppressed", None),
                                      (24 * 40, "sent", 2)]:
        created = now - timedelta(hours=hours, minutes=7)
        MessageFactory(workspace=workspace, status=status, created_at=created,
                       sent_at=created + timedelta(seconds=sent_after) if sent_after else None)
    for hours, status, took in [(2, "completed", 40), (26, "failed", 5), (3, "running", None)]:
        started = now - timedelta(hours=hours)
        ExecutionFactory(workspace=workspace, status=status, started_at=started,
                         completed_at=started + timedelta(seconds=took) if took else None)


@pytest.mark.parametrize("key", RANGES)
def test_the_hourly_totals_say_what_the_tables_say(key, monkeypatch):
    workspace, other = WorkspaceFactory(), WorkspaceFactory()
    build(workspace)
    build(other)  # another workspace's rows count for it alone
    rolled, scanned = both_ways(workspace, key, monkeypatch)
    assert rolled == scanned
    assert sum(n for _, n in rolled["message_counts"]) > 0


def test_they_follow_updates_deletes_and_compaction(monkeypatch):
    workspace = WorkspaceFactory()
    build(workspace)
    now = timezone.now()
    Message.objects.filter(workspace=workspace, status="queued").update(
        status="sent", sent_at=now)  # in bulk, as the pipeline records a batch
    counters.counters_compact()
    message = Message.objects.filter(workspace=workspace, status="failed").first()
    message.status = "delivered"
    message.sent_at = now
    message.save()
    Execution.objects.filter(workspace=workspace, status="running").update(
        status="completed", completed_at=now)
    Message.objects.filter(workspace=workspace, status="suppressed").delete()
    # A change only the hourly totals count (an execution's start hour), and one only the
    # /metrics counters count (a message's channel): neither may move the other.
    Execution.objects.filter(workspace=workspace, status="completed").update(
        started_at=now - timedelta(hours=5))
    Message.objects.filter(workspace=workspace, channel="sms").update(channel="email")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_hourlydelta")
        assert cursor.fetchone()[0] > 0  # read before they were folded in
    for key in RANGES:
        rolled, scanned = both_ways(workspace, key, monkeypatch)
        assert rolled == scanned, key
    counters.counters_compact()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_hourlydelta")
        assert cursor.fetchone()[0] == 0
    for key in RANGES:
        rolled, scanned = both_ways(workspace, key, monkeypatch)
        assert rolled == scanned, key


def test_the_overview_page_reads_the_totals_not_the_messages(client, monkeypatch):
    from django.test.utils import CaptureQueriesContext

    from tests.factories import StaffUserFactory

    workspace = WorkspaceFactory()
    build(workspace)
    client.force_login(StaffUserFactory())
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/dashboard/", {"workspace": str(workspace.pk), "range": "24h"})
    assert response.status_code == 200
    aggregates = [q["sql"] for q in queries.captured_queries
                  if "messaging_message" in q["sql"] and ("COUNT(" in q["sql"].upper()
                                                          or "AVG(" in q["sql"].upper())]
    assert aggregates == []
    assert any("monitoring_hourlycount" in q["sql"] for q in queries.captured_queries)
