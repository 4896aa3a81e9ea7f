from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from messaging.models import Message, MessageStatus
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db
SMS = {"channel": "sms", "to": "+14155552671", "body": "Hello {{ contact.first_name }}"}


def test_it_queues_an_sms(api, workspace):
    response = api.post("/api/v1/messages", {**SMS, "metadata": {"order": 7}}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "queued"
    assert body["metadata"] == {"order": 7}
    message = Message.objects.get(id=body["id"])
    assert message.workspace == workspace and message.to == "+14155552671"
    assert message.content == {"body": "Hello {{ contact.first_name }}"}


def test_it_schedules_with_send_at_and_delay(api):
    at = (timezone.now() + timedelta(hours=2)).isoformat()
    first = api.post("/api/v1/messages", {**SMS, "send_at": at}, format="json").json()
    assert first["status"] == "scheduled" and first["scheduled_for"]
    second = api.post("/api/v1/messages", {**SMS, "delay_seconds": 60}, format="json").json()
    assert second["status"] == "scheduled"


def test_it_takes_the_recipient_from_a_contact(api, workspace):
    contact = ContactFactory(workspace=workspace, phone="+14155552672", email="c@example.com")
    sms = api.post("/api/v1/messages", {"channel": "sms", "contact_id": str(contact.id),
                                        "body": "x"}, format="json").json()
    assert sms["to"] == "+14155552672" and sms["contact_id"] == str(contact.id)
    email = api.post("/api/v1/messages", {
        "channel": "email", "contact_external_id": contact.external_id, "subject": "s",
        "html": "<p>x</p>"}, format="json").json()
    assert email["to"] == "c@example.com"


def test_a_contact_of_another_workspace_is_not_found(api, other_api, workspace):
    contact = ContactFactory(workspace=workspace)
    response = other_api.post("/api/v1/messages", {"channel": "sms", "body": "x",
                                                   "contact_id": str(contact.id)}, format="json")
    assert response.status_code == 400
    assert "contact_id" in response.json()["error"]["fields"]


@pytest.mark.parametrize("payload,field", [
    ({"channel": "fax", "to": "+14155552671", "body": "x"}, "channel"),
    ({"channel": "sms", "to": "+14155552671"}, "body"),
    ({"channel": "sms", "to": "12345", "body": "x"}, "to"),
    ({"channel": "sms", "body": "x"}, "to"),
    ({"channel": "sms", "to": "+14155552671", "body": 5}, None),
    ({"channel": "sms", "to": "+14155552671", "body": ["x"]}, "body"),
    ({"channel": "sms", "to": "+14155552671", "body": "x", "subject": "y"}, "subject"),
    ({"channel": "sms", "to": "+14155552671", "body": "x", "bogus": 1}, "bogus"),
    ({"channel": "mms", "to": "+14155552671", "body": "x",
      "media_urls": [f"https://example.com/{i}.png" for i in range(11)]}, "media_urls"),
    ({"channel": "mms", "to": "+14155552671", "media_urls": []}, "media_urls"),
    ({"channel": "mms", "to": "+14155552671", "media_urls": ["http://example.com/a.png"]},
     "media_urls"),
    ({"channel": "mms", "to": "+14155552671", "media_urls": ["https://127.0.0.1/a.png"]},
     "media_urls"),
    ({"channel": "email", "to": "nope", "subject": "s", "html": "x"}, "to"),
    ({"channel": "email", "to": "a@example.com", "subject": "s"}, "html"),
    ({"channel": "email", "to": "a@example.com", "html": "x"}, "subject"),
    ({"channel": "ai", "to": "x"}, "prompt"),
    ({"channel": "ai", "prompt": "p", "callback_url": "http://10.0.0.1/cb"}, "callback_url"),
    ({"channel": "webhook", "url": "https://example.com/h"}, "payload"),
    ({"channel": "webhook", "url": "ftp://example.com/h", "payload": {}}, "url"),
    ({"channel": "webhook", "url": "http://[::ffff:127.0.0.1]/h", "payload": {}}, "url"),
    ({"channel": "webhook", "url": "http://2130706433/h", "payload": {}}, "url"),
    ({**SMS, "send_at": "2020-01-01T00:00:00Z"}, "send_at"),
    ({**SMS, "send_at": "2099-01-01T00:00:00"}, "send_at"),
    ({**SMS, "send_at": "tomorrow"}, "send_at"),
    ({**SMS, "delay_seconds": -1}, "delay_seconds"),
    ({**SMS, "delay_seconds": 5, "send_at": "2099-01-01T00:00:00Z"}, "send_at"),
    ({**SMS, "metadata": "x"}, "metadata"),
    ({**SMS, "priority": "urgent"}, "priority"),
])
def test_bad_input_answers_400_and_writes_nothing(api, payload, field):
    response = api.post("/api/v1/messages", payload, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    if field:
        assert field in error["fields"], error
    assert Message.objects.count() == 0


def test_a_non_object_body_answers_400(api):
    assert api.post("/api/v1/messages", [1, 2], format="json").status_code == 400
    assert api.generic("POST", "/api/v1/messages", "nope",
                       content_type="application/json").status_code == 400


def test_a_10_mb_body_answers_400(api):
    huge = '{"channel": "sms", "to": "+14155552671", "body": "' + "x" * 10_000_000 + '"}'
    response = api.generic("POST", "/api/v1/messages", huge, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "request_too_large"
    assert Message.objects.count() == 0


def test_idempotency_key_replays_the_first_answer(api):
    first = api.post("/api/v1/messages", SMS, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    second = api.post("/api/v1/messages", SMS, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert second["Idempotent-Replayed"] == "true"
    assert Message.objects.count() == 1


def test_idempotency_key_with_another_body_answers_422(api):
    api.post("/api/v1/messages", SMS, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    response = api.post("/api/v1/messages", {**SMS, "body": "other"}, format="json",
                        HTTP_IDEMPOTENCY_KEY="k2")
    assert response.status_code == 422
    assert Message.objects.count() == 1


def test_idempotency_keys_are_scoped_per_workspace(api, other_api):
    a = api.post("/api/v1/messages", SMS, format="json", HTTP_IDEMPOTENCY_KEY="same")
    b = other_api.post("/api/v1/messages", SMS, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert a.json()["id"] != b.json()["id"]


def test_a_refused_request_does_not_burn_the_key(api):
    bad = api.post("/api/v1/messages", {**SMS, "to": "1"}, format="json",
                   HTTP_IDEMPOTENCY_KEY="k3")
    assert bad.status_code == 400
    good = api.post("/api/v1/messages", SMS, format="json", HTTP_IDEMPOTENCY_KEY="k3")
    assert good.status_code == 201


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_posts_with_one_key_create_one_message(api_key):
    results: list[tuple[int, str | None]] = []
    barrier = threading.Barrier(20)

    def post() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
        barrier.wait()
        response = client.post("/api/v1/messages", SMS, format="json",
                               HTTP_IDEMPOTENCY_KEY="concurrent")
        results.append((response.status_code, response.json().get("id")))
        connection.close()

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Message.objects.count() == 1
    created = [r for r in results if r[0] == 201]
    assert created and {r[1] for r in created} == {str(Message.objects.get().id)}
    assert all(code in (201, 409) for code, _ in results), results


def test_batch_creates_all_or_nothing(api):
    items = [SMS, {**SMS, "to": "+14155552672"}, {"channel": "webhook",
                                                   "url": "https://example.com/h",
                                                   "payload": {"a": 1}}]
    response = api.post("/api/v1/messages/batch", {"messages": items}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["count"] == 3
    assert Message.objects.count() == 3
    bad = api.post("/api/v1/messages/batch", {"messages": [SMS, {**SMS, "to": "1"}, SMS,
                                                           {"channel": "x"}]}, format="json")
    assert bad.status_code == 400
    assert set(bad.json()["error"]["fields"]["messages"]) == {"1", "3"}
    assert Message.objects.count() == 3


def test_batch_refuses_more_than_1000(api):
    response = api.post("/api/v1/messages/batch", {"messages": [SMS] * 1001}, format="json")
    assert response.status_code == 400
    assert Message.objects.count() == 0


def test_cancel_only_while_not_yet_sent(api):
    message = api.post("/api/v1/messages", {**SMS, "delay_seconds": 3600}, format="json").json()
    response = api.post(f"/api/v1/messages/{message['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = api.post(f"/api/v1/messages/{message['id']}/cancel")
    assert again.status_code == 409
    Message.objects.filter(id=message["id"]).update(status=MessageStatus.SENT)
    assert api.post(f"/api/v1/messages/{message['id']}/cancel").status_code == 409


def test_list_filters_and_isolation(api, other_api, workspace):
    contact = ContactFactory(workspace=workspace)
    api.post("/api/v1/messages", {**SMS, "metadata": {"campaign": "spring"}}, format="json")
    api.post("/api/v1/messages", {"channel": "sms", "contact_id": str(contact.id),
                                  "body": "x", "delay_seconds": 600}, format="json")
    api.post("/api/v1/messages", {"channel": "email", "to": "a@example.com", "subject": "s",
                                  "text": "t"}, format="json")
    assert api.get("/api/v1/messages").json()["count"] == 3
    assert api.get("/api/v1/messages?channel=email").json()["count"] == 1
    assert api.get("/api/v1/messages?status=scheduled").json()["count"] == 1
    assert api.get(f"/api/v1/messages?contact_id={contact.id}").json()["count"] == 1
    assert api.get("/api/v1/messages?metadata_key=campaign").json()["count"] == 1
    assert api.get("/api/v1/messages?metadata_key=campaign&metadata_value=spring"
                   ).json()["count"] == 1
    assert api.get("/api/v1/messages?metadata_key=campaign&metadata_value=fall"
                   ).json()["count"] == 0
    future = (timezone.now() + timedelta(minutes=5)).isoformat()
    assert api.get("/api/v1/messages", {"scheduled_after": future}).json()["count"] == 1
    assert other_api.get("/api/v1/messages").json()["count"] == 0
    some_id = api.get("/api/v1/messages").json()["results"][0]["id"]
    assert other_api.get(f"/api/v1/messages/{some_id}").status_code == 404
    assert other_api.post(f"/api/v1/messages/{some_id}/cancel").status_code == 404
    detail = api.get(f"/api/v1/messages/{some_id}").json()
    assert detail["attempts_log"] == []


def test_the_api_rate_limit_answers_429_with_retry_after(api, settings):
    settings.API_RATE_LIMIT = "3/s"
    codes = [api.get("/api/v1/messages").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    limited = api.get("/api/v1/messages")
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"


def test_validate_checks_like_create_and_writes_nothing(api):
    ok = api.post("/api/v1/messages/validate", SMS, format="json")
    assert ok.status_code == 200 and ok.json()["valid"] is True
    assert ok.json()["message"]["status"] == "queued"
    bad = api.post("/api/v1/messages/validate", {**SMS, "to": "1"}, format="json")
    assert bad.status_code == 400 and "to" in bad.json()["error"]["fields"]
    assert Message.objects.count() == 0


def test_an_empty_api_rate_limit_disables_the_throttle(api, settings):
    settings.API_RATE_LIMIT = ""
    assert {api.get("/api/v1/messages").status_code for _ in range(120)} == {200}
