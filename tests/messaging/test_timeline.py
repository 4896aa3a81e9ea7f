"""A message's timeline on the real pipeline (README.md, "Timelines"): each fact written in
the transaction of the change it describes, in order, repeats counted on one row."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import timezone

from core.audit import Actor
from core.models import ApiKey
from messaging import ratelimit
from messaging.delivery import creation, pauses, sending, timers
from messaging.models import Message, TimelineEntry
from monitoring.services import history_purge
from tests.factories import ContactFactory, WorkspaceFactory
from tests.messaging.test_channels_end_to_end import (
    AUTH_TOKEN,
    MESSAGES_PATH,
    STATUS_PATH,
    callback_params,
    twilio_signature,
    use_twilio,
)
from tests.support.stub_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def deliver(message_id: str) -> str:
    """Fire the message's timer (the dispatcher's pass) and run its delivery task's service."""
    timers.dispatch_due(now=timezone.now() + timedelta(days=2))
    return sending.messages_deliver(message_ids=[message_id])[message_id]


def timeline(api, message_id: str) -> list[dict]:
    response = api.get(f"/api/v1/messages/{message_id}/timeline")
    assert response.status_code == 200, response.json()
    return response.json()["results"]


def settings_of(workspace, **extra) -> None:
    workspace.settings = {**workspace.settings, **extra}
    workspace.save()


def test_a_deferred_rate_limited_retried_sent_then_undelivered_sms_shows_each_step_in_order(
        api, api_key, workspace, stub_server, settings):
    settings.PUBLIC_BASE_URL = ""
    use_twilio(workspace, stub_server)
    zone = ZoneInfo("America/New_York")
    local_now = timezone.now().astimezone(zone)
    quiet = {"start": (local_now - timedelta(hours=1)).strftime("%H:%M"),
             "end": (local_now + timedelta(hours=2)).strftime("%H:%M")}
    settings_of(workspace, quiet_hours=quiet)
    contact = ContactFactory(workspace=workspace, phone="+14155552671",
                             timezone="America/New_York")
    created = api.post("/api/v1/messages", {"channel": "sms", "body": "Sale!",
                                            "contact_id": str(contact.pk),
                                            "category": "marketing"}, format="json")
    message_id = created.json()["id"]

    assert deliver(message_id) == "deferred"  # quiet hours
    # Quiet hours over; the channel's rate limit has its next slot booked by another send.
    settings_of(workspace, quiet_hours=None, rate_limits={"sms": "1/min"})
    rate = ratelimit.Rate.parse("1/min")
    ratelimit.reserve(ratelimit.channel_key(str(workspace.pk), "sms"), rate)
    Message.objects.filter(pk=message_id).update(rate_slot_at=None)
    assert deliver(message_id) == "deferred"
    Message.objects.filter(pk=message_id).update(rate_slot_at=None)
    assert deliver(message_id) == "deferred"
    settings_of(workspace, rate_limits={})
    Message.objects.filter(pk=message_id).update(rate_slot_at=None)
    stub_server.script(MESSAGES_PATH, Reply(503, {"message": "busy"}),
                       Reply(201, {"sid": "SM123", "status": "queued"}))
    assert deliver(message_id) == "retrying"
    assert deliver(message_id) == "sent"
    path = f"{STATUS_PATH}?message_id={message_id}"
    params = callback_params("SM123", "undelivered", ErrorCode="30003")
    answer = Client().post(path, data=urlencode(params),
                           content_type="application/x-www-form-urlencoded",
                           HTTP_X_TWILIO_SIGNATURE=twilio_signature(
                               AUTH_TOKEN, f"http://testserver{path}", params))
    assert answer.status_code == 204

    entries = timeline(api, message_id)

    assert [e["kind"] for e in entries] == ["accepted", "deferred", "rate_limited",
                                            "provider_call", "provider_call", "receipt"]
    accepted, deferred, limited, failed, sent, receipt = entries
    assert accepted["detail"] == {"source": "api", "status": "queued",
                                  "api_key": ApiKey.objects.get(workspace=workspace).prefix}
    assert deferred["detail"]["check"] == "quiet_hours"
    assert deferred["detail"]["until"] > deferred["at"]
    assert (limited["count"], limited["detail"]["rate"]) == (2, "1/60s")
    assert limited["last_at"] >= limited["at"]
    assert failed["detail"]["provider"] == "twilio"
    assert (failed["detail"]["status_code"], failed["detail"]["outcome"]) == (503, "retrying")
    assert failed["detail"]["latency_ms"] >= 0 and "error" in failed["detail"]
    assert (sent["detail"]["status_code"], sent["detail"]["outcome"]) == (201, "sent")
    assert sent["detail"]["attempt"] == failed["detail"]["attempt"] + 1
    assert receipt["detail"] == {"status": "undelivered", "source": "twilio",
                                 "reported": "undelivered", "error_code": "30003"}
    assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)


