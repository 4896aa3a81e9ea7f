"""Retention on its own: the periodic purge deletes each kind of history by its own age, in
small batches, once at a time, and /metrics and the dashboard show the last run."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from config.celery import app
from core.models import AuditEntry, DeadLetter
from flows.models import Execution, Step
from messaging import ratelimit
from messaging.events.types import EVENT_SOURCE
from messaging.models import DeliveryAttempt, Message, TimelineEntry
from monitoring import services
from monitoring.models import HistoryPurge
from tests.factories import (
    DeadLetterFactory,
    DeliveryAttemptFactory,
    ExecutionFactory,
    MessageFactory,
    StaffUserFactory,
    StepFactory,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def ages(settings):
    settings.RETENTION_DAYS = {"messages": 30, "event_deliveries": 7, "steps": 20,
                               "executions": 60, "schedule_runs": 90, "dead_letters": 90,
                               "alert_events": 90, "audit_log": 365}
    settings.RETENTION_BATCH_SIZE = 2
    ratelimit.client().delete(services.PURGE_LOCK_KEY)
    yield
    ratelimit.client().delete(services.PURGE_LOCK_KEY)


def ago(days: float):
    return timezone.now() - days * DAY


def sent(workspace, days: float, **fields) -> Message:
    message = MessageFactory(workspace=workspace, status="sent", updated_at=ago(days), **fields)
    DeliveryAttemptFactory(message=message)
    TimelineEntry.objects.create(message=message, kind="accepted", at=ago(days))
    return message


def audit_entry(workspace, days: float) -> AuditEntry:
    entry = AuditEntry.objects.create(workspace=workspace, actor="command",
                                      action="queue.pause")
    AuditEntry.objects.filter(pk=entry.pk).update(created_at=ago(days))
    return entry


def test_each_kind_goes_by_its_own_age_in_small_batches(workspace):
    old = [sent(workspace, 31) for _ in range(3)]
    young = sent(workspace, 10)
    event_old = sent(workspace, 8, source=EVENT_SOURCE, channel="webhook")
    event_young = sent(workspace, 5, source=EVENT_SOURCE, channel="webhook")
    on_its_way = MessageFactory(workspace=workspace, status="scheduled", updated_at=ago(400))
    replayable = MessageFactory(workspace=workspace, status="failed", updated_at=ago(400))
    DeadLetterFactory(workspace=workspace, source_id=str(replayable.pk), status="open")
    # Finished 30 days ago: its steps (20 days) go, the execution (60 days) stays.
    thinned = ExecutionFactory(workspace=workspace, status="completed", updated_at=ago(30))
    StepFactory(execution=thinned)
    gone = ExecutionFactory(workspace=workspace, status="failed", updated_at=ago(61))
    StepFactory(execution=gone)
    running = ExecutionFactory(workspace=workspace, status="running", updated_at=ago(400))
    running_step = StepFactory(execution=running)
    old_audit, kept_audit = audit_entry(workspace, 366), audit_entry(workspace, 200)
    batches: list[tuple[str, int]] = []

    record = services.retention_purge(on_batch=lambda kind, n: batches.append((kind, n)))

    assert record is not None and record.ok
    assert set(Message.objects.values_list("pk", flat=True)) == {
        young.pk, event_young.pk, on_its_way.pk, replayable.pk}
    assert not Message.objects.filter(pk=event_old.pk).exists()  # an event delivery, 8 days
    assert not DeliveryAttempt.objects.filter(message_id__in=[m.pk for m in old]).exists()
    assert not TimelineEntry.objects.filter(message_id__in=[m.pk for m in old]).exists()
    assert set(Execution.objects.values_list("pk", flat=True)) == {thinned.pk, running.pk}
    assert list(Step.objects.values_list("pk", flat=True)) == [running_step.pk]
    assert list(AuditEntry.objects.values_list("pk", flat=True)) == [kept_audit.pk]
    # The steps of both old executions go first (20 days), then the older execution.
    assert record.deleted == {"event_deliveries": 1, "messages": 3, "steps": 2,
                              "executions": 1, "schedule_runs": 0, "dead_letters": 0,
                              "alert_events": 0, "audit_log": 1}
    assert ("messages", 2) in batches and ("messages", 1) in batches  # batches of 2
    assert all(n <= 2 for _, n in batches)
    # Every row counts: 4 messages with an attempt and a timeline entry each, 2 steps, an
    # execution, an audit entry.
    assert record.rows == 4 * 3 + 2 + 1 + 1
    assert old_audit.pk not in AuditEntry.objects.values_list("pk", flat=True)


def test_an_age_of_zero_keeps_that_kind_forever(workspace, settings):
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "messages": 0, "audit_log": 0}
    kept = sent(workspace, 3000)
    entry = audit_entry(workspace, 3000)
    record = services.retention_purge()
    assert record is not None and "messages" not in record.deleted
    assert Message.objects.filter(pk=kept.pk).exists()
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_one_run_at_a_time(workspace):
    old = sent(workspace, 31)
    ratelimit.client().set(services.PURGE_LOCK_KEY, "another-run", ex=60)
    assert services.retention_purge() is None
    assert Message.objects.filter(pk=old.pk).exists()
    assert not HistoryPurge.objects.exists()
    with pytest.raises(CommandError, match="another history purge"):
        call_command("purge_history", "--retention")
    assert ratelimit.client().get(services.PURGE_LOCK_KEY) == "another-run"


def test_the_command_runs_the_periodic_purge(workspace, capsys):
    sent(workspace, 31)
    call_command("purge_history", "--retention")
    output = capsys.readouterr().out
    assert "deleted        1 messages" in output
    assert HistoryPurge.objects.get().deleted["messages"] == 1
    with pytest.raises(CommandError, match="--older-than"):
        call_command("purge_history")


def test_beat_schedules_the_purge_and_a_worker_runs_it(workspace, live_worker):
    schedule = app.conf.beat_schedule["purge-history"]
    assert schedule["task"] == "monitoring.tasks.purge_history"
    old, young = sent(workspace, 31), sent(workspace, 1)
    app.send_task("monitoring.tasks.purge_history")
    record = wait_until(lambda: HistoryPurge.objects.filter(finished_at__isnull=False).first(),
                        timeout=60)
    assert record.ok and record.deleted["messages"] == 1
    assert list(Message.objects.values_list("pk", flat=True)) == [young.pk]
    assert not Message.objects.filter(pk=old.pk).exists()


def test_metrics_and_the_dashboard_show_the_last_purge(workspace, client, settings):
    settings.METRICS_TOKEN = "scrape-token"
    settings.METRICS_ALLOWED_NETWORKS = []
    staff = StaffUserFactory()
    client.force_login(staff)
    overview = client.get(reverse("dashboard:overview"), {"workspace": str(workspace.pk)})
    assert "No history purge has run yet." in overview.content.decode()

    sent(workspace, 31)
    record = services.retention_purge()
    assert record is not None

    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").content.decode()
    families = {family.name: family.samples
                for family in text_string_to_metric_families(body)}
    stamp = families["relay_history_purge_last_run_timestamp_seconds"][0].value
    assert stamp == pytest.approx(record.finished_at.timestamp())
    assert families["relay_history_purge_last_ok"][0].value == 1
    assert families["relay_history_purge_last_complete"][0].value == 1
    deleted = {s.labels["kind"]: s.value
               for s in families["relay_history_purge_last_deleted_rows"]}
    assert deleted["messages"] == 1 and deleted["audit_log"] == 0

    page = client.get(reverse("dashboard:overview"), {"workspace": str(workspace.pk)})
    html = page.content.decode()
    assert "History purged" in html
    assert (f"{record.rows} row(s) deleted: alert_events 0, audit_log 0, dead_letters 0, "
            "event_deliveries 0, executions 0, messages 1, schedule_runs 0, steps 0.") in html


def test_an_error_is_recorded_and_reported(workspace, monkeypatch, client, settings):
    sent(workspace, 31)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "_delete_in_batches", broken)
    record = services.retention_purge()
    assert record is not None and not record.ok
    assert record.error == "RuntimeError: disk full"
    assert ratelimit.client().get(services.PURGE_LOCK_KEY) is None
    settings.METRICS_TOKEN = "scrape-token"
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").content.decode()
    assert "relay_history_purge_last_ok 0.0" in body
    assert DeadLetter.objects.count() == 0


def test_a_run_stops_at_its_time_budget_and_the_next_goes_on(workspace, settings, client):
    old = sent(workspace, 31)
    settings.RETENTION_RUN_SECONDS = 0
    stopped = services.retention_purge()
    assert stopped is not None and stopped.ok and not stopped.complete
    assert stopped.rows == 0 and Message.objects.filter(pk=old.pk).exists()
    client.force_login(StaffUserFactory())
    html = client.get(reverse("dashboard:overview"),
                      {"workspace": str(workspace.pk)}).content.decode()
    assert "stopped at its time budget, the next run goes on" in html
    settings.RETENTION_RUN_SECONDS = 240
    finished = services.retention_purge()
    assert finished is not None and finished.complete
    assert not Message.objects.filter(pk=old.pk).exists()
