"""End-to-end delivery: API -> database -> broker -> live worker -> local stand-in provider."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from core.models import DeadLetter
from messaging.delivery import creation
from messaging.models import DeliveryAttempt, Message
from tests.factories import ContactFactory, WorkspaceFactory
from tests.support.stub_server import Reply
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def use_http_sms(workspace, stub_server, **extra) -> None:
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}},
                          **extra}
    workspace.save()


def status_of(message_id: str) -> str:
    return Message.objects.get(id=message_id).status


def test_an_sms_is_rendered_and_sent_through_the_http_provider(
        api, workspace, stub_server, live_worker):
    use_http_sms(workspace, stub_server)
    contact = ContactFactory(workspace=workspace, first_name="Ada", phone="+14155552671",
                             attributes={"plan": "gold"})
    response = api.post("/api/v1/messages", {
        "channel": "sms", "contact_id": str(contact.id), "metadata": {"code": "X1"},
        "body": "Hi {{ contact.first_name }} ({{ contact.attributes.plan }}) {{ metadata.code }}"
                "{{ contact.attributes.missing }}!"}, format="json")
    message_id = response.json()["id"]
    request = stub_server.wait_for(1, path="/send-sms")[0]
    assert request.json()["message"] == "Hi Ada (gold) X1!"
    assert request.json()["to"] == "+14155552671"
    assert request.json()["workspaceId"] == str(workspace.id)
    assert request.header("Idempotency-Key") == message_id
    wait_until(lambda: status_of(message_id) == "sent")
    detail = api.get(f"/api/v1/messages/{message_id}").json()
    assert detail["rendered"]["body"] == "Hi Ada (gold) X1!"
    assert [a["outcome"] for a in detail["attempts_log"]] == ["sent"]
    assert detail["attempts_log"][0]["status_code"] == 200


def test_a_webhook_is_signed_per_standard_webhooks(api, workspace, stub_server, live_worker,
                                                   allow_local):
    response = api.post("/api/v1/messages", {
        "channel": "webhook", "url": f"{stub_server.url}/hook", "payload": {"a": 1},
        "headers": {"X-Custom": "yes"}}, format="json")
    message_id = response.json()["id"]
    request = stub_server.wait_for(1, path="/hook")[0]
    assert request.header("webhook-id") == message_id
    assert request.header("X-Custom") == "yes"
    Webhook(workspace.webhook_secret).verify(request.body, {
        "webhook-id": request.header("webhook-id"),
        "webhook-timestamp": request.header("webhook-timestamp"),
        "webhook-signature": request.header("webhook-signature")})
    wait_until(lambda: status_of(message_id) == "sent")


def test_a_503_then_200_retries_and_sends_once(api, workspace, stub_server, live_worker,
                                               dispatcher, fast_retries):
    use_http_sms(workspace, stub_server)
    stub_server.script("/send-sms", Reply(503, {"error": "busy"}))
    message_id = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                               "body": "x"}, format="json").json()["id"]
    wait_until(lambda: status_of(message_id) == "sent")
    assert len(stub_server.requests) == 2
    attempts = list(DeliveryAttempt.objects.filter(message_id=message_id).order_by("number"))
    assert [(a.outcome, a.status_code) for a in attempts] == [("retry", 503), ("sent", 200)]
    assert not DeadLetter.objects.exists()


def test_a_400_fails_at_once_into_the_dead_letters(api, workspace, stub_server, live_worker):
    use_http_sms(workspace, stub_server)
    stub_server.script("/send-sms", Reply(400, {"error": "invalid number"}))
    message_id = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                               "body": "x"}, format="json").json()["id"]
    wait_until(lambda: status_of(message_id) == "failed")
    time.sleep(0.3)
    assert len(stub_server.requests) == 1
    letter = DeadLetter.objects.get(source_id=message_id)
    assert letter.kind == "message" and letter.channel == "sms" and letter.attempts == 1
    assert "400" in letter.error and letter.payload["message_id"] == message_id


def test_exhausted_retries_end_in_the_dead_letters(api, workspace, stub_server, live_worker,
                                                   dispatcher, fast_retries, settings):
    settings.MAX_ATTEMPTS = {**settings.MAX_ATTEMPTS, "sms": 3}
    use_http_sms(workspace, stub_server)
    stub_server.default = Reply(500, {"error": "down"})
    message_id = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                               "body": "x"}, format="json").json()["id"]
    wait_until(lambda: status_of(message_id) == "failed", timeout=20)
    assert len(stub_server.requests) == 3
    assert DeadLetter.objects.get(source_id=message_id).attempts == 3


def test_a_429_with_retry_after_waits_at_least_that_long(api, workspace, stub_server,
                                                         live_worker, dispatcher, fast_retries):
    use_http_sms(workspace, stub_server)
    stub_server.script("/send-sms", Reply(429, {"error": "slow down"},
                                          headers={"Retry-After": "2"}))
    message_id = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                               "body": "x"}, format="json").json()["id"]
    wait_until(lambda: status_of(message_id) == "sent")
    first, second = stub_server.requests
    assert second.at - first.at >= 2.0


def test_a_rate_limit_spreads_one_workspace_without_slowing_another(
        api, workspace, stub_server, live_worker, dispatcher):
    use_http_sms(workspace, stub_server, rate_limits={"sms": "5/s"})
    other = WorkspaceFactory()
    use_http_sms(other, stub_server)
    limited = [creation.message_build(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": f"l{i}"}) for i in range(50)]
    free = [creation.message_build(workspace=other, channel="sms", to="+14155552671",
                                   content={"body": f"f{i}"}) for i in range(20)]
    start = time.time()
    creation.message_create_many(messages=limited + free)
    stub_server.wait_for(70, timeout=40)
    by_body = {r.json()["message"]: r.at for r in stub_server.requests}
    limited_times = sorted(by_body[f"l{i}"] for i in range(50))
    free_times = [by_body[f"f{i}"] for i in range(20)]
    assert limited_times[-1] - limited_times[0] >= 9.0
    assert max(free_times) - start < 5.0
    deferred = Message.objects.filter(workspace=workspace, rate_slot_at__isnull=False).count()
    assert deferred >= 40
    from messaging.ratelimit import deferral_counts, reset
    assert deferral_counts(str(workspace.id)).get("sms", 0) >= 40
    reset(str(workspace.id))


def test_a_message_scheduled_3_s_ahead_is_sent_3_to_4_s_later(
        api, workspace, stub_server, live_worker, dispatcher):
    use_http_sms(workspace, stub_server)
    send_at = timezone.now() + timedelta(seconds=3)
    api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671", "body": "later",
                                  "send_at": send_at.isoformat()}, format="json")
    request = stub_server.wait_for(1, timeout=10)[0]
    lateness = request.at - send_at.timestamp()
    assert 0 <= lateness < 1.0, lateness


def test_cancelled_messages_are_never_sent(api, workspace, stub_server, live_worker,
                                           dispatcher):
    use_http_sms(workspace, stub_server)
    message_id = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                               "body": "x", "delay_seconds": 1},
                          format="json").json()["id"]
    assert api.post(f"/api/v1/messages/{message_id}/cancel").status_code == 200
    time.sleep(2.5)
    assert stub_server.requests == []
    assert status_of(message_id) == "cancelled"


def test_an_ai_reply_is_stored_and_posted_to_the_callback(api, workspace, stub_server,
                                                          live_worker, allow_local):
    stub_server.script("/chat/completions", Reply(200, {
        "choices": [{"message": {"role": "assistant", "content": "Sure, 9am works."}}],
        "model": "m"}))
    workspace.settings = {"providers": {"ai": {"name": "openai", "api_base": stub_server.url,
                                               "api_key": "k", "model": "m"}}}
    workspace.save()
    contact = ContactFactory(workspace=workspace)
    message_id = api.post("/api/v1/messages", {
        "channel": "ai", "contact_id": str(contact.id), "prompt": "Reply to: can we meet?",
        "callback_url": f"{stub_server.url}/ai-callback"}, format="json").json()["id"]
    callback = stub_server.wait_for(1, path="/ai-callback")[0]
    assert callback.json() == {"workspace_id": str(workspace.id), "message_id": message_id,
                               "contact_id": str(contact.id),
                               "response_text": "Sure, 9am works."}
    assert callback.header("webhook-signature", ).startswith("v1,")
    assert Message.objects.get(id=message_id).response["response_text"] == "Sure, 9am works."
