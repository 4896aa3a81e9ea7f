"""A recipient's page (README.md, "Recipients' rules"): everything sent to one address in a
time range, with its consent, suppressions and frequency-cap counts, in the API and the
dashboard."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest
from django.urls import reverse
from django.utils import timezone

from messaging.delivery import creation, sending
from messaging.models import Message, Suppression
from messaging.ratelimit import client as redis_client
from messaging.recipients import caps
from tests.factories import ContactFactory, MessageFactory, StaffUserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

PHONE = "+14155550142"


@pytest.fixture
def sent_to_phone(workspace, stub_server):
    """Two marketing SMS sent through the pipeline (each counted by a 3/day cap), one
    suppressed by the contact's consent, one older than the range, and another address's."""
    for key in redis_client().scan_iter(match=f"{caps.KEY_PREFIX}{workspace.pk}*"):
        redis_client().delete(key)
    workspace.settings = {**workspace.settings, "frequency_caps": {"sms": "3/day"},
                          "providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    contact = ContactFactory(workspace=workspace, phone=PHONE, external_id="crm-42")
    sent = [creation.message_create(workspace=workspace, channel="sms", to=PHONE,
                                    contact=contact, content={"body": f"offer {n}"},
                                    category="marketing") for n in range(2)]
    assert set(sending.messages_deliver(message_ids=[str(m.pk) for m in sent]).values()) == {
        "sent"}
    contact.sms_subscribed = False
    contact.save()
    refused = creation.message_create(workspace=workspace, channel="sms", to=PHONE,
                                      contact=contact, content={"body": "offer 3"},
                                      category="marketing")
    assert sending.messages_deliver(message_ids=[str(refused.pk)])[str(refused.pk)] == \
        "suppressed"
    old = MessageFactory(workspace=workspace, channel="sms", to=PHONE, status="sent")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    MessageFactory(workspace=workspace, channel="sms", to="+14155550999", status="sent")
    Suppression.objects.create(workspace=workspace, channel="sms", address=PHONE,
                               reason=Suppression.Reason.STOP, source="keyword")
    return contact


def test_the_recipient_page_shows_the_range_consent_suppressions_and_cap_counts(
        api, workspace, sent_to_phone):
    # However the number is written: "+1 (415) 555-0142" finds +14155550142.
    response = api.get(f"/api/v1/recipients/{quote('+1 (415) 555-0142', safe='')}")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["address"], body["list"]) == (PHONE, "sms")
    assert body["messages"] == {"total": 3, "by_status": {"sent": 2, "suppressed": 1},
                                "by_channel": {"sms": 3}}
    assert [m["status"] for m in body["recent_messages"]] == ["suppressed", "sent", "sent"]
    assert body["recent_messages"][0]["suppressed_reason"] == "unsubscribed"
    assert body["consent"] == [{"contact_id": str(sent_to_phone.pk),
                                "external_id": "crm-42", "subscribed": False}]
    assert [(s["reason"], s["source"]) for s in body["suppressions"]] == [("stop", "keyword")]
    assert body["caps"] == [
        {"list": "sms", "cap": "3/day", "limit": 3, "period_seconds": 86400, "counted": 2,
         "contact_id": str(sent_to_phone.pk)},
        {"list": "sms", "cap": "3/day", "limit": 3, "period_seconds": 86400, "counted": 0,
         "contact_id": None}]


def test_a_range_takes_in_older_messages(api, workspace, sent_to_phone):
    since = (timezone.now() - timedelta(days=60)).isoformat()
    response = api.get(f"/api/v1/recipients/{quote(PHONE)}", {"since": since})

    assert response.json()["messages"]["total"] == 4


def test_bad_input_names_the_field(api, workspace):
    response = api.get("/api/v1/recipients/not-a-number")
    assert response.status_code == 400 and "address" in response.json()["error"]["fields"]
    response = api.get(f"/api/v1/recipients/{quote(PHONE)}", {"since": "yesterday"})
    assert response.status_code == 400 and "since" in response.json()["error"]["fields"]
    later = timezone.now().isoformat()
    response = api.get(f"/api/v1/recipients/{quote(PHONE)}",
                       {"since": later, "until": (timezone.now() - timedelta(days=1)).isoformat()})
    assert response.status_code == 400 and "since" in response.json()["error"]["fields"]


def test_another_workspace_sees_nothing_of_the_address(other_api, sent_to_phone):
    body = other_api.get(f"/api/v1/recipients/{quote(PHONE)}").json()

    assert body["messages"]["total"] == 0
    assert body["consent"] == [] and body["suppressions"] == [] and body["caps"] == []


def test_the_dashboard_recipient_page_shows_the_same(client, workspace, sent_to_phone):
    client.force_login(StaffUserFactory())

    response = client.get(reverse("dashboard:recipient"), {
        "workspace": str(workspace.pk), "address": "+1 (415) 555-0142"})

    assert response.status_code == 200
    html = response.content.decode()
    assert PHONE in html
    assert html.count('data-message="') == 3
    assert "unsubscribed" in html and "stop" in html
    assert "2 of 3/day" in html
