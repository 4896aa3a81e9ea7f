"""Bounces and complaints: POST /api/v1/providers/email/events, then the policy stops every
later email to the address (API -> live worker -> a real SMTP server)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from messaging.models import Message, Suppression
from tests.factories import ContactFactory, MessageFactory
from tests.support.smtp_server import RecordingHandler, running, smtp_settings
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

EVENTS = "/api/v1/providers/email/events"


@pytest.fixture
def smtp(workspace) -> Iterator[RecordingHandler]:
    handler = RecordingHandler()
    with running(handler) as port:
        workspace.settings = {"providers": {"email": smtp_settings(port)}}
        workspace.save()
        yield handler


def event(api, **body: Any):
    return api.post(EVENTS, body, format="json")


def send(api, to: str, **payload: Any) -> Message:
    response = api.post("/api/v1/messages", {"channel": "email", "to": to, "subject": "Hi",
                                             "text": "Hello", **payload}, format="json")
    assert response.status_code == 201, response.json()
    message_id = response.json()["id"]
    wait_until(lambda: Message.objects.get(id=message_id).status in ("sent", "suppressed"))
    return Message.objects.get(id=message_id)


@pytest.mark.parametrize(("body", "reason"), [
    ({"type": "bounce", "permanent": True}, "bounced"),
    ({"type": "complaint"}, "complained"),
])
def test_a_hard_bounce_or_a_complaint_suppresses_every_later_email(
        api, workspace, smtp, live_worker, body, reason):
    response = event(api, address="Ann@Example.com", **body)

    assert response.status_code == 202
    assert response.json() == {"type": body["type"], "address": "ann@example.com",
                               "suppressed": reason, "message": None}
    row = Suppression.objects.get(workspace=workspace)
    assert (row.channel, row.address, row.reason, row.source) == (
        "email", "ann@example.com", reason, "provider-event")
    receipt = send(api, "ann@example.com")  # transactional
    news = send(api, "ANN@example.com", category="marketing")
    assert (receipt.status, receipt.suppressed_reason) == ("suppressed", reason)
    assert (news.status, news.suppressed_reason) == ("suppressed", reason)
    other = send(api, "bo@example.com")
    assert other.status == "sent"
    assert [rcpt for _, rcpt, _ in smtp.received] == [["bo@example.com"]]


def test_a_soft_bounce_is_accepted_and_changes_nothing(api, workspace, smtp, live_worker):
    response = event(api, type="bounce", address="ann@example.com", permanent=False)

    assert response.status_code == 202
    assert response.json()["suppressed"] == ""
    assert not Suppression.objects.exists()
    assert send(api, "ann@example.com").status == "sent"
    assert [rcpt for _, rcpt, _ in smtp.received] == [["ann@example.com"]]


def test_a_hard_bounce_turns_an_unsubscribe_into_bounced(api, workspace, smtp, live_worker):
    from messaging.recipients.suppressions import suppression_add

    suppression_add(workspace=workspace, channel="email", address="ann@example.com",
                    reason="unsubscribed", source="list-unsubscribe")
    assert send(api, "ann@example.com").status == "sent"  # unsubscribed: transactional goes

    event(api, type="bounce", address="ann@example.com", permanent=True)

    assert Suppression.objects.get(workspace=workspace).reason == "bounced"
    assert send(api, "ann@example.com").suppressed_reason == "bounced"


@pytest.mark.parametrize("by", ["id", "provider_message_id"])
def test_a_hard_bounce_marks_the_sent_message_it_names_undelivered(
        api, workspace, smtp, live_worker, by):
    sent = send(api, "ann@example.com")
    assert sent.status == "sent"

    response = event(api, type="bounce", address="ann@example.com", permanent=True,
                     message_id=str(getattr(sent, by)))

    assert response.status_code == 202
    assert response.json()["message"] == {"id": str(sent.id), "status": "undelivered"}
    sent.refresh_from_db()
    assert (sent.status, sent.error_code) == ("undelivered", "bounced")


def test_a_soft_bounce_or_a_complaint_leaves_the_message_as_it_was(api, workspace):
    message = MessageFactory(workspace=workspace, channel="email", to="ann@example.com",
                             status="sent")
    for body in ({"type": "bounce", "permanent": False}, {"type": "complaint"}):
        response = event(api, address="ann@example.com", message_id=str(message.id), **body)
        assert response.json()["message"] == {"id": str(message.id), "status": "sent"}


def test_another_workspaces_message_is_not_touched(api, workspace):
    theirs = MessageFactory(channel="email", to="ann@example.com", status="sent")

    response = event(api, type="bounce", address="ann@example.com", permanent=True,
                     message_id=str(theirs.id))

    assert response.status_code == 202
    assert response.json()["message"] is None
    theirs.refresh_from_db()
    assert theirs.status == "sent"
    assert not Suppression.objects.exclude(workspace=workspace).exists()


def test_a_message_sent_to_another_address_answers_400(api, workspace):
    message = MessageFactory(workspace=workspace, channel="email", to="bo@example.com",
                             status="sent")

    response = event(api, type="bounce", address="ann@example.com", permanent=True,
                     message_id=str(message.id))

    assert response.status_code == 400
    assert "message_id" in response.json()["error"]["fields"]
    message.refresh_from_db()
    assert message.status == "sent"
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({"type": "delivered", "address": "ann@example.com"}, "type"),
    ({"address": "ann@example.com"}, "type"),
    ({"type": "complaint", "address": "not an address"}, "address"),
    ({"type": "complaint", "address": 42}, "address"),
    ({"type": "complaint"}, "address"),
    ({"type": "bounce", "address": "ann@example.com"}, "permanent"),
    ({"type": "bounce", "address": "ann@example.com", "permanent": "maybe"}, "permanent"),
    ({"type": "complaint", "address": "ann@example.com", "message_id": 7}, "message_id"),
])
def test_bad_fields_answer_400_naming_them_and_change_nothing(api, workspace, body, field):
    response = event(api, **body)

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Suppression.objects.exists()


def test_it_needs_an_api_key(db):
    response = APIClient().post(EVENTS, {"type": "complaint", "address": "ann@example.com"},
                                format="json")
    assert response.status_code == 401
    assert not Suppression.objects.exists()


def test_a_contact_with_a_bounced_address_gets_no_email(api, workspace, smtp, live_worker):
    contact = ContactFactory(workspace=workspace, email="cy@example.com")
    event(api, type="complaint", address="cy@example.com")

    response = api.post("/api/v1/messages", {"channel": "email", "contact_id": str(contact.id),
                                             "subject": "Hi", "text": "Receipt"}, format="json")
    message_id = response.json()["id"]
    wait_until(lambda: Message.objects.get(id=message_id).status == "suppressed")
    assert Message.objects.get(id=message_id).suppressed_reason == "complained"
    assert smtp.received == []
