"""Inbound SMS: Twilio's signed webhook and POST /api/v1/inbound, routing to workspaces,
STOP/START/HELP and the message.received event (README.md, "Inbound SMS")."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from twilio.request_validator import RequestValidator

from core.models import Contact
from flows.models import Execution
from messaging.models import Message, Suppression
from messaging.recipients.keywords import DEFAULT_REPLIES
from messaging.recipients.suppressions import suppression_add
from tests.factories import (
    ContactFactory,
    FlowFactory,
    MessageFactory,
    StaffUserFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db

PUBLIC = "https://relay.example.com"
INBOUND_PATH = "/api/v1/providers/twilio/inbound"
SHARED_NUMBER, OWN_NUMBER, PHONE = "+14155550000", "+14155550001", "+14155552671"
ENV_TOKEN, OWN_TOKEN = "env-token", "own-token"
FORM = "application/x-www-form-urlencoded"  # as Twilio posts


@pytest.fixture(autouse=True)
def twilio_environment(settings) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.TWILIO_AUTH_TOKEN = ENV_TOKEN
    settings.TWILIO_FROM_NUMBER = SHARED_NUMBER
    settings.TWILIO_MESSAGING_SERVICE_SID = "MGshared"


def owning(number: str = OWN_NUMBER, token: str = OWN_TOKEN, **sms: Any):
    """Return a workspace that sends through its own Twilio number (or service)."""
    return WorkspaceFactory(settings={"providers": {"sms": {
        "name": "twilio", "account_sid": "ACown", "auth_token": token, "from_number": number,
        **sms}}})


def twilio_post(client: Client, token: str, *, body: str = "hello", to: str = SHARED_NUMBER,
                sender: str = PHONE, sid: str = "SM0001", signature: str | None = None,
                **extra: str):
    """POST the form Twilio sends, signed by Twilio's own RequestValidator with `token`."""
    params = {"From": sender, "To": to, "Body": body, "MessageSid": sid, "AccountSid": "AC1",
              "NumMedia": "0", **extra}
    if signature is None:
        signature = RequestValidator(token).compute_signature(PUBLIC + INBOUND_PATH, params)
    return client.post(INBOUND_PATH, urlencode(params), content_type=FORM,
                       HTTP_X_TWILIO_SIGNATURE=signature)


def inbound_rows(**filters: Any) -> list[Message]:
    return list(Message.objects.filter(direction="inbound", **filters).order_by("created_at"))


def replies(**filters: Any) -> list[Message]:
    return list(Message.objects.filter(source="keyword", **filters))


def suppressed_in(workspace) -> bool:
    return Suppression.objects.filter(workspace=workspace, channel="sms", address=PHONE,
                                      reason="stop").exists()


# --- the Twilio webhook ----------------------------------------------------------------------

def test_a_twilio_signed_stop_unsubscribes_suppresses_and_confirms(client, workspace):
    contact = ContactFactory(workspace=workspace, phone=PHONE)
    MessageFactory(workspace=workspace, channel="sms", to=PHONE, status="sent")

    response = twilio_post(client, ENV_TOKEN, body="STOP")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode().endswith("<Response/>")
    [row] = inbound_rows()
    assert (row.workspace, row.contact, row.sender, row.to) == (
        workspace, contact, PHONE, SHARED_NUMBER)
    assert (row.status, row.channel, row.source, row.provider_message_id) == (
        "received", "sms", "inbound", "SM0001")
    assert row.content == {"body": "STOP", "media_urls": []}
    contact.refresh_from_db()
    assert contact.sms_subscribed is False
    assert suppressed_in(workspace)
    [reply] = replies()
    assert (reply.to, reply.contact, reply.parent, reply.status) == (PHONE, contact, row,
                                                                     "queued")
    assert (reply.channel, reply.category, reply.direction) == ("sms", "transactional",
                                                                "outbound")
    assert reply.content["body"] == (f"You are unsubscribed from {workspace.name} messages "
                                     "and will get no more. Reply START to resubscribe.")


