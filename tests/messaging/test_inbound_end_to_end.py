"""Inbound SMS end to end: webhook -> database -> live worker -> stand-in providers. A reply
starts and wakes flows, a STOP stops later sends, Twilio's 21610 suppresses the address."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from flows.models import Execution
from messaging.models import Message, Suppression
from tests.factories import ContactFactory
from tests.support.stub_server import Reply
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

PUBLIC = "https://relay.example.com"
SHARED_NUMBER, PHONE = "+14155550000", "+14155552671"
TWILIO_MESSAGES = "/2010-04-01/Accounts/AC123/Messages.json"
TWILIO_21610 = {"code": 21610, "message": "Attempt to send to unsubscribed recipient",
                "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}


@pytest.fixture
def sms_to_stub(workspace, stub_server, settings):
    """The workspace sends SMS through the HTTP provider at the stand-in, on the shared
    number (it has no number of its own)."""
    settings.TWILIO_FROM_NUMBER = SHARED_NUMBER
    settings.TWILIO_AUTH_TOKEN = "env-token"
    settings.PUBLIC_BASE_URL = PUBLIC
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    return stub_server


def receive(api, body: str):
    response = api.post("/api/v1/inbound", {"channel": "sms", "from": PHONE,
                                            "to": SHARED_NUMBER, "body": body}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def make_flow(api, nodes, edges, trigger) -> str:
    response = api.post("/api/v1/flows", {"name": "f", "trigger": trigger, "nodes": nodes,
                                          "edges": edges}, format="json")
    assert response.status_code == 201, response.json()
    flow_id = response.json()["id"]
    assert api.post(f"/api/v1/flows/{flow_id}/activate").status_code == 200
    return flow_id


def texts(stub) -> list[tuple[str, str]]:
    return [(r.json()["to"], r.json()["message"]) for r in stub.requests
            if r.path == "/send-sms"]


def test_a_reply_starts_the_flow_whose_trigger_matches_and_its_send_goes_out(
        api, workspace, sms_to_stub, live_worker):
    ContactFactory(workspace=workspace, phone=PHONE)
    make_flow(api, [{"id": "s", "type": "send_sms",
                     "data": {"body": "Order taken: {{ trigger.properties.body }}"}}], [],
              {"type": "event", "event": "message.received", "filter": {"all": [
                  {"field": "event.properties.body", "op": "contains", "value": "pizza"}]}})

    assert receive(api, "hello there")["events"] == 1  # the filter keeps this one out
    assert receive(api, "one pizza")["events"] == 1

    sms_to_stub.wait_for(1, path="/send-sms")
    wait_until(lambda: Execution.objects.filter(status="completed").count() == 1)
    assert texts(sms_to_stub) == [(PHONE, "Order taken: one pizza")]
    assert Execution.objects.count() == 1


def test_a_flow_waiting_for_a_reply_is_woken_and_sends_its_next_message(
        api, workspace, sms_to_stub, live_worker, dispatcher):
    contact = ContactFactory(workspace=workspace, phone=PHONE)
    nodes = [
        {"id": "w", "type": "wait_for_event",
         "data": {"event": "message.received", "timeout_seconds": 600}},
        {"id": "yes", "type": "send_sms",
         "data": {"body": "You said: {{ steps.w.output.properties.body }}"}},
        {"id": "no", "type": "send_sms", "data": {"body": "No answer"}},
    ]
    edges = [{"id": "a", "source": "w", "target": "yes", "sourceHandle": "event"},
             {"id": "b", "source": "w", "target": "no", "sourceHandle": "timeout"}]
    flow_id = make_flow(api, nodes, edges, {"type": "manual"})
    started = api.post(f"/api/v1/flows/{flow_id}/executions",
                       {"contact_id": str(contact.id)}, format="json").json()["id"]
    wait_until(lambda: Execution.objects.get(pk=started).status == "waiting")

    receive(api, "Tuesday works")

    wait_until(lambda: Execution.objects.get(pk=started).status == "completed", timeout=30)
    assert texts(sms_to_stub) == [(PHONE, "You said: Tuesday works")]


def test_a_twilio_signed_stop_is_confirmed_and_later_sends_are_suppressed(
        api, workspace, sms_to_stub, live_worker, client):
    contact = ContactFactory(workspace=workspace, phone=PHONE)
    params = {"From": PHONE, "To": SHARED_NUMBER, "Body": " stop ", "MessageSid": "SM9",
              "NumMedia": "0"}
    path = "/api/v1/providers/twilio/inbound"
    signature = RequestValidator("env-token").compute_signature(PUBLIC + path, params)

    response = client.post(path, urlencode(params), HTTP_X_TWILIO_SIGNATURE=signature,
                           content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200
    # The confirmation reaches the number that has just been suppressed.
    sms_to_stub.wait_for(1, path="/send-sms")
    reply = Message.objects.get(source="keyword")
    wait_until(lambda: Message.objects.get(pk=reply.pk).status == "sent")
    by_contact = api.post("/api/v1/messages", {"channel": "sms", "contact_id": str(contact.id),
                                               "body": "sale!"}, format="json").json()["id"]
    by_phone = api.post("/api/v1/messages", {"channel": "sms", "to": PHONE,
                                             "body": "sale!"}, format="json").json()["id"]
    wait_until(lambda: Message.objects.filter(pk__in=[by_contact, by_phone],
                                              status="suppressed").count() == 2)
    assert Message.objects.get(pk=by_contact).suppressed_reason == "unsubscribed"
    assert Message.objects.get(pk=by_phone).suppressed_reason == "suppressed_address"
    assert [body for _, body in texts(sms_to_stub)] == [reply.content["body"]]


def test_twilio_21610_suppresses_the_address_with_the_failure(
        api, workspace, stub_server, live_worker):
    workspace.settings = {"providers": {"sms": {
        "name": "twilio", "account_sid": "AC123", "auth_token": "t",
        "from_number": "+14155550001", "api_base": stub_server.url}}}
    workspace.save()
    stub_server.script(TWILIO_MESSAGES, Reply(400, TWILIO_21610))

    first = api.post("/api/v1/messages", {"channel": "sms", "to": PHONE, "body": "hi"},
                     format="json").json()["id"]
    wait_until(lambda: Message.objects.get(pk=first).status == "failed")

    row = Suppression.objects.get(workspace=workspace)
    assert (row.channel, row.address, row.reason, row.source) == (
        "sms", PHONE, "provider", "twilio 21610")
    assert Message.objects.get(pk=first).error_code == "21610"
    second = api.post("/api/v1/messages", {"channel": "mms", "to": PHONE, "body": "hi",
                                           "media_urls": ["https://cdn.example.com/a.png"]},
                      format="json").json()["id"]
    wait_until(lambda: Message.objects.get(pk=second).status == "suppressed")
    assert len(stub_server.requests) == 1


def test_other_permanent_twilio_errors_suppress_nothing(api, workspace, stub_server,
                                                        live_worker):
    workspace.settings = {"providers": {"sms": {
        "name": "twilio", "account_sid": "AC123", "auth_token": "t",
        "from_number": "+14155550001", "api_base": stub_server.url}}}
    workspace.save()
    stub_server.script(TWILIO_MESSAGES, Reply(400, {**TWILIO_21610, "code": 21211}))

    first = api.post("/api/v1/messages", {"channel": "sms", "to": PHONE, "body": "hi"},
                     format="json").json()["id"]
    wait_until(lambda: Message.objects.get(pk=first).status == "failed")

    assert not Suppression.objects.exists()
