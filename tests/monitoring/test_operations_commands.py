"""replay_dead_letters, requeue_stuck and purge_history."""
from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from core.models import DeadLetter
from flows.models import Execution, FlowSchedule, ScheduleRun, Step
from messaging.models import DeliveryAttempt, Message
from monitoring import services
from monitoring.models import AlertEvent
from tests.factories import (
    AlertRuleFactory,
    DeadLetterFactory,
    DeliveryAttemptFactory,
    ExecutionFactory,
    FlowFactory,
    MessageFactory,
    StepFactory,
)

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def failed_letter(workspace, **fields) -> DeadLetter:
    message = MessageFactory(workspace=workspace, channel=fields.pop("channel", "sms"),
                             status="failed", attempts=1)
    return DeadLetterFactory(workspace=workspace, source_id=str(message.pk),
                             channel=message.channel, **fields)


# --- replay_dead_letters --------------------------------------------------------------------

def test_replay_shows_progress_and_a_summary(workspace):
    letters = [failed_letter(workspace) for _ in range(3)]
    output = run("replay_dead_letters", "--workspace", workspace.slug)
    assert "[##########--------------------] 1/3" in output
    assert "[##############################] 3/3" in output
    assert "matched 3, replayed 3, refused 0" in output
    assert all(Message.objects.get(pk=letter.source_id).status == "queued"
               for letter in letters)
    assert set(DeadLetter.objects.values_list("replayed_by", flat=True)) == {"command"}


def test_replay_filters_and_limits(workspace):
    now = timezone.now()
    email = failed_letter(workspace, channel="email", error="mailbox full")
    old = failed_letter(workspace, created_at=now - timedelta(days=3))
    failed_letter(workspace, error="timeout")
    step = DeadLetterFactory(workspace=workspace, kind="step", source_id="999999")
    assert "matched 1, replayed 1" in run("replay_dead_letters", "--channel", "email",
                                          "--error-contains", "MAILBOX")
    assert DeadLetter.objects.get(pk=email.pk).status == "replayed"
    assert "matched 1, replayed 1" in run("replay_dead_letters", "--until", "2d")
    assert DeadLetter.objects.get(pk=old.pk).status == "replayed"
    output = run("replay_dead_letters", "--kind", "step")
    assert f"refused #{step.pk}: The step no longer exists" in output
    output = run("replay_dead_letters", "--since", "1h", "--limit", "1")
    assert "matched 2, replayed 1, refused 0, left for a later run 1" in output


def test_a_dry_run_lists_and_changes_nothing(workspace):
    letter = failed_letter(workspace, error="provider said no")
    output = run("replay_dead_letters", "--dry-run")
    assert f"would replay #{letter.pk} message {letter.source_id} sms provider said no" in output
    assert "dry run: 1 would be replayed" in output
    letter.refresh_from_db()
    assert letter.status == "open"
    assert Message.objects.get(pk=letter.source_id).status == "failed"


def test_replay_refuses_an_unknown_workspace():
    with pytest.raises(CommandError, match="no workspace"):
        run("replay_dead_letters", "--workspace", "nobody")


# --- requeue_stuck --------------------------------------------------------------------------

def test_requeue_stuck_repairs_and_reports(workspace, settings):
    now = timezone.now()
    lost = MessageFactory(workspace=workspace, status="sending", attempts=1, max_attempts=3,
                          lease_until=now - timedelta(seconds=5))
    # Its worker died during the call: the attempt started, never finished.
    DeliveryAttempt.objects.create(message=lost, number=1, started_at=now - timedelta(
        seconds=30))
    stale = MessageFactory(workspace=workspace, status="queued",
                           enqueued_at=now - timedelta(seconds=settings.REQUEUE_AFTER_SECONDS
                                                       + 60))
    assert "expired_leases     1" in run("requeue_stuck", "--dry-run")
    assert Message.objects.get(pk=lost.pk).status == "sending"
    output = run("requeue_stuck")
    assert "expired_leases     1" in output and "requeued           1" in output
    assert "repaired 2 row(s)" in output
    lost.refresh_from_db()
    stale.refresh_from_db()
    assert (lost.status, lost.possible_duplicate) == ("queued", True)
    assert stale.enqueued_at > now


# --- purge_history --------------------------------------------------------------------------

def test_purge_deletes_old_final_history_in_batches_and_keeps_what_is_live(workspace,
                                                                          monkeypatch):
    monkeypatch.setattr(services, "PURGE_BATCH", 2)
    long_ago = timezone.now() - timedelta(days=40)
    old = MessageFactory.create_batch(3, workspace=workspace, status="sent",
                                      updated_at=long_ago)
    for message in old:
        DeliveryAttemptFactory(message=message)
    recent = MessageFactory(workspace=workspace, status="sent")
    waiting = MessageFactory(workspace=workspace, status="scheduled", updated_at=long_ago)
    replayable = failed_letter(workspace)
    Message.objects.filter(pk=replayable.source_id).update(updated_at=long_ago)
    execution = ExecutionFactory(workspace=workspace, status="completed", updated_at=long_ago)
    StepFactory(execution=execution)
    running = ExecutionFactory(workspace=workspace, status="running", updated_at=long_ago)
    DeadLetterFactory(workspace=workspace, status="replayed", created_at=long_ago)
    event = AlertEvent.objects.create(rule=AlertRuleFactory(workspace=workspace),
                                      workspace=workspace, value=1, threshold=1,
                                      triggered_at=long_ago, resolved_at=long_ago)

    assert "would delete        3 messaging.Message" in run("purge_history", "--older-than",
                                                            "30d", "--dry-run")
    output = run("purge_history", "--older-than", "30d")
    assert output.count("deleted a batch of 2 messages") == 1
    assert output.count("deleted a batch of 1 messages") == 1
    assert "deleted        3 messaging.DeliveryAttempt" in output
    assert "deleted        1 flows.Step" in output
    assert {str(pk) for pk in Message.objects.values_list("pk", flat=True)} == {
        str(recent.pk), str(waiting.pk), replayable.source_id}
    assert not DeliveryAttempt.objects.exists()
    assert list(Execution.objects.values_list("pk", flat=True)) == [running.pk]
    assert not Step.objects.exists()
    assert list(DeadLetter.objects.values_list("pk", flat=True)) == [replayable.pk]
    assert not AlertEvent.objects.filter(pk=event.pk).exists()


def test_purge_removes_old_schedule_runs(workspace):
    schedule = FlowSchedule.objects.create(
        workspace=workspace, flow=FlowFactory(workspace=workspace), cron="@daily",
        active_since=timezone.now())
    long_ago = timezone.now() - timedelta(days=60)
    ScheduleRun.objects.create(schedule=schedule, occurrence_at=long_ago, fired_at=long_ago,
                         status="succeeded")
    kept = ScheduleRun.objects.create(schedule=schedule, occurrence_at=timezone.now(),
                                fired_at=timezone.now(), status="succeeded")
    assert "deleted        1 flows.ScheduleRun" in run("purge_history", "--older-than", "30d")
    assert list(ScheduleRun.objects.values_list("pk", flat=True)) == [kept.pk]


def test_purge_refuses_a_malformed_age():
    with pytest.raises(CommandError, match="30d"):
        run("purge_history", "--older-than", "a month")