def test_the_accepted_entry_names_the_api_key_and_a_cancel_names_who(api, api_key, workspace):
    created = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                            "body": "x", "send_at": (
                                                timezone.now() + timedelta(hours=1)).isoformat()},
                       format="json").json()
    assert api.post(f"/api/v1/messages/{created['id']}/cancel").status_code == 200

    accepted, cancelled = timeline(api, created["id"])

    prefix = ApiKey.objects.get(workspace=workspace).prefix
    assert accepted["kind"] == "accepted"
    assert accepted["detail"]["api_key"] == prefix and prefix in api_key
    assert accepted["detail"]["status"] == "scheduled" and "send_at" in accepted["detail"]
    assert cancelled["kind"] == "cancelled"
    assert cancelled["detail"] == {"by": f"api:{prefix}", "from_status": "scheduled"}


def test_a_pause_hold_and_its_release_are_on_the_timeline(workspace, api):
    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "x"})
    pauses.queue_pause(queue="sms", workspace=workspace, actor=Actor(name="user:ops"))
    assert sending.messages_deliver(message_ids=[str(message.pk)])[str(message.pk)] == "paused"
    pauses.queue_resume(queue="sms", workspace=workspace, actor=Actor(name="user:ops"))

    kinds = [(e["kind"], e["detail"]) for e in timeline(api, str(message.pk))][1:]

    assert kinds == [("paused", {"reason": "paused: sms (workspace)", "paused_by": "user:ops"}),
                     ("released", {"due": kinds[1][1]["due"], "by": "user:ops"})]


def test_a_suppressed_message_says_why(workspace, api):
    contact = ContactFactory(workspace=workspace, phone="+14155550101", sms_subscribed=False)
    message = creation.message_create(workspace=workspace, channel="sms", to=contact.phone,
                                      contact=contact, content={"body": "x"})
    assert sending.messages_deliver(message_ids=[str(message.pk)])[str(message.pk)] == \
        "suppressed"

    last = timeline(api, str(message.pk))[-1]

    assert (last["kind"], last["detail"]["reason"]) == ("suppressed", "unsubscribed")


def test_an_event_raised_lists_its_deliveries(api, workspace, stub_server, settings):
    settings.SSRF_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings_of(workspace, providers={"sms": {"name": "http", "api_url": stub_server.url}})
    endpoint = api.post("/api/v1/webhook-endpoints", {"url": f"{stub_server.url}/hook",
                                                      "events": ["message.sent"]},
                        format="json")
    assert endpoint.status_code == 201, endpoint.json()
    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "x"})
    assert sending.messages_deliver(message_ids=[str(message.pk)])[str(message.pk)] == "sent"

    kinds = [e["kind"] for e in timeline(api, str(message.pk))]
    event = timeline(api, str(message.pk))[-1]

    assert kinds == ["accepted", "provider_call", "event"]
    assert event["detail"]["type"] == "message.sent"
    [delivery_id] = event["detail"]["deliveries"]
    delivery = Message.objects.get(pk=delivery_id)
    assert delivery.webhook_endpoint_id is not None
    assert timeline(api, delivery_id)[0]["detail"]["event"] == "message.sent"


