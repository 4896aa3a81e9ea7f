from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audiences import broadcasts
from audiences.models import Broadcast, BroadcastRecipient
from messaging.models import Message, WebhookEndpoint
from tests.factories import ContactFactory
from tests.support.waiting import wait_until

URL = "/api/v1/broadcasts"


def post(api, **body):
    base = {"name": "Spring sale", "channel": "sms",
            "content": {"body": "Hi {{ contact.first_name }}"}}
    return api.post(URL, {**base, **body}, format="json")


def make_all(broadcast_id: str) -> Broadcast:
    """Make every batch's messages in the test's process (the task's loop, no broker)."""
    while broadcasts.broadcast_run_batch(broadcast=Broadcast.objects.get(pk=broadcast_id)):
        pass
    return Broadcast.objects.get(pk=broadcast_id)


def messages_of(broadcast_id: str) -> list[Message]:
    return [r.message for r in BroadcastRecipient.objects.filter(broadcast_id=broadcast_id)
            .select_related("message").order_by("position")]


@pytest.mark.django_db(transaction=True)
def test_a_broadcast_sends_once_per_contact_through_the_pipeline_and_completes(
        api, workspace, live_worker, dispatcher):
    ada = ContactFactory(workspace=workspace, first_name="Ada", phone="+14155552671")
    bob = ContactFactory(workspace=workspace, first_name="Bob", phone="+14155552672",
                         sms_subscribed=False)
    nophone = ContactFactory(workspace=workspace, phone="")
    stranger = ContactFactory(phone="+14155552673")  # another workspace's contact
    WebhookEndpoint.objects.create(workspace=workspace, events=["broadcast.completed"],
                                   url="https://hooks.example.com/events")
    response = post(api, contact_ids=[str(ada.pk), str(bob.pk), str(ada.pk), str(nophone.pk),
                                      str(stranger.pk)])
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "sending"
    assert body["contact_ids"] == [str(ada.pk), str(bob.pk), str(nophone.pk),
                                   str(stranger.pk)]

    def completed() -> bool:
        broadcasts.broadcasts_tick()  # beat's job, every 5 s in production
        return Broadcast.objects.get(pk=body["id"]).status == "completed"

    wait_until(completed, timeout=60)
    stats = api.get(f"{URL}/{body['id']}").json()["stats"]
    assert stats == {"targeted": 2, "skipped": 1, "pending": 0, "sent": 1, "delivered": 0,
                     "failed": 0, "suppressed": 1, "cancelled": 0, "progress": 1.0}
    sent = {m.contact_id: m for m in messages_of(body["id"])}
    assert sent[ada.pk].status == "sent"
    assert sent[ada.pk].rendered == {"body": "Hi Ada"}
    assert sent[ada.pk].category == "marketing"
    assert sent[ada.pk].source == "broadcast"
    assert (sent[bob.pk].status, sent[bob.pk].suppressed_reason) == ("suppressed",
                                                                     "unsubscribed")
    event = Message.objects.get(workspace=workspace, source="event",
                                content__payload__type="broadcast.completed")
    data = event.content["payload"]["data"]
    assert (data["id"], data["targeted"], data["sent"], data["suppressed"]) == (
        body["id"], 2, 1, 1)


@pytest.mark.django_db(transaction=True)
def test_a_throttle_spaces_the_messages_due_times(api, workspace):
    contacts = [ContactFactory(workspace=workspace) for _ in range(4)]
    response = post(api, contact_ids=[str(c.pk) for c in contacts], throttle="60/min")
    make_all(response.json()["id"])
    messages = messages_of(response.json()["id"])
    assert len(messages) == 4
    assert messages[0].status == "queued"  # the first is due at once
    assert [m.status for m in messages[1:]] == ["scheduled"] * 3
    start = Broadcast.objects.get(pk=response.json()["id"]).start_at
    assert [m.scheduled_for - start for m in messages[1:]] == [
        timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=3)]


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_what_has_not_been_sent(api, workspace):
    contacts = [ContactFactory(workspace=workspace) for _ in range(3)]
    response = post(api, contact_ids=[str(c.pk) for c in contacts], throttle="1/h")
    broadcast_id = response.json()["id"]
    broadcast = Broadcast.objects.get(pk=broadcast_id)
    assert broadcasts.broadcast_run_batch(broadcast=broadcast) is False  # one batch: all
    first = messages_of(broadcast_id)[0]
    Message.objects.filter(pk=first.pk).update(status="sent")  # already handed over

    answer = api.post(f"{URL}/{broadcast_id}/cancel")
    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled"
    assert answer.json()["stats"]["cancelled"] == 2
    assert [m.status for m in messages_of(broadcast_id)] == ["sent", "cancelled", "cancelled"]
    assert api.post(f"{URL}/{broadcast_id}/cancel").status_code == 409


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_broadcast_makes_no_more_messages(api, workspace):
    contact = ContactFactory(workspace=workspace)
    response = post(api, contact_ids=[str(contact.pk)])
    stale = Broadcast.objects.get(pk=response.json()["id"])
    api.post(f"{URL}/{stale.pk}/cancel")
    assert broadcasts.broadcast_run_batch(broadcast=stale) is False
    assert not BroadcastRecipient.objects.filter(broadcast=stale).exists()
    assert not Message.objects.filter(source="broadcast").exists()


