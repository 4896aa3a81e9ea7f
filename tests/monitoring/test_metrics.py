"""GET /metrics: access control, and numbers that parse and match the database."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from core.models import DeadLetter
from flows.models import Execution
from messaging import ratelimit
from messaging.models import DeliveryAttempt, Message
from tests.factories import (
    DeadLetterFactory,
    DeliveryAttemptFactory,
    ExecutionFactory,
    MessageFactory,
    StepFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db
TOKEN = "scrape-token-1"


@pytest.fixture
def token(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    return TOKEN


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {family.name: family.samples
            for family in text_string_to_metric_families(response.content.decode())}


def test_metrics_are_refused_until_a_token_or_network_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics").status_code == 403


def test_metrics_need_the_bearer_token(client, token):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_an_allowed_network_scrapes_without_the_token(client, settings):
    settings.METRICS_TOKEN = "unused"
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 401


def build_history() -> tuple:
    """Create two workspaces' worth of messages, attempts, dead letters and executions."""
    first, second = WorkspaceFactory(), WorkspaceFactory()
    now = timezone.now()
    for workspace, sent, failed in ((first, 3, 2), (second, 1, 0)):
        for index in range(sent):
            message = MessageFactory(workspace=workspace, status="sent",
                                     created_at=now - timedelta(seconds=10),
                                     sent_at=now - timedelta(seconds=10 - index * 3))
            DeliveryAttemptFactory(message=message, outcome="sent")
        for _ in range(failed):
            message = MessageFactory(workspace=workspace, channel="email", status="failed",
                                     failed_at=now)
            DeliveryAttemptFactory(message=message, number=1, outcome="retry")
            DeliveryAttemptFactory(message=message, number=2, outcome="failed")
            DeadLetterFactory(workspace=workspace, source_id=str(message.pk), channel="email")
    MessageFactory(workspace=first, status="scheduled", due_at=now - timedelta(seconds=30))
    DeadLetterFactory(workspace=first, kind="step", status="replayed", channel="")
    execution = ExecutionFactory(workspace=first, status="completed")
    StepFactory(execution=execution, node_type="condition", status="completed",
                started_at=now - timedelta(seconds=2), completed_at=now)
    ExecutionFactory(workspace=second, status="failed")
    return first, second


def test_metrics_parse_and_match_the_database(client, token):
    first, second = build_history()
    ratelimit.record_deferral(workspace_id=str(first.pk), channel="sms", delay=0.2)
    ratelimit.record_deferral(workspace_id=str(first.pk), channel="sms", delay=0.4)
    try:
        families = scrape(client)
    finally:
        ratelimit.reset(str(first.pk))

    def values(name: str, *labels: str) -> Counter:
        return Counter({tuple(s.labels[label] for label in labels): s.value
                        for s in families[name] if s.name == name or s.name == f"{name}_total"})

    assert values("relay_messages", "workspace", "channel", "status") == Counter({
        (str(w), c, s): n for w, c, s, n in _count(Message, "workspace_id", "channel",
                                                   "status")})
    assert values("relay_delivery_attempts", "channel", "outcome") == Counter({
        (c, o): n for c, o, n in _count(DeliveryAttempt, "message__channel", "outcome")})
    assert values("relay_dead_letters", "workspace", "kind", "status") == Counter({
        (str(w), k, s): n for w, k, s, n in _count(DeadLetter, "workspace_id", "kind",
                                                   "status")})
    assert values("relay_executions", "workspace", "status") == Counter({
        (str(w), s): n for w, s, n in _count(Execution, "workspace_id", "status")})
    assert values("relay_rate_limit_deferrals", "workspace", "channel") == Counter({
        (str(first.pk), "sms"): 2})
    assert values("relay_workspace_info", "slug") == Counter({(first.slug,): 1,
                                                              (second.slug,): 1})
    assert families["relay_dispatcher_lag_seconds"][0].value >= 30


