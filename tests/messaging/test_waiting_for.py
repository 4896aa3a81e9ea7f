"""`scheduled` says a timer holds a message; `waiting_for` says whose (docs/glossary.md):
the sender's send_at, a retry's backoff, the rate limit, quiet hours, a frequency cap or a
paused queue. Each case is driven through the real claim and read back from the API."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.audit import Actor
from messaging.delivery import creation, pauses, sending, timers
from messaging.models import Message
from messaging.ratelimit import reset
from tests.factories import ContactFactory
from tests.support.stub_server import Reply

pytestmark = pytest.mark.django_db(transaction=True)


def use_stub(workspace, stub_server, **settings) -> None:
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}},
                          **settings}
    workspace.save()


def sms(workspace, **fields):
    return creation.message_create(workspace=workspace, channel="sms", to="+14155550107",
                                   content={"body": "hi"}, **fields)


def waiting_for(api, message) -> str | None:
    answer = api.get(f"/api/v1/messages/{message.pk}")
    assert answer.status_code == 200
    return answer.json()["waiting_for"]


def test_a_message_sent_later_on_purpose_waits_for_its_send_at(api, workspace):
    message = sms(workspace, send_at=timezone.now() + timedelta(hours=1))

    assert message.status == "scheduled"
    assert waiting_for(api, message) == "send_at"


def test_a_deferral_by_quiet_hours_says_so(api, workspace, stub_server):
    local = timezone.now()
    use_stub(workspace, stub_server, quiet_hours={
        "start": (local - timedelta(hours=1)).strftime("%H:%M"),
        "end": (local + timedelta(hours=2)).strftime("%H:%M")})
    contact = ContactFactory(workspace=workspace, phone="+14155550107", timezone="UTC")
    message = sms(workspace, contact=contact, category="marketing")

    assert sending.messages_deliver(message_ids=[str(message.pk)]) == {
        str(message.pk): "deferred"}
    assert waiting_for(api, message) == "quiet_hours"


def test_a_deferral_by_the_rate_limit_says_so_and_the_first_sent_waits_for_nothing(
        api, workspace, stub_server):
    use_stub(workspace, stub_server, rate_limits={"sms": "1/m"})
    first, second = sms(workspace), sms(workspace)
    try:
        outcomes = sending.messages_deliver(message_ids=[str(first.pk), str(second.pk)])
    finally:
        reset(str(workspace.id))

    assert outcomes == {str(first.pk): "sent", str(second.pk): "deferred"}
    assert waiting_for(api, first) is None
    assert waiting_for(api, second) == "rate_limit"


def test_a_retry_waits_for_its_backoff(api, workspace, stub_server):
    use_stub(workspace, stub_server)
    stub_server.script("/send-sms", Reply(503, {"error": "busy"}))
    message = sms(workspace)

    assert sending.messages_deliver(message_ids=[str(message.pk)]) == {
        str(message.pk): "retrying"}
    assert waiting_for(api, message) == "retry_backoff"


def test_a_message_held_by_a_paused_queue_waits_for_the_pause(api, workspace):
    pauses.queue_pause(queue="sms", workspace=workspace,
                       actor=Actor(name="user:ops", source="dashboard"), reason="carrier")
    message = sms(workspace)

    assert sending.messages_deliver(message_ids=[str(message.pk)]) == {
        str(message.pk): "paused"}
    assert waiting_for(api, message) == "pause"


def test_a_deferral_s_reason_ends_when_its_timer_fires(api, workspace, stub_server):
    use_stub(workspace, stub_server, rate_limits={"sms": "1/m"})
    first, second = sms(workspace), sms(workspace)
    try:
        sending.messages_deliver(message_ids=[str(first.pk), str(second.pk)])
    finally:
        reset(str(workspace.id))
    Message.objects.filter(pk=second.pk).update(due_at=timezone.now())

    assert timers.dispatch_due() == 1
    answer = api.get(f"/api/v1/messages/{second.pk}").json()
    assert (answer["status"], answer["status_reason"], answer["waiting_for"]) == (
        "queued", "", None)
