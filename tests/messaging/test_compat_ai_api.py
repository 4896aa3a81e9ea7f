"""The older AI response queue's job at POST /api/schedule-ai-response, for its clients.

Payloads are that queue's job (`workspace_id`, `contact_id`, `message_id`, `message_text`,
`callback_url`, `rate_limit_key`); the reply must reach the callback in its dedicated shape.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from messaging import ratelimit
from messaging.models import Message, MessageStatus
from tests.factories import ContactFactory
from tests.support.stub_server import Reply, StubServer
from tests.support.waiting import wait_until

URL = "/api/schedule-ai-response"
COMPLETION = {"id": "chatcmpl-9", "model": "m",
              "choices": [{"message": {"role": "assistant", "content": "We open at 9."}}]}


def job(workspace, callback: str = "https://app.example.com/api/ai-response",
        **extra: Any) -> dict[str, Any]:
    """Return the AI queue's job payload as the older frontend builds it."""
    return {"workspace_id": str(workspace.id), "contact_id": "contact-7",
            "message_id": "msg-123", "message_text": "When do you open?",
            "callback_url": callback, "rate_limit_key": "contact-7", **extra}


@pytest.fixture
def openai_stub(workspace, stub_server: StubServer, live_worker, allow_local) -> StubServer:
    """Return the stub server answering as the workspace's OpenAI, reachable as a callback."""
    workspace.settings = {"providers": {"ai": {"name": "openai", "api_base": stub_server.url,
                                               "api_key": "k", "model": "m"}}}
    workspace.save()
    stub_server.script("/chat/completions", Reply(200, COMPLETION))
    return stub_server


def schedule(api, payload: dict[str, Any]) -> Message:
    response = api.post(URL, payload, format="json")
    assert response.status_code == 201, response.json()
    return Message.objects.get(id=response.json()["jobId"])


# --- the endpoint ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_it_accepts_the_job_payload_and_answers_like_the_other_compat_endpoints(
        api, workspace):
    response = api.post(URL, job(workspace, ignored_field="x"), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["success"], body["status"]) == (True, "waiting")
    assert body["ignored_fields"] == ["ignored_field"]
    assert body["scheduledTime"].endswith("Z")
    message = Message.objects.get(id=body["jobId"])
    assert (message.workspace, message.channel, message.source) == (workspace, "ai", "compat")
    assert message.content == {"prompt": "When do you open?",
                               "callback_url": "https://app.example.com/api/ai-response"}
    assert message.metadata == {"workspace_id": str(workspace.id), "contact_id": "contact-7",
                                "message_id": "msg-123", "_rate_limit_key": "contact-7",
                                "_callback_shape": "ai_response"}
    assert message.contact is None


@pytest.mark.django_db
def test_a_contact_id_that_is_ours_links_the_contact(api, workspace):
    contact = ContactFactory(workspace=workspace)
    message = schedule(api, job(workspace, contact_id=str(contact.id)))
    assert message.contact == contact
    assert message.metadata["contact_id"] == str(contact.id)


@pytest.mark.django_db
def test_another_workspace_id_answers_403(api, workspace, other_api):
    response = api.post(URL, job(workspace, workspace_id="someone-else"), format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "workspace_mismatch"
    assert not Message.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["message_text", "callback_url"])
@pytest.mark.parametrize("value", [None, ""])
def test_a_job_without_text_or_callback_answers_400_naming_it(api, workspace, field, value):
    payload = job(workspace, **{field: value})
    if value is None:
        del payload[field]
    response = api.post(URL, payload, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]
    assert not Message.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("extra", "field"), [
    ({"callback_url": "http://10.0.0.1/cb"}, "callback_url"),
    ({"callback_url": "ftp://example.com/cb"}, "callback_url"),
    ({"message_text": 42}, "message_text"),
    ({"rate_limit_key": "a b"}, "rate_limit_key"),
    ({"rate_limit_key": "x*"}, "rate_limit_key"),
    ({"rate_limit_key": "k" * 101}, "rate_limit_key"),
    ({"message_id": {"id": 1}}, "message_id"),
])
def test_an_invalid_field_answers_400_naming_it(api, workspace, extra, field):
    response = api.post(URL, job(workspace, **extra), format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_an_idempotency_key_replays_the_first_answer(api, workspace):
    first = api.post(URL, job(workspace), format="json", HTTP_IDEMPOTENCY_KEY="ai-1")
    again = api.post(URL, job(workspace), format="json", HTTP_IDEMPOTENCY_KEY="ai-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["jobId"] == first.json()["jobId"]
    assert again["Idempotent-Replayed"] == "true"
    assert Message.objects.count() == 1


# --- the reply, through the live pipeline ---------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_the_reply_reaches_the_callback_in_the_old_dedicated_shape(api, workspace,
                                                                   openai_stub):
    message = schedule(api, job(workspace, callback=f"{openai_stub.url}/ai-response"))

    callback = openai_stub.wait_for(1, path="/ai-response")[0]
    body = callback.json()
    assert body["workspace_id"] == str(workspace.id)
    assert body["message_id"] == "msg-123"
    assert body["job_id"] == str(message.id)
    assert body["response_text"] == "We open at 9."
    assert set(body) == {"workspace_id", "message_id", "job_id", "response_text"}
    Webhook(workspace.webhook_secret).verify(callback.body, {
        k: callback.header(k) for k in ("webhook-id", "webhook-timestamp",
                                         "webhook-signature")})
    wait_until(lambda: message.children.filter(status=MessageStatus.SENT).exists())
    child = message.children.get()
    assert (child.channel, child.source) == ("webhook", "ai")
    assert "_rate_limit_key" not in child.metadata
    assert "_callback_shape" not in child.metadata


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_the_rate_limit_key_counts_apart_and_throttles_itself(api, workspace, live_worker):
    # One a minute: a second message on a key waits a whole minute, however slow the test.
    workspace.settings = {"rate_limits": {"ai": "1/min"}}
    workspace.save()
    first_a = schedule(api, job(workspace, rate_limit_key="user:a"))
    only_b = schedule(api, job(workspace, rate_limit_key="user:b"))
    wait_until(lambda: all(Message.objects.get(pk=m.pk).status == MessageStatus.SENT
                           for m in (first_a, only_b)))
    second_a = schedule(api, job(workspace, rate_limit_key="user:a"))

    wait_until(lambda: Message.objects.get(pk=second_a.pk).rate_slot_at is not None)
    second_a.refresh_from_db()
    assert second_a.status == MessageStatus.SCHEDULED
    assert second_a.rate_slot_at > timezone.now() + timedelta(seconds=30)
    assert Message.objects.filter(pk__in=[first_a.pk, only_b.pk],
                                  rate_slot_at__isnull=True).count() == 2
    assert ratelimit.deferral_counts(str(workspace.id)) == {"ai": 1}
    keys = set(ratelimit.client().scan_iter(match=f"rl:{workspace.id}:*"))
    assert keys == {f"rl:{workspace.id}:ai:key:user:a", f"rl:{workspace.id}:ai:key:user:b"}
    ratelimit.reset(str(workspace.id))