@pytest.mark.parametrize("signature", ["", "bm90IGEgc2lnbmF0dXJl"])
def test_a_bad_signature_answers_403_and_stores_nothing(client, workspace, signature):
    contact = ContactFactory(workspace=workspace, phone=PHONE)

    response = twilio_post(client, ENV_TOKEN, body="STOP", signature=signature)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "bad_signature"
    assert not Message.objects.exists() and not Suppression.objects.exists()
    contact.refresh_from_db()
    assert contact.sms_subscribed is True


def test_a_tampered_body_does_not_verify(client, workspace):
    params = {"From": PHONE, "To": SHARED_NUMBER, "Body": "hello", "MessageSid": "SM1"}
    signature = RequestValidator(ENV_TOKEN).compute_signature(PUBLIC + INBOUND_PATH, params)

    response = client.post(INBOUND_PATH, urlencode({**params, "Body": "STOP"}),
                           content_type=FORM, HTTP_X_TWILIO_SIGNATURE=signature)

    assert response.status_code == 403
    assert not Suppression.objects.exists()


def test_an_owned_number_is_verified_with_its_workspace_token(client):
    owner = owning()
    ContactFactory(workspace=owner, phone=PHONE)

    assert twilio_post(client, ENV_TOKEN, to=OWN_NUMBER).status_code == 403
    assert not Message.objects.exists()
    assert twilio_post(client, OWN_TOKEN, to=OWN_NUMBER).status_code == 200
    assert [row.workspace for row in inbound_rows()] == [owner]


def test_a_workspace_claiming_a_number_it_cannot_sign_for_gets_nothing(client):
    owner = owning()
    squatter = owning(token="squatter-token")

    assert twilio_post(client, OWN_TOKEN, to=OWN_NUMBER, body="stop").status_code == 200

    assert [row.workspace for row in inbound_rows()] == [owner]
    assert suppressed_in(owner) and not suppressed_in(squatter)


def test_media_make_an_mms_with_its_urls(client, workspace):
    ContactFactory(workspace=workspace, phone=PHONE)
    urls = ["https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2"]

    response = twilio_post(client, ENV_TOKEN, body="look", sid="MM1", NumMedia="2",
                           MediaUrl0=urls[0], MediaUrl1=urls[1], MediaContentType0="image/jpeg",
                           MediaContentType1="image/png")

    assert response.status_code == 200
    [row] = inbound_rows()
    assert row.channel == "mms"
    assert row.content == {"body": "look", "media_urls": urls}


def test_a_repeated_message_sid_is_stored_and_answered_once(client, workspace):
    ContactFactory(workspace=workspace, phone=PHONE)

    for _ in range(2):
        assert twilio_post(client, ENV_TOKEN, body="help").status_code == 200

    assert len(inbound_rows()) == 1
    assert len(replies()) == 1


def test_no_workspace_still_answers_200_and_a_stop_still_suppresses(client, workspace):
    owner = owning()

    response = twilio_post(client, ENV_TOKEN, body="Stop")

    assert response.status_code == 200
    assert not Message.objects.exists()  # nobody texted the phone, nobody has it as a contact
    # The shared number's STOP holds for every workspace sending through it.
    assert suppressed_in(workspace) and not suppressed_in(owner)


# --- routing ---------------------------------------------------------------------------------

def test_an_owned_number_routes_to_its_owner_only(client, workspace):
    owner = owning()
    ContactFactory(workspace=workspace, phone=PHONE)
    MessageFactory(workspace=workspace, channel="sms", to=PHONE)

    twilio_post(client, OWN_TOKEN, to=OWN_NUMBER)

    assert [row.workspace for row in inbound_rows()] == [owner]
    assert inbound_rows()[0].contact is None  # the owner has no contact of that phone


def test_a_messaging_service_routes_to_the_workspace_using_it(client, workspace):
    owner = owning(number="", messaging_service_sid="MGowner")

    twilio_post(client, OWN_TOKEN, to="+14155550002", MessagingServiceSid="MGowner",
                body="stop")

    assert [row.workspace for row in inbound_rows()] == [owner]
    assert suppressed_in(owner) and not suppressed_in(workspace)