def test_the_timeline_is_paginated_and_scoped_to_the_keys_workspace(api, other_api,
                                                                     workspace):
    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "x"})
    creation.message_cancel(message=message)

    page = api.get(f"/api/v1/messages/{message.pk}/timeline?page_size=1").json()

    assert (page["count"], len(page["results"])) == (2, 1) and page["next"]
    assert other_api.get(f"/api/v1/messages/{message.pk}/timeline").status_code == 404


def test_purging_a_message_purges_its_timeline(workspace):
    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "x"})
    creation.message_cancel(message=message)
    assert TimelineEntry.objects.filter(message=message).count() == 2
    Message.objects.filter(pk=message.pk).update(updated_at=timezone.now() - timedelta(days=40))

    deleted = history_purge(older_than=timedelta(days=30))

    assert deleted["messaging.TimelineEntry"] == 2
    assert not TimelineEntry.objects.exists()


def test_with_timelines_off_nothing_is_written(workspace, settings):
    settings.TIMELINE_ENABLED = False
    other = WorkspaceFactory()
    message = creation.message_create(workspace=other, channel="sms", to="+14155552671",
                                      content={"body": "x"})
    creation.message_cancel(message=message)

    assert not TimelineEntry.objects.exists()


def test_an_execution_cancel_says_on_its_messages_timeline_why_they_were_cancelled(
        workspace, api):
    from flows.models import Execution, Step
    from flows.operations import execution_cancel
    from tests.factories import ExecutionFactory, StepFactory

    execution = ExecutionFactory(workspace=workspace, status=Execution.Status.WAITING)
    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "x"}, source="flow")
    StepFactory(execution=execution, status=Step.Status.WAITING, message=message)

    execution_cancel(execution=execution, actor=Actor(name="user:ops", source="dashboard"))

    last = timeline(api, str(message.pk))[-1]
    assert last["kind"] == "cancelled"
    assert last["detail"]["reason"] == f"execution {execution.pk} cancelled by dashboard:ops"


def test_disabling_an_endpoint_cancels_its_pending_deliveries_on_their_timelines(
        api, workspace, settings):
    from messaging.events.endpoints import endpoint_disable
    from messaging.models import WebhookEndpoint

    settings.SSRF_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    endpoint = WebhookEndpoint.objects.create(workspace=workspace, url="http://127.0.0.1:9/h",
                                              events=["message.queued"])
    creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                            content={"body": "x"})
    delivery = Message.objects.get(webhook_endpoint=endpoint)

    endpoint_disable(endpoint=endpoint, reason="failing for 3 days")

    last = timeline(api, str(delivery.pk))[-1]
    assert (last["kind"], last["detail"]) == ("cancelled", {
        "reason": "endpoint disabled: failing for 3 days", "from_status": "queued"})


def test_a_frequency_cap_that_counts_a_message_and_then_defers_the_next_says_so(
        api, workspace, stub_server):
    from messaging.ratelimit import client as redis_client
    from messaging.recipients import caps

    for key in redis_client().scan_iter(match=f"{caps.KEY_PREFIX}{workspace.pk}*"):
        redis_client().delete(key)
    settings_of(workspace, providers={"sms": {"name": "http", "api_url": stub_server.url}},
                frequency_caps={"sms": "1/day"})
    contact = ContactFactory(workspace=workspace, phone="+14155550123")
    first, second = (creation.message_create(
        workspace=workspace, channel="sms", to=contact.phone, contact=contact,
        content={"body": "x"}, category="marketing") for _ in range(2))

    assert sending.messages_deliver(message_ids=[str(first.pk)])[str(first.pk)] == "sent"
    assert sending.messages_deliver(message_ids=[str(second.pk)])[str(second.pk)] == \
        "deferred"

    call = timeline(api, str(first.pk))[-1]
    held = timeline(api, str(second.pk))[-1]
    assert (call["kind"], call["detail"]["frequency_cap"]) == ("provider_call", "counted")
    assert (held["kind"], held["detail"]["check"]) == ("deferred", "frequency_cap")
