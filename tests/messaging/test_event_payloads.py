"""The webhook contract: each event type's payload, pinned key by key and format by format
from real rows, so a change to the API's serializers cannot change what customers verify."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from core.models import DeadLetter
from flows import events as flow_events
from flows.models import Execution, ScheduleRun
from messaging.events.outbox import dead_letter_emit, messages_emit
from messaging.events.types import (
    EXECUTION_COMPLETED,
    EXECUTION_STARTED,
    MESSAGE_QUEUED,
    MESSAGE_SENT,
    MESSAGE_SUPPRESSED,
)
from messaging.models import Message, MessageStatus, WebhookEndpoint
from tests.factories import (
    DeadLetterFactory,
    ExecutionFactory,
    FlowScheduleFactory,
    MessageFactory,
)

pytestmark = pytest.mark.django_db


def drf_time(value: datetime | None) -> str | None:
    """Return a time as the payloads have always shown it (DRF's ISO 8601: local time of
    TIME_ZONE, "Z" for UTC)."""
    if value is None:
        return None
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def only_payload(endpoint: WebhookEndpoint) -> dict:
    [delivery] = Message.objects.filter(webhook_endpoint=endpoint)
    return delivery.content["payload"]


@pytest.fixture
def endpoint(workspace) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(workspace=workspace, events=["*"],
                                          url="https://hooks.example.com/events")


def test_a_message_event_shows_the_message_as_it_always_has(workspace, endpoint):
    now = timezone.now()
    message = MessageFactory(workspace=workspace, status=MessageStatus.SENT, sent_at=now,
                             provider="twilio", provider_message_id="SM1", attempts=1,
                             metadata={"order": 7}, rendered={"body": "Hello"},
                             scheduled_for=now - timedelta(minutes=1), category="marketing")

    messages_emit(changes=[(message, MESSAGE_SENT)])

    message.refresh_from_db()
    payload = only_payload(endpoint)
    assert payload["type"] == "message.sent"
    # schema_version is the one key added since (README.md, "Events").
    assert set(payload) == {"type", "schema_version", "timestamp", "data"}
    assert payload["schema_version"] == 1
    assert payload["timestamp"].endswith("+00:00")
    assert payload["data"] == {
        "id": str(message.pk), "channel": "sms", "direction": "outbound", "status": "sent",
        "status_reason": "", "waiting_for": None, "suppressed_reason": None,
        "category": "marketing",
        "to": message.to, "sender": "", "contact_id": str(message.contact_id),
        "priority": "normal", "content": {"body": "Hello"}, "rendered": {"body": "Hello"},
        "metadata": {"order": 7}, "scheduled_for": drf_time(message.scheduled_for),
        "due_at": None, "attempts": 1, "max_attempts": 3, "provider": "twilio",
        "provider_message_id": "SM1", "response": None, "last_error": "", "error_code": "",
        "possible_duplicate": False, "source": "api",
        "created_at": drf_time(message.created_at), "updated_at": drf_time(message.updated_at),
        "sent_at": drf_time(now), "delivered_at": None, "failed_at": None,
        "cancelled_at": None}
    assert payload["data"]["sent_at"].endswith("Z")


def test_a_scheduled_message_event_says_what_it_waits_for(workspace, endpoint):
    message = MessageFactory(workspace=workspace, status=MessageStatus.SCHEDULED,
                             status_reason="rate_limit", due_at=timezone.now())

    messages_emit(changes=[(message, MESSAGE_QUEUED)])

    data = only_payload(endpoint)["data"]
    assert (data["waiting_for"], data["due_at"][-1]) == ("rate_limit", "Z")


def test_a_suppressed_message_event_names_its_reason(workspace, endpoint):
    message = MessageFactory(workspace=workspace, contact=None, status="suppressed",
                             suppressed_reason="unsubscribed")

    messages_emit(changes=[(message, MESSAGE_SUPPRESSED)])

    data = only_payload(endpoint)["data"]
    assert (data["suppressed_reason"], data["contact_id"]) == ("unsubscribed", None)


def test_an_execution_event_shows_the_execution_as_it_always_has(workspace, endpoint):
    execution = ExecutionFactory(workspace=workspace, data={"plan": "pro"},
                                 current_node="n1", completed_at=timezone.now())

    flow_events.executions_emit(executions=[execution], type=EXECUTION_COMPLETED)

    execution = Execution.objects.select_related("version").get(pk=execution.pk)
    payload = only_payload(endpoint)
    assert payload["type"] == "execution.completed"
    assert payload["data"] == {
        "id": str(execution.pk), "flow_id": str(execution.flow_id),
        "version": execution.version.number, "contact_id": str(execution.contact_id),
        "status": "completed", "source": "api", "data": {"plan": "pro"},
        "current_node": "n1", "wake_at": None, "waiting_event": "", "paused_at": None,
        "paused_by": "", "error": "", "started_at": drf_time(execution.started_at),
        "completed_at": drf_time(execution.completed_at),
        "duration_seconds": execution.duration_seconds}
    assert isinstance(payload["data"]["duration_seconds"], float)


def test_a_running_execution_has_a_null_duration(workspace, endpoint):
    execution = ExecutionFactory(workspace=workspace, status=Execution.Status.RUNNING)

    flow_events.executions_emit(executions=[execution], type=EXECUTION_STARTED)

    data = only_payload(endpoint)["data"]
    assert (data["duration_seconds"], data["completed_at"]) == (None, None)


def test_a_failed_schedule_run_shows_the_run_and_its_schedule(workspace, endpoint):
    schedule = FlowScheduleFactory(workspace=workspace)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(events=["*"])  # saved again: recheck
    run = ScheduleRun.objects.create(schedule=schedule, occurrence_at=timezone.now(),
                                     status=ScheduleRun.Status.FAILED, total=3, started=1,
                                     refused=2, skipped=2, error="boom",
                                     fired_at=timezone.now(), finished_at=timezone.now())

    flow_events.schedule_run_failed_emit(run=run)

    run.refresh_from_db()
    payload = only_payload(endpoint)
    assert payload["type"] == "schedule.run_failed"
    assert payload["data"] == {
        "id": run.pk, "occurrence_at": drf_time(run.occurrence_at), "status": "failed",
        "summary": "1 of 3 started, 2 skipped (already in the flow)", "total": 3,
        "started": 1, "skipped": 2, "refused": 2, "missing": 0, "error": "boom",
        "bulk_start_id": None, "fired_at": drf_time(run.fired_at),
        "finished_at": drf_time(run.finished_at), "schedule_id": str(schedule.pk)}


def test_a_dead_letter_event_shows_the_letter_as_it_always_has(workspace, endpoint):
    letter = DeadLetterFactory(workspace=workspace, payload={"to": "+14155552671"},
                               flow_id="f1")

    dead_letter_emit(letter=letter)

    letter = DeadLetter.objects.get(pk=letter.pk)
    payload = only_payload(endpoint)
    assert payload["type"] == "dead_letter.created"
    assert payload["data"] == {
        "id": letter.pk, "kind": "message", "source_id": letter.source_id, "channel": "sms",
        "flow_id": "f1", "error": "400: bad number", "error_code": "400", "attempts": 1,
        "payload": {"to": "+14155552671"}, "status": "open", "replay_count": 0,
        "replay_result": "", "replayed_at": None, "replayed_by": "",
        "created_at": drf_time(letter.created_at)}