def test_the_delivery_histogram_counts_every_sent_message_in_cumulative_buckets(client,
                                                                                  token):
    build_history()
    samples = scrape(client)["relay_message_delivery_seconds"]
    count = next(s.value for s in samples if s.name.endswith("_count"))
    assert count == Message.objects.filter(sent_at__isnull=False).count() == 4
    buckets = [(float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets)  # cumulative: never decreasing
    assert dict(buckets)[float("inf")] == count
    # Latencies are 0, 3 and 6 s in one workspace and 0 s in the other.
    assert (dict(buckets)[2.5], dict(buckets)[5.0], dict(buckets)[10.0]) == (2, 3, 4)
    total = next(s.value for s in samples if s.name.endswith("_sum"))
    assert total == pytest.approx(9, abs=0.01)
    step = scrape(client)["relay_step_duration_seconds"]
    assert next(s.value for s in step if s.name.endswith("_count")) == 1


def test_queue_depth_is_read_from_the_broker(client, token):
    from config.celery import app
    from messaging.tasks import deliver_messages

    app.control.purge()
    try:
        for priority in (0, 3, 6):
            deliver_messages.apply_async(args=[["00000000-0000-0000-0000-000000000000"]],
                                         queue="webhook", priority=priority)
        depth = {s.labels["queue"]: s.value for s in scrape(client)["relay_queue_depth"]}
        assert depth["webhook"] == 3
        assert set(depth) == {"sms", "email", "ai", "webhook", "flows", "default"}
    finally:
        app.control.purge()


def _count(model, *fields: str) -> list[tuple]:
    from django.db.models import Count

    rows = model.objects.values(*fields).annotate(n=Count("pk")).order_by()
    return [tuple(row[field] or ("running" if field == "outcome" else row[field])
                  for field in fields) + (row["n"],) for row in rows]


# --- the trigger-kept totals (PostgreSQL) ------------------------------------------------------

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the counters are PostgreSQL triggers; "
    "elsewhere /metrics scans the tables")


def scan_and_counted() -> tuple[list, list]:
    """Return the history families as the table scans and as the counters give them."""
    from monitoring import counters
    from monitoring.metrics import RelayCollector

    collector = RelayCollector()
    scanned = [*collector.messages(), *collector.delivery_latency(), *collector.attempts(),
               *collector.executions(), *collector.step_latency()]
    counted = list(collector.counted(counters.counters_read()))

    def flat(families: list) -> list:
        return sorted((s.name, tuple(sorted(s.labels.items())), round(s.value, 6))
                      for family in families for s in family.samples)
    return flat(scanned), flat(counted)


@postgres_only
def test_the_counters_match_a_scan_through_inserts_updates_deletes_and_compaction():
    from monitoring import counters

    first, second = build_history()
    scanned, counted = scan_and_counted()
    assert counted == scanned and any(name == "relay_messages" for name, *_ in counted)
    now = timezone.now()
    # Status changes in bulk (as the pipeline records a batch), one by one, and a resend.
    Message.objects.filter(workspace=first, status="scheduled").update(status="queued")
    Message.objects.filter(workspace=second, status="sent").update(
        status="delivered", sent_at=now + timedelta(seconds=40))
    counters.counters_compact()
    message = Message.objects.filter(workspace=first, channel="email").first()
    message.status, message.sent_at = "sent", now
    message.save()
    DeliveryAttempt.objects.filter(outcome="retry").update(outcome="lost")
    DeliveryAttemptFactory(message=message, number=3, outcome="")
    execution = Execution.objects.filter(status="failed").first()
    execution.status = "running"
    execution.save()
    StepFactory(execution=execution, node_type="delay", status="completed",
                started_at=now - timedelta(hours=2), completed_at=now)
    # A change the hourly totals count and /metrics does not (an execution's start).
    Execution.objects.filter(status="completed").update(started_at=now - timedelta(hours=5))
    # Purge: the attempts go first, then their messages (what purge_history does).
    Message.objects.filter(workspace=first, status="failed").delete()
    assert scan_and_counted()[1] == scan_and_counted()[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_metricdelta")
        assert cursor.fetchone()[0] > 0
    assert counters.counters_compact() > 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_metricdelta")
        assert cursor.fetchone()[0] == 0
    scanned, counted = scan_and_counted()
    assert counted == scanned


@postgres_only
def test_the_trigger_buckets_are_the_collectors_buckets():
    import importlib

    from monitoring.metrics import DELIVERY_BUCKETS, STEP_BUCKETS

    migration = importlib.import_module("monitoring.migrations.0007_metric_counter_triggers")
    assert migration.DELIVERY_BOUNDS == f"ARRAY[{', '.join(map(str, DELIVERY_BUCKETS))}]"
    assert migration.STEP_BOUNDS == f"ARRAY[{', '.join(map(str, STEP_BUCKETS))}]"


@postgres_only
def test_a_scrape_reads_the_counters_not_the_tables(client, token,
                                                    django_assert_max_num_queries):
    build_history()
    MessageFactory.create_batch(30, status="sent", sent_at=timezone.now())
    with django_assert_max_num_queries(12) as captured:
        families = scrape(client)
    history = [q["sql"] for q in captured.captured_queries
               if any(table in q["sql"] for table in ("messaging_message", "flows_step",
                                                      "flows_execution"))]
    # Only the dispatcher lag reads them: MIN over the timer index, never a count.
    assert history and all("MIN(" in sql and "COUNT(" not in sql for sql in history)
    assert sum(s.value for s in families["relay_messages"]) == Message.objects.count()