@pytest.mark.django_db(transaction=True)
def test_a_batch_made_by_another_task_is_not_made_twice(api, workspace, monkeypatch):
    monkeypatch.setattr(broadcasts, "BROADCAST_BATCH", 1)
    contacts = [ContactFactory(workspace=workspace) for _ in range(2)]
    broadcast_id = post(api, contact_ids=[str(c.pk) for c in contacts]).json()["id"]
    stale = Broadcast.objects.get(pk=broadcast_id)
    assert broadcasts.broadcast_run_batch(broadcast=stale) is True
    assert broadcasts.broadcast_run_batch(broadcast=stale) is False  # same cursor: refused
    assert make_all(broadcast_id).targeted == 2
    assert Message.objects.filter(source="broadcast").count() == 2


@pytest.mark.django_db(transaction=True)
def test_rules_pick_the_audience(api, workspace):
    berlin = ContactFactory(workspace=workspace, attributes={"city": "Berlin"})
    ContactFactory(workspace=workspace, attributes={"city": "Paris"})
    ContactFactory(attributes={"city": "Berlin"})  # another workspace's
    response = post(api, rules={"all": [{"field": "contact.attributes.city", "op": "eq",
                                         "value": "Berlin"}]})
    assert response.status_code == 201, response.json()
    assert [m.contact_id for m in messages_of(make_all(response.json()["id"]).pk)] == [
        berlin.pk]


@pytest.mark.django_db(transaction=True)
def test_a_scheduled_broadcast_starts_sending_at_send_at(api, workspace):
    contact = ContactFactory(workspace=workspace)
    send_at = timezone.now() + timedelta(hours=1)
    response = post(api, contact_ids=[str(contact.pk)], send_at=send_at.isoformat())
    assert response.json()["status"] == "scheduled"
    broadcast = make_all(response.json()["id"])
    message = messages_of(broadcast.pk)[0]
    assert (message.status, message.scheduled_for) == ("scheduled", send_at)
    assert broadcasts.broadcasts_tick()["due"] == 0
    Broadcast.objects.filter(pk=broadcast.pk).update(start_at=timezone.now())
    assert broadcasts.broadcasts_tick()["due"] == 1
    assert Broadcast.objects.get(pk=broadcast.pk).status == "sending"


@pytest.mark.django_db(transaction=True)
def test_a_draft_waits_for_send(api, workspace):
    contact = ContactFactory(workspace=workspace)
    response = post(api, contact_ids=[str(contact.pk)], draft=True)
    assert response.json()["status"] == "draft"
    broadcast_id = response.json()["id"]
    assert make_all(broadcast_id).targeted == 0
    sent = api.post(f"{URL}/{broadcast_id}/send")
    assert sent.status_code == 200 and sent.json()["status"] == "sending"
    assert make_all(broadcast_id).targeted == 1
    assert api.post(f"{URL}/{broadcast_id}/send").status_code == 409


@pytest.mark.parametrize("body,field", [
    ({"content": {}}, "content"),
    ({"content": {"body": "x", "subject": "y"}}, "content"),
    ({"content": {"body": "x", "colour": "red"}}, "content"),
    ({"content": "text"}, "content"),
    ({"channel": "pigeon"}, "channel"),
    ({"category": "spam"}, "category"),
    ({"throttle": "fast"}, "throttle"),
    ({"contact_ids": None, "rules": {"all": [{"field": "trigger.x", "op": "eq", "value": 1}]}},
     "rules"),
    ({"contact_ids": None, "rules": {"all": [{"field": "contact.x", "op": "like"}]}}, "rules"),
    ({"rules": {"all": []}}, "contact_ids"),
    ({"contact_ids": ["not-a-uuid"]}, "contact_ids"),
    ({"contact_ids": None, "rules": None}, "contact_ids"),
    ({"name": ""}, "name"),
    ({"send_at": "tomorrow"}, "send_at"),
])
@pytest.mark.django_db
def test_bad_input_answers_400_naming_the_field_and_writes_nothing(api, workspace, body,
                                                                   field):
    contact = ContactFactory(workspace=workspace)
    payload = {"contact_ids": [str(contact.pk)], **body}
    payload = {key: value for key, value in payload.items() if value is not None}
    response = post(api, **payload)
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert not Broadcast.objects.exists()


