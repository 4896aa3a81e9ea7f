"""A flow's dry run says what the recipients' rules would decide about each send, and
consumes nothing (caps are read from the real Redis, not counted)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from messaging import ratelimit
from messaging.models import Message
from messaging.recipients import caps
from messaging.recipients.suppressions import suppression_add
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

PHONE = "+14155550100"


def flow_sending(api, **data) -> str:
    response = api.post("/api/v1/flows", {
        "name": "promo", "trigger": {"type": "manual"},
        "nodes": [{"id": "s", "type": "send_sms", "data": {"body": "Sale!", **data}}],
        "edges": []}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def dry_run(api, flow_id: str, **body) -> dict:
    response = api.post(f"/api/v1/flows/{flow_id}/test", body, format="json")
    assert response.status_code == 200, response.json()
    (message,) = response.json()["messages"]
    return message


def settle(workspace, **settings) -> None:
    workspace.settings = settings
    workspace.save()


def test_an_unsubscribed_contact_shows_suppressed(api, workspace):
    flow = flow_sending(api)
    contact = ContactFactory(workspace=workspace, phone=PHONE, sms_subscribed=False)
    assert dry_run(api, flow, contact_id=str(contact.id))["policy"] == {
        "outcome": "suppressed", "reason": "unsubscribed", "until": None}
    # A sample given as a dict counts its consent flags too.
    assert dry_run(api, flow, contact={"phone": PHONE, "sms_subscribed": False})["policy"][
        "reason"] == "unsubscribed"
    assert Message.objects.count() == 0


def test_a_suppressed_address_shows_suppressed(api, workspace):
    flow = flow_sending(api)
    suppression_add(workspace=workspace, channel="sms", address=PHONE, reason="manual")
    assert dry_run(api, flow, contact={"phone": PHONE})["policy"] == {
        "outcome": "suppressed", "reason": "suppressed_address", "until": None}


def test_quiet_hours_now_show_deferred_until_the_window_ends(api, workspace):
    now = timezone.now().astimezone(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    settle(workspace, quiet_hours={"start": start.strftime("%H:%M"),
                                   "end": end.strftime("%H:%M")})
    flow = flow_sending(api)
    policy = dry_run(api, flow, contact={"phone": PHONE})["policy"]
    assert policy["outcome"] == "deferred" and policy["reason"] == "quiet_hours"
    until = datetime.fromisoformat(policy["until"])
    window_end = end.replace(second=0, microsecond=0)
    assert window_end <= until <= window_end + timedelta(minutes=5)
    # A transactional send ignores quiet hours.
    transactional = flow_sending(api, category="transactional")
    assert dry_run(api, transactional, contact={"phone": PHONE})["policy"]["outcome"] == \
        "allowed"


def test_under_the_cap_shows_allowed_and_counts_nothing(api, workspace):
    settle(workspace, frequency_caps={"sms": "2/day"})
    flow = flow_sending(api)
    contact = ContactFactory(workspace=workspace, phone=PHONE)
    key = caps.cap_key(str(workspace.id), "sms", str(contact.id))
    redis = ratelimit.client()
    redis.delete(key)
    caps.take(key, caps.Cap.parse("2/day"), member="sent-earlier")
    for _ in range(3):
        assert dry_run(api, flow, contact_id=str(contact.id))["policy"] == {
            "outcome": "allowed", "reason": None, "until": None}
    assert redis.zrange(key, 0, -1) == ["sent-earlier"]
    # At the cap, the dry run shows the deferral (still without counting).
    caps.take(key, caps.Cap.parse("2/day"), member="sent-later")
    policy = dry_run(api, flow, contact_id=str(contact.id))["policy"]
    assert (policy["outcome"], policy["reason"]) == ("deferred", "frequency_cap")
    assert datetime.fromisoformat(policy["until"]) > timezone.now() + timedelta(hours=23)
    assert redis.zcard(key) == 2
    redis.delete(key)


def test_a_send_the_composer_would_refuse_has_no_policy_but_its_errors(api):
    flow = flow_sending(api)
    message = dry_run(api, flow, contact={"first_name": "No phone"})
    assert message["policy"] is None and "to" in message["errors"]
