"""The pre-send policy on the real pipeline: consent, the suppression list, quiet hours and
frequency caps, decided when a message is claimed (README.md, "Recipients' rules")."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.utils import timezone

from core.models import DeadLetter
from messaging.delivery import creation, sending
from messaging.models import DeliveryAttempt, Message, Suppression
from messaging.ratelimit import client as redis_client
from messaging.recipients import caps, policy
from tests.factories import ContactFactory, WorkspaceFactory
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _clean_caps() -> None:
    """Each test starts with no counted messages (cap keys are per workspace anyway)."""
    for key in redis_client().scan_iter(match=f"{caps.KEY_PREFIX}*"):
        redis_client().delete(key)


def http_sms(workspace, stub_server, **extra) -> None:
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url},
                                        "email": {"name": "http",
                                                  "api_url": stub_server.url}}, **extra}
    workspace.save()


def create(workspace, contact=None, *, channel="sms", category=None, to=None, source="api",
           content=None):
    to = to or (contact.email if channel == "email" else contact.phone)
    content = content or ({"subject": "Hi", "text": "Hello"} if channel == "email"
                          else {"body": "Hello"})
    return creation.message_create(workspace=workspace, channel=channel, to=to,
                                   contact=contact, content=content, source=source,
                                   category=category)


def deliver(*messages) -> dict[str, str]:
    return sending.messages_deliver(message_ids=[str(m.pk) for m in messages])


def reloaded(message) -> Message:
    return Message.objects.get(pk=message.pk)


# --- consent and the list -------------------------------------------------------------------

def test_an_sms_to_an_unsubscribed_contact_is_suppressed_with_no_attempt_and_no_call(
        api, workspace, stub_server, live_worker):
    http_sms(workspace, stub_server)
    unsubscribed = ContactFactory(workspace=workspace, phone="+14155550101",
                                  sms_subscribed=False)
    subscribed = ContactFactory(workspace=workspace, phone="+14155550102")
    refused = api.post("/api/v1/messages", {"channel": "sms", "body": "Hi",
                                            "contact_id": str(unsubscribed.id)}, format="json")
    sent = api.post("/api/v1/messages", {"channel": "sms", "body": "Hi",
                                         "contact_id": str(subscribed.id)}, format="json")
    assert refused.json()["category"] == "transactional"

    wait_until(lambda: Message.objects.get(pk=sent.json()["id"]).status == "sent")
    wait_until(lambda: Message.objects.get(pk=refused.json()["id"]).status == "suppressed")
    detail = api.get(f"/api/v1/messages/{refused.json()['id']}").json()
    assert detail["suppressed_reason"] == "unsubscribed"
    assert detail["attempts"] == 0 and detail["attempts_log"] == []
    assert [r.json()["to"] for r in stub_server.requests] == ["+14155550102"]
    assert not DeadLetter.objects.exists()
    listed = api.get("/api/v1/messages?status=suppressed").json()["results"]
    assert [m["id"] for m in listed] == [refused.json()["id"]]


def test_a_suppression_added_after_the_message_was_accepted_still_counts(
        workspace, stub_server):
    http_sms(workspace, stub_server)
    contact = ContactFactory(workspace=workspace, phone="+14155550103")
    message = create(workspace, contact, category="transactional")
    Suppression.objects.create(workspace=workspace, channel="sms", address=contact.phone,
                               reason="stop")

    assert deliver(message) == {str(message.pk): "suppressed"}
    assert (reloaded(message).status, reloaded(message).suppressed_reason) == (
        "suppressed", "suppressed_address")
    assert stub_server.requests == []
    assert not DeliveryAttempt.objects.filter(message=message).exists()


def test_another_workspaces_list_does_not_stop_this_workspace(workspace, stub_server):
    http_sms(workspace, stub_server)
    contact = ContactFactory(workspace=workspace, phone="+14155550104")
    Suppression.objects.create(workspace=WorkspaceFactory(), channel="sms",
                               address=contact.phone, reason="stop")
    message = create(workspace, contact)

    assert deliver(message) == {str(message.pk): "sent"}


def test_email_consent_stops_marketing_and_bounces_stop_everything(workspace, stub_server):
    http_sms(workspace, stub_server)
    unsubscribed = ContactFactory(workspace=workspace, email="ann@example.com",
                                  email_subscribed=False)
    bounced = ContactFactory(workspace=workspace, email="bob@example.com")
    listed = ContactFactory(workspace=workspace, email="cy@example.com")
    Suppression.objects.create(workspace=workspace, channel="email", address=bounced.email,
                               reason="bounced")
    Suppression.objects.create(workspace=workspace, channel="email", address=listed.email,
                               reason="unsubscribed")
    cases = {
        "marketing to unsubscribed": (unsubscribed, "marketing", "suppressed", "unsubscribed"),
        "receipt to unsubscribed": (unsubscribed, "transactional", "sent", ""),
        "receipt to bounced": (bounced, "transactional", "suppressed", "bounced"),
        "marketing to list-unsubscribed": (listed, "marketing", "suppressed", "unsubscribed"),
        "receipt to list-unsubscribed": (listed, "transactional", "sent", ""),
    }
    messages = {name: create(workspace, contact, channel="email", category=category)
                for name, (contact, category, _, _) in cases.items()}
    deliver(*messages.values())

    for name, (_, _, status, reason) in cases.items():
        message = reloaded(messages[name])
        assert (message.status, message.suppressed_reason) == (status, reason), name


def test_webhooks_and_operator_alerts_skip_the_policy(workspace, stub_server):
    http_sms(workspace, stub_server)
    contact = ContactFactory(workspace=workspace, phone="+14155550105", sms_subscribed=False)
    alert = create(workspace, contact, source="alert")
    decision = policy.decide(alert, listed={}, now=timezone.now())
    assert decision == policy.ALLOW
    assert deliver(alert) == {str(alert.pk): "sent"}
    # A marketing webhook about the same unsubscribed contact inside quiet hours is
    # allowed; a marketing SMS at that moment to a subscribed contact is deferred.
    workspace.timezone = "UTC"
    workspace.settings = {**workspace.settings,
                          "quiet_hours": {"start": "21:00", "end": "08:00"}}
    late = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    hook = Message(workspace=workspace, contact=contact, channel="webhook",
                   to="https://hooks.example.com/relay", category="marketing")
    assert policy.decide(hook, listed={}, now=late) == policy.ALLOW
    subscribed = ContactFactory(workspace=workspace, phone="+14155550115", timezone="")
    texted = Message(workspace=workspace, contact=subscribed, channel="sms",
                     to=subscribed.phone, category="marketing")
    assert policy.decide(texted, listed={}, now=late).outcome == "deferred"


# --- categories -----------------------------------------------------------------------------

def test_the_category_defaults_by_source_and_a_sender_may_name_it(api, workspace):
    contact = ContactFactory(workspace=workspace, phone="+14155550106")
    default = api.post("/api/v1/messages", {"channel": "sms", "body": "Hi",
                                            "contact_id": str(contact.id)}, format="json")
    marketing = api.post("/api/v1/messages", {"channel": "sms", "body": "Hi",
                                              "category": "marketing",
                                              "contact_id": str(contact.id)}, format="json")
    wrong = api.post("/api/v1/messages", {"channel": "sms", "body": "Hi", "category": "promo",
                                          "contact_id": str(contact.id)}, format="json")

    assert default.json()["category"] == "transactional"
    assert marketing.json()["category"] == "marketing"
    assert wrong.status_code == 400 and "category" in wrong.json()["error"]["fields"]
    filtered = api.get("/api/v1/messages?category=marketing").json()["results"]
    assert [m["id"] for m in filtered] == [marketing.json()["id"]]
    assert create(workspace, contact, source="flow").category == "marketing"


# --- quiet hours ----------------------------------------------------------------------------

def test_quiet_hours_defer_marketing_sms_to_the_window_end_in_the_contacts_zone(
        workspace, stub_server, settings):
    settings.QUIET_HOURS_JITTER_SECONDS = 60
    zone = ZoneInfo("America/New_York")
    local_now = timezone.now().astimezone(zone)
    # A window that holds the present local time and ends two hours from now.
    start = (local_now - timedelta(hours=1)).strftime("%H:%M")
    end = (local_now + timedelta(hours=2)).strftime("%H:%M")
    http_sms(workspace, stub_server, quiet_hours={"start": start, "end": end})
    contact = ContactFactory(workspace=workspace, phone="+14155550107",
                             timezone="America/New_York")
    marketing = create(workspace, contact, category="marketing")
    receipt = create(workspace, contact, category="transactional")

    outcomes = deliver(marketing, receipt)

    assert outcomes == {str(marketing.pk): "deferred", str(receipt.pk): "sent"}
    held = reloaded(marketing)
    assert (held.status, held.attempts) == ("scheduled", 0)
    window_end = datetime.combine((local_now + timedelta(hours=2)).date(),
                                  datetime.strptime(end, "%H:%M").time(), tzinfo=zone)
    assert window_end <= held.due_at <= window_end + timedelta(seconds=60)


def test_quiet_hours_follow_the_workspace_zone_when_the_contact_has_none(workspace):
    workspace.timezone = "Asia/Tokyo"
    workspace.settings = {"quiet_hours": {"start": "21:00", "end": "08:00"}}
    contact = ContactFactory(workspace=workspace, phone="+14155550108", timezone="")
    message = Message(workspace=workspace, contact=contact, channel="sms", to=contact.phone,
                      category="marketing")
    # 23:30 in Tokyo is 14:30 UTC: inside the window, which ends at 08:00 Tokyo (23:00 UTC).
    late = datetime(2026, 3, 1, 14, 30, tzinfo=UTC)
    decision = policy.decide(message, listed={}, now=late)
    assert decision.outcome == "deferred"
    assert datetime(2026, 3, 1, 23, 0, tzinfo=UTC) <= decision.until <= datetime(
        2026, 3, 1, 23, 5, tzinfo=UTC)
    # 09:00 Tokyo is outside.
    assert policy.decide(message, listed={}, now=datetime(2026, 3, 1, 0, 0, tzinfo=UTC)) \
        == policy.ALLOW


def test_the_jitter_spreads_a_list_and_is_stable_per_message(workspace, settings):
    settings.QUIET_HOURS_JITTER_SECONDS = 300
    contact = ContactFactory(workspace=workspace, phone="+14155550109")
    messages = [Message(workspace=workspace, contact=contact) for _ in range(50)]
    offsets = [policy.jitter_seconds(m) for m in messages]
    assert all(0 <= offset < 300 for offset in offsets)
    assert len({round(offset) for offset in offsets}) > 25
    assert offsets == [policy.jitter_seconds(m) for m in messages]


# --- frequency caps -------------------------------------------------------------------------

def test_a_cap_defers_what_is_over_it_until_the_window_allows(workspace, stub_server):
    http_sms(workspace, stub_server, frequency_caps={"sms": "2/day"})
    contact = ContactFactory(workspace=workspace, phone="+14155550110")
    first, second, third = (create(workspace, contact, category="marketing")
                            for _ in range(3))
    receipt = create(workspace, contact, category="transactional")

    assert [deliver(m)[str(m.pk)] for m in (first, second, third, receipt)] == [
        "sent", "sent", "deferred", "sent"]
    held = reloaded(third)
    assert held.status == "scheduled" and held.attempts == 0
    assert timezone.now() + timedelta(hours=23) < held.due_at <= \
        timezone.now() + timedelta(days=1)


def test_a_cap_suppresses_when_the_workspace_says_so(workspace, stub_server):
    http_sms(workspace, stub_server, frequency_caps={"sms": "1/day"},
             frequency_cap_action="suppress")
    contact = ContactFactory(workspace=workspace, phone="+14155550111")
    first, second = (create(workspace, contact, category="marketing") for _ in range(2))

    assert (deliver(first), deliver(second)) == ({str(first.pk): "sent"},
                                                 {str(second.pk): "suppressed"})
    assert reloaded(second).suppressed_reason == "frequency_cap"


def test_a_message_counted_once_is_not_counted_again_when_it_comes_back(workspace):
    cap = caps.Cap.parse("2/day")
    key = caps.cap_key(str(workspace.pk), "sms", "someone")
    assert caps.take(key, cap, member="a") == 0
    assert caps.take(key, cap, member="a") == 0  # deferred by the rate limit, then back
    assert caps.take(key, cap, member="b") == 0
    assert caps.take(key, cap, member="c") > 0
    assert caps.peek(key, cap) > 0


def test_two_workers_sending_to_one_contact_at_once_respect_one_cap(workspace, stub_server):
    http_sms(workspace, stub_server, frequency_caps={"sms": "1/day"})
    contact = ContactFactory(workspace=workspace, phone="+14155550112")
    messages = [create(workspace, contact, category="marketing") for _ in range(8)]
    start = threading.Barrier(len(messages))
    outcomes: dict[str, str] = {}

    def worker(message) -> None:
        try:
            start.wait()
            outcomes.update(deliver(message))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(m,)) for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes.values()) == ["deferred"] * 7 + ["sent"]
    assert len(stub_server.requests) == 1


def test_caps_through_the_live_worker_send_one_and_hold_the_rest(
        workspace, stub_server, live_worker):
    http_sms(workspace, stub_server, frequency_caps={"sms": "1/day"})
    contact = ContactFactory(workspace=workspace, phone="+14155550113")
    messages = [create(workspace, contact, category="marketing") for _ in range(6)]

    wait_until(lambda: Message.objects.filter(pk__in=[m.pk for m in messages])
               .exclude(status__in=["queued", "sending"]).count() == 6)
    statuses = sorted(reloaded(m).status for m in messages)
    assert statuses == ["scheduled"] * 5 + ["sent"]
    assert len(stub_server.requests) == 1


@pytest.mark.parametrize("text", ["", "3", "3/fortnight", "0/day", "x/day", "3/0h"])
def test_bad_caps_are_refused(text):
    with pytest.raises(ValueError):
        caps.Cap.parse(text)


def test_caps_parse_their_units():
    assert caps.Cap.parse("3/day") == caps.Cap(3, 86400)
    assert caps.Cap.parse("10/week") == caps.Cap(10, 604800)
    assert caps.Cap.parse("2/12h") == caps.Cap(2, 43200)
