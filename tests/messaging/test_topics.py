"""Subscription topics: the topics API, a contact's preferences, messages naming a topic and
the pre-send policy suppressing them, and the signed preference page (README.md,
"Subscription topics")."""
from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from messaging.models import Message, Topic, TopicPreference
from messaging.recipients import policy, preferences
from tests.factories import ContactFactory, WorkspaceFactory
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def http_providers(workspace, stub_server) -> None:
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url},
                                        "email": {"name": "http",
                                                  "api_url": stub_server.url}}}
    workspace.save()


def topic(workspace, key, **extra) -> Topic:
    return Topic.objects.create(workspace=workspace, key=key, name=key.title(), **extra)


# --- the topics API -------------------------------------------------------------------------

def test_topics_crud_is_scoped_to_the_workspace(api, other_api):
    created = api.post("/api/v1/topics", {"key": "promotions", "name": "Promotions",
                                          "default_opt_in": False}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["key"], body["default_opt_in"], body["critical"]) == (
        "promotions", False, False)
    api.post("/api/v1/topics", {"key": "receipts", "name": "Receipts", "critical": True},
             format="json")

    listed = api.get("/api/v1/topics?critical=true").json()
    assert [t["key"] for t in listed["results"]] == ["receipts"]
    assert other_api.get(f"/api/v1/topics/{body['id']}").status_code == 404
    assert other_api.get("/api/v1/topics").json()["results"] == []

    patched = api.patch(f"/api/v1/topics/{body['id']}", {"name": "Offers"}, format="json")
    assert patched.status_code == 200 and patched.json()["name"] == "Offers"
    assert api.put(f"/api/v1/topics/{body['id']}", {"key": "x", "name": "X"},
                   format="json").status_code == 405
    assert api.delete(f"/api/v1/topics/{body['id']}").status_code == 204
    assert [t["key"] for t in api.get("/api/v1/topics").json()["results"]] == ["receipts"]


def test_a_topic_key_is_unique_and_a_slug(api):
    api.post("/api/v1/topics", {"key": "news", "name": "News"}, format="json")
    again = api.post("/api/v1/topics", {"key": "news", "name": "More"}, format="json")
    assert again.status_code == 400 and "key" in again.json()["error"]["fields"]
    bad = api.post("/api/v1/topics", {"key": "no spaces", "name": "X"}, format="json")
    assert bad.status_code == 400 and "key" in bad.json()["error"]["fields"]
    assert Topic.objects.count() == 1
    # Another workspace may use the same key.
    assert Topic.objects.create(workspace=WorkspaceFactory(), key="news", name="N").pk


# --- preferences by API ---------------------------------------------------------------------

def test_preferences_show_defaults_and_keep_what_is_set(api, workspace):
    topic(workspace, "promotions", default_opt_in=False)
    topic(workspace, "receipts", critical=True, default_opt_in=False)
    contact = ContactFactory(workspace=workspace)
    url = f"/api/v1/contacts/{contact.id}/preferences"

    shown = api.get(url).json()["preferences"]
    assert shown == [
        {"topic": "promotions", "channel": "sms", "opted_in": False},
        {"topic": "promotions", "channel": "email", "opted_in": False},
        {"topic": "receipts", "channel": "sms", "opted_in": True},
        {"topic": "receipts", "channel": "email", "opted_in": True},
    ]
    put = api.put(url, {"preferences": [
        {"topic": "promotions", "channel": "email", "opted_in": True}]}, format="json")
    assert put.status_code == 200, put.json()
    assert {(p["topic"], p["channel"]): p["opted_in"] for p in put.json()["preferences"]}[
        ("promotions", "email")] is True
    assert api.put(url, {"preferences": [
        {"topic": "promotions", "channel": "sms", "opted_in": False}]},
        format="json").status_code == 200
    assert TopicPreference.objects.filter(contact=contact).count() == 2
    assert {(p["topic"], p["channel"]): p["opted_in"]
            for p in api.get(url).json()["preferences"]}[("promotions", "email")] is True


def test_bad_preferences_answer_400_naming_the_field_and_change_nothing(api, workspace,
                                                                       other_api):
    topic(workspace, "promotions")
    topic(workspace, "receipts", critical=True)
    topic(WorkspaceFactory(), "elsewhere")
    contact = ContactFactory(workspace=workspace)
    url = f"/api/v1/contacts/{contact.id}/preferences"

    answer = api.put(url, {"preferences": [
        {"topic": "promotions", "channel": "email", "opted_in": False},
        {"topic": "elsewhere", "channel": "email", "opted_in": False},
        {"topic": "receipts", "channel": "sms", "opted_in": False}]}, format="json")
    assert answer.status_code == 400
    fields = answer.json()["error"]["fields"]["preferences"]
    assert list(fields) == ["1", "2"]
    assert list(fields["1"]) == ["topic"]
    assert list(fields["2"]) == ["opted_in"] and "critical" in fields["2"]["opted_in"][0]
    assert not TopicPreference.objects.exists()

    bad_channel = api.put(url, {"preferences": [
        {"topic": "promotions", "channel": "mms", "opted_in": True}]}, format="json")
    assert bad_channel.status_code == 400
    assert list(bad_channel.json()["error"]["fields"]["preferences"]["0"]) == ["channel"]
    assert api.put(url, {"preferences": "no"}, format="json").status_code == 400
    assert other_api.get(url).status_code == 404


