"""Where events come from: each status change writes its event deliveries in its own
transaction (checked on the rows; delivery itself is covered by test_events.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import DeadLetter
from messaging.delivery import creation, recording, sending
from messaging.events.endpoints import endpoint_enable, endpoints_disable_failing
from messaging.events.outbox import event_emit
from messaging.incoming.email_events import email_event_record
from messaging.models import DeliveryAttempt, Message, MessageStatus, Suppression, WebhookEndpoint
from messaging.providers.base import ProviderError
from monitoring.alerts import alert_rule_evaluate
from tests.factories import AlertRuleFactory, WorkspaceFactory
from tests.messaging.test_channels_end_to_end import (
    AUTH_TOKEN,
    STATUS_PATH,
    callback_params,
    post_callback,
    twilio_signature,
    use_twilio,
)

pytestmark = pytest.mark.django_db


def endpoint_for(workspace, types: list[str], **fields) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(workspace=workspace, url="https://hooks.example.com/e",
                                          events=types, **fields)


def emitted(endpoint: WebhookEndpoint) -> list[tuple[str, dict]]:
    rows = Message.objects.filter(webhook_endpoint=endpoint).order_by("created_at")
    return [(m.content["payload"]["type"], m.content["payload"]["data"]) for m in rows]


def test_without_listeners_nothing_is_written(workspace):
    endpoint_for(WorkspaceFactory(), ["*"])  # another workspace's endpoint
    creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                            content={"body": "x"})
    assert not Message.objects.filter(source="event").exists()


def test_a_suppressed_message_emits_message_suppressed(workspace):
    endpoint = endpoint_for(workspace, ["message.suppressed"])
    Suppression.objects.create(workspace=workspace, channel="sms", address="+14155552671")
    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "x"})

    assert sending.messages_deliver(message_ids=[str(message.pk)]) == {
        str(message.pk): "suppressed"}

    [(kind, data)] = emitted(endpoint)
    assert kind == "message.suppressed"
    assert (data["id"], data["status"]) == (str(message.pk), "suppressed")


def test_a_failed_message_emits_message_failed_and_dead_letter_created(workspace):
    endpoint = endpoint_for(workspace, ["message.failed", "dead_letter.created"])
    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "x"})
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENDING, attempts=1)
    message.refresh_from_db()
    attempt = DeliveryAttempt(message=message, number=1, started_at=timezone.now())

    recording.record_all([(message, attempt, ProviderError("bad number", permanent=True),
                           None)])

    kinds = dict(emitted(endpoint))
    assert kinds["message.failed"]["status"] == "failed"
    letter = DeadLetter.objects.get(source_id=str(message.pk))
    assert kinds["dead_letter.created"]["id"] == letter.pk


def test_a_failed_event_delivery_emits_nothing(workspace):
    endpoint = endpoint_for(workspace, ["*"])
    [delivery] = event_emit(workspace_id=workspace.pk, type="message.sent", data={})
    Message.objects.filter(pk=delivery.pk).update(status=MessageStatus.SENDING, attempts=1)
    delivery.refresh_from_db()
    attempt = DeliveryAttempt(message=delivery, number=1, started_at=timezone.now())

    recording.record_all([(delivery, attempt, ProviderError("gone", permanent=True), None)])

    assert Message.objects.filter(webhook_endpoint=endpoint).count() == 1
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).failing_since is not None


def test_a_delivered_callback_emits_message_delivered(workspace, settings):
    settings.PUBLIC_BASE_URL = ""
    use_twilio(workspace, stub=type("Stub", (), {"url": "https://api.twilio.test"})())
    endpoint = endpoint_for(workspace, ["message.delivered"])
    message = Message.objects.create(workspace=workspace, channel="sms", to="+14155552671",
                                     status=MessageStatus.SENT, provider_message_id="SM1")
    path = f"{STATUS_PATH}?message_id={message.id}"
    params = callback_params("SM1", "delivered")

    post_callback(path, params, twilio_signature(AUTH_TOKEN, f"http://testserver{path}", params))

    [(kind, data)] = emitted(endpoint)
    assert (kind, data["status"]) == ("message.delivered", "delivered")


def test_a_hard_bounce_of_a_sent_email_emits_message_undelivered(workspace):
    endpoint = endpoint_for(workspace, ["message.undelivered"])
    message = Message.objects.create(workspace=workspace, channel="email", to="ann@example.com",
                                     status=MessageStatus.SENT, provider_message_id="<m1@x>")

    email_event_record(workspace=workspace, kind="bounce", address="ann@example.com",
                       permanent=True, message_ref="<m1@x>")

    [(kind, data)] = emitted(endpoint)
    assert (kind, data["id"], data["status"], data["error_code"]) == (
        "message.undelivered", str(message.pk), "undelivered", "bounced")


def test_a_bounce_of_an_email_already_undelivered_emits_nothing_again(workspace):
    endpoint = endpoint_for(workspace, ["*"])
    Message.objects.create(workspace=workspace, channel="email", to="ann@example.com",
                           status=MessageStatus.UNDELIVERED, provider_message_id="<m1@x>")

    email_event_record(workspace=workspace, kind="bounce", address="ann@example.com",
                       permanent=True, message_ref="<m1@x>")

    assert emitted(endpoint) == []


def test_an_endpoint_failing_for_five_days_is_disabled_and_alerts(workspace):
    endpoint = endpoint_for(workspace, ["*"])
    healthy = endpoint_for(workspace, ["*"])
    [pending, _] = event_emit(workspace_id=workspace.pk, type="message.sent", data={})
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timedelta(days=5, minutes=1))
    WebhookEndpoint.objects.filter(pk=healthy.pk).update(
        failing_since=timezone.now() - timedelta(days=4))
    rule = AlertRuleFactory(workspace=workspace, type="endpoint_disabled", threshold=1,
                            channel="email", recipients=["ops@example.com"])
    assert alert_rule_evaluate(rule_id=rule.pk) == "ok"

    assert endpoints_disable_failing() == [str(endpoint.pk)]

    endpoint.refresh_from_db()
    assert not endpoint.enabled and "failed" in endpoint.disabled_reason
    assert WebhookEndpoint.objects.get(pk=healthy.pk).enabled
    assert Message.objects.get(pk=pending.pk).status == MessageStatus.CANCELLED
    assert alert_rule_evaluate(rule_id=rule.pk) == "triggered"
    notice = Message.objects.get(source="alert")
    assert "webhook endpoints disabled" in notice.content["subject"]
    # The customer enabling it again resolves the incident.
    endpoint_enable(endpoint=endpoint)
    assert alert_rule_evaluate(rule_id=rule.pk) == "resolved"