def test_the_shared_number_routes_to_the_workspace_that_last_texted_the_phone(client):
    earlier, later, owner = WorkspaceFactory(), WorkspaceFactory(), owning()
    for ws in (earlier, later, owner):
        ContactFactory(workspace=ws, phone=PHONE)
    MessageFactory(workspace=earlier, channel="sms", to=PHONE)
    MessageFactory(workspace=later, channel="mms", to=PHONE)
    MessageFactory(workspace=owner, channel="sms", to=PHONE)  # from its own number

    twilio_post(client, ENV_TOKEN)

    assert [row.workspace for row in inbound_rows()] == [later]


def test_the_shared_number_falls_back_to_every_workspace_with_the_contact(client):
    first, second, stranger, owner = (WorkspaceFactory(), WorkspaceFactory(),
                                      WorkspaceFactory(), owning())
    for ws in (first, second, owner):
        ContactFactory(workspace=ws, phone=PHONE)

    twilio_post(client, ENV_TOKEN, body="STOP")

    rows = inbound_rows()
    assert {row.workspace for row in rows} == {first, second}
    assert all(row.contact is not None for row in rows)
    # Every workspace on the shared number is suppressed; one reply, from the first routed.
    assert suppressed_in(first) and suppressed_in(second) and suppressed_in(stranger)
    assert not suppressed_in(owner)
    [reply] = replies()
    assert reply.workspace == rows[0].workspace


def test_naming_the_environment_number_is_not_owning_it(client, workspace):
    named = WorkspaceFactory(settings={"providers": {"sms": {"from_number": SHARED_NUMBER}}})
    MessageFactory(workspace=named, channel="sms", to=PHONE)

    twilio_post(client, ENV_TOKEN)

    assert [row.workspace for row in inbound_rows()] == [named]


# --- keywords --------------------------------------------------------------------------------

def inbound(api, body: str, **extra: Any):
    return api.post("/api/v1/inbound", {"channel": "sms", "from": PHONE, "to": SHARED_NUMBER,
                                        "body": body, **extra}, format="json")


@pytest.mark.parametrize("body", ["STOP", "stop", "  Stop \n", "STOPALL", "unsubscribe",
                                  "Cancel", "end", "QUIT", "optout", "Revoke"])
def test_every_stop_word_unsubscribes(api, workspace, body):
    contact = ContactFactory(workspace=workspace, phone=PHONE)

    response = inbound(api, body)

    assert response.status_code == 201, response.json()
    assert response.json()["keyword"] == "stop"
    contact.refresh_from_db()
    assert contact.sms_subscribed is False and suppressed_in(workspace)
    assert Message.objects.get(pk=response.json()["reply_id"]).source == "keyword"


@pytest.mark.parametrize("body", ["START", " yes", "Unstop", "optin\t"])
def test_every_start_word_resubscribes_and_lifts_only_the_opt_out_rows(api, workspace, body):
    contact = ContactFactory(workspace=workspace, phone=PHONE, sms_subscribed=False)
    suppression_add(workspace=workspace, channel="sms", address=PHONE, reason="stop")
    other = WorkspaceFactory()
    suppression_add(workspace=other, channel="sms", address=PHONE, reason="stop")
    suppression_add(workspace=workspace, channel="sms", address="+12025550123",
                    reason="manual")

    response = inbound(api, body)

    assert response.json()["keyword"] == "start"
    contact.refresh_from_db()
    assert contact.sms_subscribed is True
    assert not suppressed_in(workspace)
    assert suppressed_in(other)  # the key speaks for its own workspace only
    assert Suppression.objects.filter(workspace=workspace, address="+12025550123").exists()
    [reply] = replies()
    assert reply.content["body"].startswith(f"You are resubscribed to {workspace.name}")


def test_start_lifts_a_provider_refusal_but_not_a_manual_suppression(api, workspace):
    suppression_add(workspace=workspace, channel="sms", address=PHONE, reason="provider")
    inbound(api, "start")
    assert not Suppression.objects.exists()

    suppression_add(workspace=workspace, channel="sms", address=PHONE, reason="manual")
    inbound(api, "start", provider_message_id="SM2")
    assert Suppression.objects.filter(reason="manual").exists()