# --- messages naming a topic, and the policy ------------------------------------------------

def test_a_message_names_its_topic_and_an_unknown_one_is_refused(api, workspace):
    topic(workspace, "reminders")
    topic(WorkspaceFactory(), "promotions")
    contact = ContactFactory(workspace=workspace)
    sent = api.post("/api/v1/messages", {"channel": "sms", "body": "Hi", "topic": "reminders",
                                         "contact_id": str(contact.id)}, format="json")
    assert sent.status_code == 201 and sent.json()["topic"] == "reminders"
    assert api.get(f"/api/v1/messages/{sent.json()['id']}").json()["topic"] == "reminders"
    assert [m["id"] for m in api.get("/api/v1/messages?topic=reminders").json()["results"]] \
        == [sent.json()["id"]]
    assert api.get("/api/v1/messages?topic=promotions").json()["results"] == []

    refused = api.post("/api/v1/messages", {"channel": "sms", "body": "Hi",
                                            "topic": "promotions",
                                            "contact_id": str(contact.id)}, format="json")
    assert refused.status_code == 400
    assert list(refused.json()["error"]["fields"]) == ["topic"]
    batch = api.post("/api/v1/messages/batch", {"messages": [
        {"channel": "sms", "body": "Hi", "topic": "reminders", "contact_id": str(contact.id)},
        {"channel": "sms", "body": "Hi", "topic": "nope", "contact_id": str(contact.id)}]},
        format="json")
    assert batch.status_code == 400
    assert Message.objects.count() == 1


def test_the_policy_suppresses_what_the_contact_opted_out_of(api, workspace, stub_server,
                                                            live_worker):
    http_providers(workspace, stub_server)
    topic(workspace, "promotions")
    topic(workspace, "tips", default_opt_in=False)
    topic(workspace, "security", critical=True, default_opt_in=False)
    out = ContactFactory(workspace=workspace, phone="+14155550111", email="out@example.com")
    keen = ContactFactory(workspace=workspace, phone="+14155550112", email="in@example.com")
    prefs = f"/api/v1/contacts/{out.id}/preferences"
    assert api.put(prefs, {"preferences": [
        {"topic": "promotions", "channel": "sms", "opted_in": False}]},
        format="json").status_code == 200
    assert api.put(f"/api/v1/contacts/{keen.id}/preferences", {"preferences": [
        {"topic": "tips", "channel": "sms", "opted_in": True}]},
        format="json").status_code == 200

    def post(contact, topic_key, channel="sms"):
        content = {"body": "Hi"} if channel == "sms" else {"subject": "Hi", "text": "Hi"}
        answer = api.post("/api/v1/messages", {"channel": channel, "topic": topic_key,
                                               "contact_id": str(contact.id), **content},
                          format="json")
        assert answer.status_code == 201, answer.json()
        return answer.json()["id"]

    expected = {
        post(out, "promotions"): ("suppressed", "preference"),  # opted out on sms
        post(out, "promotions", "email"): ("sent", None),  # only sms was turned off
        post(keen, "promotions"): ("sent", None),  # the default is in
        post(out, "tips"): ("suppressed", "preference"),  # the default is out
        post(keen, "tips"): ("sent", None),  # opted in
        post(out, "security"): ("sent", None),  # critical: always passes
    }

    def final(message_id):
        message = Message.objects.get(pk=message_id)
        return message.status if message.status in ("sent", "suppressed") else None

    wait_until(lambda: all(final(mid) for mid in expected))
    for message_id, (status, reason) in expected.items():
        detail = api.get(f"/api/v1/messages/{message_id}").json()
        assert (detail["status"], detail["suppressed_reason"]) == (status, reason), detail
    suppressed = next(mid for mid, (s, _) in expected.items() if s == "suppressed")
    timeline = api.get(f"/api/v1/messages/{suppressed}/timeline").json()
    entries = timeline["results"] if isinstance(timeline, dict) else timeline
    assert any(e["kind"] == "suppressed" and e["detail"].get("reason") == "preference"
               for e in entries)


