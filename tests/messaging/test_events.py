"""Events end to end: endpoint API -> status change -> webhook message -> live worker ->
local receiver, verified with the reference Standard Webhooks library."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from messaging.events.endpoints import endpoint_enable
from messaging.events.outbox import subscribers, subscribers_forget
from messaging.models import Message, WebhookEndpoint
from tests.support.stub_server import Reply
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def headers_of(request) -> dict[str, str]:
    return {name: request.header(name) or "" for name in
            ("webhook-id", "webhook-timestamp", "webhook-signature")}


def create_endpoint(api, url: str, events: list[str], **extra) -> dict:
    response = api.post("/api/v1/webhook-endpoints", {"url": url, "events": events, **extra},
                        format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def send_webhook(api, url: str) -> str:
    response = api.post("/api/v1/messages", {"channel": "webhook", "url": url,
                                             "payload": {"n": 1}}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def test_message_sent_reaches_the_endpoint_signed_with_the_secret_shown_at_creation(
        api, workspace, stub_server, live_worker, allow_local):
    endpoint = create_endpoint(api, f"{stub_server.url}/events", ["message.sent"])
    assert endpoint["secret"].startswith("whsec_")
    message_id = send_webhook(api, f"{stub_server.url}/hook")

    request = stub_server.wait_for(1, path="/events")[0]
    body = Webhook(endpoint["secret"]).verify(request.body, headers_of(request))
    assert body["type"] == "message.sent"
    assert body["data"]["id"] == message_id
    assert body["data"]["status"] == "sent"
    assert set(body) == {"type", "schema_version", "timestamp", "data"}
    # webhook-id is the event id, the same in the delivery log.
    delivery = Message.objects.get(webhook_endpoint_id=endpoint["id"])
    assert request.header("webhook-id") == delivery.metadata["_event_id"]
    # The workspace's own secret does not sign an endpoint's deliveries.
    with pytest.raises(WebhookVerificationError):
        Webhook(workspace.webhook_secret).verify(request.body, headers_of(request))
    # The secret is shown once.
    assert "secret" not in api.get(f"/api/v1/webhook-endpoints/{endpoint['id']}").json()


def test_star_subscribes_to_every_event_in_order_per_message(
        api, stub_server, live_worker, allow_local):
    create_endpoint(api, f"{stub_server.url}/events", ["*"])
    message_id = send_webhook(api, f"{stub_server.url}/hook")

    received = stub_server.wait_for(2, path="/events")
    types = [r.json()["type"] for r in received if r.json()["data"]["id"] == message_id]
    assert types == ["message.queued", "message.sent"]
    # Event deliveries emit no events of their own.
    stub_server.wait_for(1, path="/hook")
    assert Message.objects.filter(source="event").count() == 2


def test_a_503_then_200_endpoint_is_retried(api, stub_server, live_worker, dispatcher,
                                           allow_local, fast_retries):
    endpoint = create_endpoint(api, f"{stub_server.url}/events", ["message.sent"])
    stub_server.script("/events", Reply(503, {"error": "busy"}))
    send_webhook(api, f"{stub_server.url}/hook")

    first, second = stub_server.wait_for(2, path="/events")
    assert first.header("webhook-id") == second.header("webhook-id")
    wait_until(lambda: Message.objects.get(webhook_endpoint_id=endpoint["id"]).status == "sent")
    log = api.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries").json()
    assert [(d["event_type"], d["status"], d["attempts"], d["response_code"])
            for d in log["results"]] == [("message.sent", "sent", 2, 200)]
    assert log["results"][0]["latency_ms"] is not None
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).failing_since is None


def test_rotation_signs_with_both_secrets_then_only_the_new_one(
        api, stub_server, live_worker, allow_local):
    endpoint = create_endpoint(api, f"{stub_server.url}/events", ["message.sent"])
    old = endpoint["secret"]
    rotated = api.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret").json()
    new = rotated["secret"]
    assert new != old and new.startswith("whsec_")

    send_webhook(api, f"{stub_server.url}/hook")
    request = stub_server.wait_for(1, path="/events")[0]
    assert len(request.header("webhook-signature").split(" ")) == 2
    Webhook(old).verify(request.body, headers_of(request))
    Webhook(new).verify(request.body, headers_of(request))

    # A day later only the new secret signs.
    WebhookEndpoint.objects.filter(pk=endpoint["id"]).update(
        secret_rotated_at=timezone.now() - timedelta(hours=24, minutes=1))
    send_webhook(api, f"{stub_server.url}/hook")
    request = stub_server.wait_for(2, path="/events")[1]
    assert len(request.header("webhook-signature").split(" ")) == 1
    Webhook(new).verify(request.body, headers_of(request))
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(request.body, headers_of(request))


def test_a_disabled_endpoint_receives_nothing(api, stub_server, live_worker, allow_local):
    disabled = create_endpoint(api, f"{stub_server.url}/disabled", ["*"])
    create_endpoint(api, f"{stub_server.url}/enabled", ["message.sent"])
    answer = api.patch(f"/api/v1/webhook-endpoints/{disabled['id']}", {"enabled": False},
                       format="json")
    assert answer.json()["enabled"] is False

    send_webhook(api, f"{stub_server.url}/hook")
    stub_server.wait_for(1, path="/enabled")
    stub_server.wait_for(1, path="/hook")
    assert [r.path for r in stub_server.requests if r.path.startswith("/disabled")] == []
    assert not Message.objects.filter(webhook_endpoint_id=disabled["id"]).exists()


def test_replay_sends_the_same_event_again(api, stub_server, live_worker, allow_local,
                                           settings):
    settings.MAX_ATTEMPTS = {**settings.MAX_ATTEMPTS, "webhook": 1}
    endpoint = create_endpoint(api, f"{stub_server.url}/events", ["message.sent"])
    stub_server.script("/events", Reply(500, {}))
    send_webhook(api, f"{stub_server.url}/hook")
    first = stub_server.wait_for(1, path="/events")[0]
    wait_until(lambda: Message.objects.filter(webhook_endpoint_id=endpoint["id"],
                                              status="failed").exists())
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).failing_since is not None

    since = (timezone.now() - timedelta(minutes=1)).isoformat()
    answer = api.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/replay", {"since": since},
                      format="json").json()
    assert answer["count"] == 1
    again = stub_server.wait_for(2, path="/events")[1]
    assert again.header("webhook-id") == first.header("webhook-id")
    assert json.loads(again.body) == json.loads(first.body)
    wait_until(lambda: WebhookEndpoint.objects.get(pk=endpoint["id"]).failing_since is None)
    failed = api.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries",
                     {"status": "failed"}).json()["results"]
    assert len(failed) == 1
    one = api.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries/"
                   f"{failed[0]['id']}/replay")
    assert one.status_code == 201
    assert one.json()["replay_of"] == failed[0]["id"]
    stub_server.wait_for(3, path="/events")


def test_a_status_callback_url_receives_that_messages_events(
        api, workspace, stub_server, live_worker, allow_local):
    response = api.post("/api/v1/messages", {
        "channel": "webhook", "url": f"{stub_server.url}/hook", "payload": {},
        "status_callback_url": f"{stub_server.url}/status"}, format="json")
    message_id = response.json()["id"]

    received = stub_server.wait_for(2, path="/status")
    for request in received:
        body = Webhook(workspace.webhook_secret).verify(request.body, headers_of(request))
        assert body["data"]["id"] == message_id
    assert [r.json()["type"] for r in received] == ["message.queued", "message.sent"]


def test_compat_callback_url_is_the_status_callback(api, workspace, stub_server, live_worker,
                                                     allow_local):
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    response = api.post("/api/schedule-sms", {
        "to": "+14155552671", "message": "hi", "callbackUrl": f"{stub_server.url}/status"},
        format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["ignored_fields"] == []
    sent = stub_server.wait_for(2, path="/status")[1]
    Webhook(workspace.webhook_secret).verify(sent.body, headers_of(sent))
    assert sent.json()["type"] == "message.sent"
    assert sent.json()["data"]["id"] == response.json()["jobId"]


def test_an_inbound_message_reaches_an_endpoint_as_message_received(
        api, workspace, stub_server, live_worker, allow_local):
    endpoint = create_endpoint(api, f"{stub_server.url}/events", ["message.received"])
    response = api.post("/api/v1/inbound", {"channel": "sms", "from": "+14155550123",
                                            "to": "+14155550100", "body": "Is it open?"},
                        format="json")
    assert response.status_code == 201, response.json()

    request = stub_server.wait_for(1, path="/events")[0]
    body = Webhook(endpoint["secret"]).verify(request.body, headers_of(request))
    assert body["type"] == "message.received"
    assert (body["data"]["direction"], body["data"]["status"], body["data"]["sender"]) == (
        "inbound", "received", "+14155550123")
    assert body["data"]["content"]["body"] == "Is it open?"


# --- the lookup of a workspace's endpoints -----------------------------------------------------

def _queued_deliveries(workspace) -> int:
    from messaging.delivery import creation

    creation.message_create_many(messages=[creation.message_build(
        workspace=workspace, channel="sms", to="+14155552671", content={"body": "x"})])
    return Message.objects.filter(workspace=workspace, source="event").count()


def test_a_workspace_without_endpoints_is_not_looked_up_again_right_away(
        workspace, django_assert_num_queries):
    subscribers_forget()
    assert subscribers([workspace.pk]) == {}
    with django_assert_num_queries(0):
        assert subscribers([workspace.pk]) == {}


def test_an_endpoint_created_in_this_process_gets_the_next_event_at_once(workspace):
    subscribers_forget()
    assert _queued_deliveries(workspace) == 0
    WebhookEndpoint.objects.create(workspace=workspace, url="https://example.com/hook",
                                   events=["*"])
    assert _queued_deliveries(workspace) == 1


def test_an_endpoint_enabled_again_gets_the_next_event_at_once(workspace):
    endpoint = WebhookEndpoint.objects.create(workspace=workspace, enabled=False,
                                              url="https://example.com/hook", events=["*"])
    subscribers_forget()
    assert _queued_deliveries(workspace) == 0
    endpoint_enable(endpoint=endpoint)
    assert _queued_deliveries(workspace) == 1


def test_an_endpoint_created_elsewhere_is_found_once_the_recheck_time_passed(
        workspace, settings):
    subscribers_forget()
    assert _queued_deliveries(workspace) == 0
    # Another process's insert: no signal reaches this one.
    WebhookEndpoint.objects.bulk_create([WebhookEndpoint(
        workspace=workspace, url="https://example.com/hook", events=["*"])])
    assert _queued_deliveries(workspace) == 0
    settings.EVENT_ENDPOINTS_RECHECK_SECONDS = 0
    assert _queued_deliveries(workspace) == 1


def test_found_endpoints_are_not_remembered(workspace):
    endpoint = WebhookEndpoint.objects.create(workspace=workspace,
                                              url="https://example.com/hook", events=["*"])
    assert _queued_deliveries(workspace) == 1
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)  # no signal
    assert _queued_deliveries(workspace) == 1