@pytest.mark.parametrize("body", ["HELP", "info", " Help "])
def test_help_answers_with_the_workspace_text_and_changes_nothing(api, workspace, body):
    workspace.settings = {"keyword_replies": {"help": "Acme support: 555-0100. {workspace}"}}
    workspace.save()
    contact = ContactFactory(workspace=workspace, phone=PHONE)

    response = inbound(api, body)

    assert response.json()["keyword"] == "help"
    [reply] = replies()
    assert reply.content == {"body": f"Acme support: 555-0100. {workspace.name}"}
    assert reply.contact == contact
    assert not Suppression.objects.exists()
    contact.refresh_from_db()
    assert contact.sms_subscribed is True


def test_a_provider_that_answers_keywords_itself_gets_no_second_reply(api, workspace):
    workspace.settings = {"keyword_replies_by_provider": True}
    workspace.save()

    response = inbound(api, "STOP")

    assert response.json()["reply_id"] is None and not replies()
    assert suppressed_in(workspace)


def test_unreadable_reply_settings_fall_back_to_the_defaults(api, workspace):
    workspace.settings = {"keyword_replies": {"stop": 7, "help": ""},
                          "keyword_replies_by_provider": "yes"}
    workspace.save()

    inbound(api, "stop")
    inbound(api, "help")

    assert {m.metadata["keyword"]: m.content["body"] for m in replies()} == {
        kind: DEFAULT_REPLIES[kind].replace("{workspace}", workspace.name)
        for kind in ("stop", "help")}


def test_a_sentence_with_a_keyword_in_it_is_not_a_keyword(api, workspace):
    ContactFactory(workspace=workspace, phone=PHONE)

    response = inbound(api, "please stop texting me")

    assert response.json()["keyword"] is None
    assert not Suppression.objects.exists() and not replies()


# --- the message.received event --------------------------------------------------------------

def event_flow(workspace, contains: str):
    return FlowFactory(workspace=workspace, publish=True, trigger={
        "type": "event", "event": "message.received",
        "filter": {"all": [{"field": "event.properties.body", "op": "contains",
                            "value": contains}]}})


def test_a_reply_starts_the_flows_its_event_triggers(api, workspace):
    contact = ContactFactory(workspace=workspace, phone=PHONE)
    pizza, salad = event_flow(workspace, "pizza"), event_flow(workspace, "salad")

    response = inbound(api, "one pizza please")

    assert response.json()["events"] == 1
    [execution] = Execution.objects.all()
    assert (execution.flow, execution.contact) == (pizza, contact)
    assert execution.data["event"] == "message.received"
    properties = execution.data["properties"]
    assert properties == {"body": "one pizza please", "from": PHONE, "to": SHARED_NUMBER,
                          "media_urls": [], "message_id": response.json()["message"]["id"]}
    assert not Execution.objects.filter(flow=salad).exists()


def test_a_phone_without_a_contact_is_stored_without_an_event(api, workspace):
    event_flow(workspace, "pizza")

    response = inbound(api, "pizza")

    assert response.status_code == 201
    assert response.json()["events"] == 0 and response.json()["message"]["contact_id"] is None
    assert not Execution.objects.exists()


def test_a_keyword_raises_no_event(api, workspace):
    ContactFactory(workspace=workspace, phone=PHONE)
    event_flow(workspace, "")

    inbound(api, "STOP")

    assert not Execution.objects.exists()


# --- POST /api/v1/inbound ------------------------------------------------------------------