@pytest.mark.django_db
def test_another_workspaces_broadcast_is_not_found(api, other_api, workspace):
    contact = ContactFactory(workspace=workspace)
    broadcast_id = post(api, contact_ids=[str(contact.pk)], draft=True).json()["id"]
    assert other_api.get(f"{URL}/{broadcast_id}").status_code == 404
    assert other_api.post(f"{URL}/{broadcast_id}/cancel").status_code == 404
    assert other_api.get(URL).json()["count"] == 0
    assert api.get(URL, {"status": "draft"}).json()["count"] == 1
    assert api.get(URL, {"status": "sending"}).json()["count"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_broadcast_by_template_sends_each_contact_its_locale_of_the_version_it_kept(
        api, workspace):
    template = api.post("/api/v1/templates", {
        "name": "sale", "channel": "sms", "default_locale": "en",
        "variants": {"en": {"body": "Sale, {{ contact.first_name }}"},
                     "de": {"body": "Ausverkauf, {{ contact.first_name }}"}}},
        format="json").json()
    de = ContactFactory(workspace=workspace, first_name="Jo", locale="de-AT")
    en = ContactFactory(workspace=workspace, first_name="Al", locale="")
    response = api.post(URL, {"name": "Sale", "channel": "sms", "template": template["id"],
                              "contact_ids": [str(de.pk), str(en.pk)]}, format="json")
    assert response.status_code == 201, response.json()
    assert (response.json()["template_id"], response.json()["template_version"]) == (
        template["id"], 1)
    # A change after the broadcast was made does not reach its messages, nor does deleting
    # the template stop them.
    api.patch(f"/api/v1/templates/{template['id']}", {"variants": {"en": {"body": "v2"}}},
              format="json")
    assert api.delete(f"/api/v1/templates/{template['id']}").status_code == 204
    make_all(response.json()["id"])
    made = {m.contact_id: m for m in messages_of(response.json()["id"])}
    assert made[de.pk].content == {"body": "Ausverkauf, {{ contact.first_name }}"}
    assert made[en.pk].content == {"body": "Sale, {{ contact.first_name }}"}
    assert {m.template_version.number for m in made.values()} == {1}


@pytest.mark.parametrize(("body", "field"), [
    ({"content": {"body": "Hi"}}, "template"),  # both
    ({"template": "00000000-0000-0000-0000-000000000000"}, "template"),
    ({"channel": "email"}, "channel"),
])
@pytest.mark.django_db(transaction=True)
def test_a_bad_broadcast_template_answers_400_naming_the_field(api, workspace, body, field):
    template = api.post("/api/v1/templates", {
        "name": "sale", "channel": "sms", "default_locale": "en",
        "variants": {"en": {"body": "Sale"}}}, format="json").json()
    contact = ContactFactory(workspace=workspace)
    answer = api.post(URL, {"name": "Sale", "channel": "sms", "template": template["id"],
                            "contact_ids": [str(contact.pk)], **body}, format="json")
    assert answer.status_code == 400, answer.json()
    assert list(answer.json()["error"]["fields"]) == [field]
    assert not Broadcast.objects.exists()


@pytest.mark.django_db
def test_the_list_counts_a_page_of_stats_in_one_query(api, workspace):
    contacts = [ContactFactory(workspace=workspace) for _ in range(3)]
    post(api, contact_ids=[str(contacts[0].pk)], throttle="1/h")
    with CaptureQueriesContext(connection) as one:
        assert api.get(URL).status_code == 200
    for contact in contacts[1:]:
        post(api, contact_ids=[str(contact.pk)], throttle="1/h")
    for broadcast in Broadcast.objects.all():
        make_all(str(broadcast.pk))
    with CaptureQueriesContext(connection) as three:
        listed = api.get(URL).json()["results"]
    assert [item["stats"]["pending"] for item in listed] == [1, 1, 1]
    assert len(three.captured_queries) == len(one.captured_queries)