def test_the_preference_check_is_one_query_for_a_batch(workspace):
    promotions = topic(workspace, "promotions")
    contacts = [ContactFactory(workspace=workspace, phone=f"+1415555{n:04d}")
                for n in range(20)]
    for contact in contacts[::2]:
        TopicPreference.objects.create(contact=contact, topic=promotions, channel="sms",
                                       opted_in=False)
    messages = [Message.objects.create(workspace=workspace, contact=c, channel="sms",
                                       to=c.phone, topic=promotions, content={"body": "x"})
                for c in contacts]
    messages = list(Message.objects.select_related("workspace", "contact")
                    .filter(pk__in=[m.pk for m in messages]))

    with CaptureQueriesContext(connection) as queries:
        refused = preferences.refused_by_preference(messages)
    assert len(queries) == 1
    assert refused == {m.pk for m in messages if m.contact in contacts[::2]}
    decisions = policy.decide_all(messages, count=False)
    assert {pk for pk, d in decisions.items() if d.reason == "preference"} == refused


# --- the hosted preference page -------------------------------------------------------------

def test_the_preference_page_saves_the_boxes_and_refuses_a_changed_token(workspace,
                                                                        settings):
    settings.PUBLIC_BASE_URL = "https://relay.test"
    promotions = topic(workspace, "promotions")
    topic(workspace, "security", critical=True)
    contact = ContactFactory(workspace=workspace, email="pat@example.com")
    message = Message.objects.create(workspace=workspace, contact=contact, channel="email",
                                     to=contact.email, content={"subject": "s", "text": "t"})
    url = preferences.preferences_url(message)
    assert url.startswith("https://relay.test/p/")
    path = url.removeprefix("https://relay.test")
    browser = Client(enforce_csrf_checks=True)

    page = browser.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="promotions.email"' in html and "checked" in html
    assert re.search(r'name="security\.sms"[^>]*checked[^>]*disabled', html)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    saved = browser.post(path, {"csrfmiddlewaretoken": token, "promotions.sms": "on",
                                "security.sms": ""})
    assert saved.status_code == 200 and "saved" in saved.content.decode()
    chosen = {(p.topic.key, p.channel): p.opted_in
              for p in TopicPreference.objects.filter(contact=contact)}
    assert chosen == {("promotions", "sms"): True, ("promotions", "email"): False}
    assert promotions.preferences.count() == 2

    assert browser.post(path, {"promotions.sms": "on"}).status_code == 403  # no CSRF token
    tampered = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    assert browser.get(tampered).status_code == 400
    unsubscribe_path = path.replace("/p/", "/u/")  # the unsubscribe token is another salt
    assert Client().get(unsubscribe_path).status_code == 400


def test_emails_can_link_to_the_preference_page(api, workspace, stub_server, live_worker,
                                                settings):
    settings.PUBLIC_BASE_URL = "https://relay.test"
    http_providers(workspace, stub_server)
    contact = ContactFactory(workspace=workspace, email="lee@example.com")
    answer = api.post("/api/v1/messages", {
        "channel": "email", "contact_id": str(contact.id), "subject": "News",
        "text": "Choose: {{ preferences_url }}"}, format="json")
    assert answer.status_code == 201, answer.json()
    wait_until(lambda: Message.objects.get(pk=answer.json()["id"]).status == "sent")
    text = Message.objects.get(pk=answer.json()["id"]).rendered["text"]
    link = text.removeprefix("Choose: ")
    assert link.startswith("https://relay.test/p/")
    assert preferences.contact_of(link.rsplit("/", 1)[1]) == contact


def test_a_broadcast_names_a_topic_in_its_content(api, workspace):
    from audiences import broadcasts
    from audiences.models import Broadcast, BroadcastRecipient

    topic(workspace, "promotions")
    topic(WorkspaceFactory(), "elsewhere")
    contact = ContactFactory(workspace=workspace, phone="+14155550131")
    refused = api.post("/api/v1/broadcasts", {
        "name": "Sale", "channel": "sms", "contact_ids": [str(contact.pk)],
        "content": {"body": "Hi", "topic": "elsewhere"}}, format="json")
    assert refused.status_code == 400
    assert list(refused.json()["error"]["fields"]["content"]) == ["topic"]

    made = api.post("/api/v1/broadcasts", {
        "name": "Sale", "channel": "sms", "contact_ids": [str(contact.pk)],
        "content": {"body": "Hi", "topic": "promotions"}}, format="json")
    assert made.status_code == 201, made.json()
    while broadcasts.broadcast_run_batch(broadcast=Broadcast.objects.get(pk=made.json()["id"])):
        pass  # the task's loop, in the test's process
    [row] = BroadcastRecipient.objects.filter(broadcast_id=made.json()["id"])
    assert row.message.topic.key == "promotions"