@pytest.mark.parametrize(("data", "field"), [
    ({"from": "12"}, "from"),
    ({"from": 14155552671}, "from"),
    ({"to": "not a phone"}, "to"),
    ({"channel": "email"}, "channel"),
    ({"body": ""}, "body"),
    ({"media_urls": ["https://cdn.example.com/a.png"]}, "media_urls"),
    ({"channel": "mms", "body": "x"}, "media_urls"),
    ({"channel": "mms", "media_urls": ["not a url"]}, "media_urls"),
    ({"channel": "mms", "media_urls": "https://cdn.example.com/a.png"}, "media_urls"),
    ({"body": "x" * 1601}, "body"),
    ({"sender": PHONE}, "sender"),
])
def test_bad_inbound_input_answers_400_naming_the_field(api, data, field):
    payload = {"channel": "sms", "from": PHONE, "to": SHARED_NUMBER, "body": "hi", **data}

    response = api.post("/api/v1/inbound", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Message.objects.exists()


def test_missing_fields_are_named(api):
    response = api.post("/api/v1/inbound", {}, format="json")

    assert response.status_code == 400
    assert {"channel", "from", "to"} <= set(response.json()["error"]["fields"])


def test_inbound_needs_an_api_key(client):
    response = client.post("/api/v1/inbound", {"channel": "sms", "from": PHONE,
                                                "to": SHARED_NUMBER, "body": "hi"},
                           content_type="application/json")
    assert response.status_code == 401


def test_phones_are_normalised(api, workspace):
    contact = ContactFactory(workspace=workspace, phone=PHONE)

    response = api.post("/api/v1/inbound", {"channel": "sms", "from": "+1 (415) 555-2671",
                                            "to": "+1 415 555 0000", "body": "hi"},
                        format="json")

    message = response.json()["message"]
    assert (message["sender"], message["to"], message["contact_id"]) == (
        PHONE, SHARED_NUMBER, str(contact.id))


def test_a_key_cannot_post_to_another_workspaces_number(api):
    owning()

    response = api.post("/api/v1/inbound", {"channel": "sms", "from": PHONE, "to": OWN_NUMBER,
                                            "body": "STOP"}, format="json")

    assert response.status_code == 403
    assert "to" in response.json()["error"]["fields"]
    assert not Message.objects.exists() and not Suppression.objects.exists()


def test_a_key_posts_to_its_own_number(api, workspace):
    workspace.settings = {"providers": {"sms": {"name": "http", "from_number": OWN_NUMBER}}}
    workspace.save()
    owning()  # another workspace naming the same number changes nothing for this key

    response = api.post("/api/v1/inbound", {"channel": "sms", "from": PHONE, "to": OWN_NUMBER,
                                            "body": "hi"}, format="json")

    assert response.status_code == 201
    assert [row.workspace for row in inbound_rows()] == [workspace]


def test_the_inbound_row_is_listed_for_its_workspace_only(api, other_api, workspace):
    message_id = inbound(api, "hello").json()["message"]["id"]

    listed = api.get("/api/v1/messages", {"direction": "inbound"}).json()["results"]
    assert [m["id"] for m in listed] == [message_id]
    assert listed[0]["status"] == "received" and listed[0]["sender"] == PHONE
    assert api.get("/api/v1/messages", {"direction": "outbound"}).json()["count"] == 0
    assert other_api.get(f"/api/v1/messages/{message_id}").status_code == 404
    assert other_api.get("/api/v1/messages").json()["count"] == 0


def test_the_same_provider_message_id_is_stored_once(api, workspace):
    first = inbound(api, "hello", provider_message_id="gw-1")
    again = inbound(api, "hello", provider_message_id="gw-1")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["duplicate"] is True
    assert again.json()["message"]["id"] == first.json()["message"]["id"]
    assert Message.objects.count() == 1


def test_the_dashboard_lists_inbound_messages_with_their_sender(client, workspace, api):
    inbound(api, "hello")
    client.force_login(StaffUserFactory())

    page = client.get(reverse("dashboard:messages"), {"workspace": str(workspace.pk)})

    html = page.content.decode()
    assert ">inbound</span>" in html
    assert f"{PHONE} → {SHARED_NUMBER}" in html


def test_admin_filters_inbound_messages(client, workspace, api):
    message_id = inbound(api, "hello").json()["message"]["id"]
    client.force_login(StaffUserFactory())

    listing = client.get("/admin/messaging/message/", {"direction__exact": "inbound"})
    detail = client.get(f"/admin/messaging/message/{message_id}/change/")

    assert listing.status_code == 200 and message_id in listing.content.decode()
    assert detail.status_code == 200 and PHONE in detail.content.decode()


def test_contacts_of_other_workspaces_keep_their_consent(api, workspace):
    other = ContactFactory(phone=PHONE)

    inbound(api, "STOP")

    assert Contact.objects.get(pk=other.pk).sms_subscribed is True
    assert not Suppression.objects.filter(workspace=other.workspace).exists()
