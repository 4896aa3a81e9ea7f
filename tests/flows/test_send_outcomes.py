"""Send nodes that wait for their outcome (README.md, "Outcome branches"): the exits
`delivered`, `failed` and `timeout`, chosen by the carrier's receipt (a Twilio-signed status
callback), a failure, or the timeout's timer; for email, no bounce by then is delivered."""
from __future__ import annotations

import pytest

from flows.models import Execution, Step
from messaging.models import Message
from tests.factories import ContactFactory
from tests.flows.conftest import create_flow, readme_journey
from tests.flows.test_engine_end_to_end import finished, make_flow, start
from tests.messaging.test_channels_end_to_end import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    MESSAGES_PATH,
    STATUS_PATH,
    callback_params,
    post_callback,
    twilio_signature,
    use_providers,
)
from tests.support.stub_server import Reply
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def otp_graph(timeout: str = "10m") -> dict:
    """The README's OTP journey: SMS, then email when the text is not delivered (or not
    within the timeout)."""
    flow = readme_journey("OTP")
    flow["nodes"][0]["data"]["timeout"] = timeout
    return flow


def start_otp(api, flow: dict, contact, code: str) -> str:
    """Activate the flow and raise its trigger event; return the execution's id."""
    assert api.post(f"/api/v1/flows/{flow['id']}/activate").status_code == 200
    answer = api.post("/api/v1/events", {"name": "otp.requested", "contact_id": str(contact.id),
                                         "properties": {"code": code}}, format="json").json()
    [execution] = answer["executions"]
    return execution["id"]


@pytest.fixture
def twilio_and_email(workspace, stub_server, allow_local, settings):
    """SMS through Twilio (the stand-in answers SM1, SM2, ...), email through the stub."""
    settings.PUBLIC_BASE_URL = ""
    use_providers(workspace, sms={"name": "twilio", "account_sid": ACCOUNT_SID,
                                  "auth_token": AUTH_TOKEN, "from_number": FROM_NUMBER,
                                  "api_base": stub_server.url, "public_base_url": ""},
                  email={"name": "http", "api_url": stub_server.url})
    stub_server.script(MESSAGES_PATH, *(Reply(201, {"sid": f"SM{i}", "status": "queued"})
                                        for i in range(1, 6)))
    return stub_server


def callback(message: Message, status: str) -> int:
    path = f"{STATUS_PATH}?message_id={message.pk}"
    params = callback_params(message.provider_message_id, status, ErrorCode="30003")
    return post_callback(path, params, twilio_signature(
        AUTH_TOKEN, f"http://testserver{path}", params)).status_code


def sent_sms(contact) -> Message:
    wait_until(lambda: Message.objects.filter(contact=contact, channel="sms",
                                              status="sent").exists())
    return Message.objects.get(contact=contact, channel="sms")


def test_an_undelivered_text_falls_back_to_email(api, workspace, twilio_and_email,
                                                 live_worker, dispatcher):
    flow = create_flow(api, otp_graph())
    contact = ContactFactory(workspace=workspace)
    execution_id = start_otp(api, flow, contact, "481516")
    sms = sent_sms(contact)
    # Sent is not delivered: the step waits for the carrier's word.
    assert Execution.objects.get(pk=execution_id).status == "waiting"

    assert callback(sms, "undelivered") == 204

    wait_until(lambda: finished(execution_id), timeout=30)
    emails = [r.json() for r in twilio_and_email.requests if r.path == "/api/email/send"]
    assert [(e["to"], e["text"]) for e in emails] == [(contact.email, "Your code is 481516")]
    step = Step.objects.get(execution_id=execution_id, node_id="sms")
    assert (step.status, step.output["outcome"], step.output["status"]) == (
        "completed", "failed", "undelivered")
    assert Execution.objects.get(pk=execution_id).status == "completed"


def test_a_delivered_text_takes_the_delivered_exit(api, workspace, twilio_and_email,
                                                  live_worker, dispatcher):
    graph = otp_graph()
    graph["nodes"].append({"id": "thanks", "type": "update_contact",
                           "data": {"attributes": {"otp": "sms"}}})
    graph["edges"].append({"id": "d", "source": "sms", "target": "thanks",
                           "sourceHandle": "delivered"})
    flow = create_flow(api, graph)
    contact = ContactFactory(workspace=workspace)
    execution_id = start_otp(api, flow, contact, "2342")
    sms = sent_sms(contact)

    assert callback(sms, "delivered") == 204

    wait_until(lambda: finished(execution_id), timeout=30)
    contact.refresh_from_db()
    assert contact.attributes["otp"] == "sms"
    assert [r.path for r in twilio_and_email.requests] == [MESSAGES_PATH]
    assert Step.objects.get(execution_id=execution_id, node_id="sms").output[
        "outcome"] == "delivered"


def test_no_receipt_before_the_timeout_takes_the_timeout_exit(api, workspace, twilio_and_email,
                                                              live_worker, dispatcher):
    flow = create_flow(api, otp_graph(timeout="1s"))
    contact = ContactFactory(workspace=workspace)
    execution_id = start_otp(api, flow, contact, "77")

    wait_until(lambda: finished(execution_id), timeout=30)

    step = Step.objects.get(execution_id=execution_id, node_id="sms")
    assert step.output["outcome"] == "timeout"
    assert [r.path for r in twilio_and_email.requests] == [MESSAGES_PATH, "/api/email/send"]
    # A receipt after the flow moved on changes the message, not the flow.
    assert callback(Message.objects.get(contact=contact, channel="sms"), "delivered") == 204
    assert Step.objects.get(pk=step.pk).output["outcome"] == "timeout"


def test_an_email_not_bounced_by_the_timeout_counts_as_delivered(
        api, workspace, providers, live_worker, dispatcher):
    nodes = [{"id": "mail", "type": "send_email", "data": {
                 "subject": "Hi", "text": "Hello", "wait_for": "delivered", "timeout": "1s"}},
             {"id": "sms", "type": "send_sms", "data": {"body": "Check your email"}}]
    edges = [{"id": "d", "source": "mail", "target": "sms", "sourceHandle": "delivered"}]
    flow = make_flow(api, nodes, edges)
    contact = ContactFactory(workspace=workspace)
    execution_id = start(api, flow["id"], contact)

    wait_until(lambda: finished(execution_id), timeout=30)

    assert Step.objects.get(execution_id=execution_id, node_id="mail").output[
        "outcome"] == "delivered"
    assert [r.path for r in providers.requests] == ["/api/email/send", "/send-sms"]


@pytest.mark.parametrize(("data", "handle", "words"), [
    ({"wait_for": "read", "timeout": "10m"}, "failed", "data.wait_for must be 'delivered'"),
    ({"wait_for": "delivered"}, "failed", "data.timeout (with wait_for) must be"),
    ({"timeout": "10m"}, None, "data.timeout needs data.wait_for"),
    ({"wait_for": "delivered", "timeout": "10m"}, "bounced", "needs sourceHandle"),
])
def test_bad_outcome_settings_are_warned_of_and_refused_on_publish(api, data, handle, words):
    nodes = [{"id": "s", "type": "send_sms", "data": {"body": "x", **data}},
             {"id": "e", "type": "end"}]
    edge = {"id": "x", "source": "s", "target": "e"}
    if handle:
        edge["sourceHandle"] = handle
    refused_on_publish(api, nodes, [edge], words)


def test_a_webhook_cannot_wait_for_its_outcome(api):
    nodes = [{"id": "w", "type": "send_webhook", "data": {
        "url": "https://example.com/h", "payload": {}, "wait_for": "delivered",
        "timeout": "1m"}}]
    refused_on_publish(api, nodes, [], "send_webhook cannot wait for its outcome")


def refused_on_publish(api, nodes: list, edges: list, words: str) -> None:
    """The draft saves, warning of the problem; publishing answers 400 naming it."""
    flow = api.post("/api/v1/flows", {"name": "f", "nodes": nodes, "edges": edges},
                    format="json").json()
    assert words in str(flow["warnings"])
    response = api.post(f"/api/v1/flows/{flow['id']}/publish")
    assert response.status_code == 400
    assert words in str(response.json()["error"]["fields"]["graph"])


def test_the_sweeper_finishes_a_plain_send_but_leaves_an_outcome_wait_on_a_sent_message(
        api, workspace, providers):
    """The sweeper completes steps whose message finished while nobody was told (a worker
    killed); a send waiting for its outcome keeps waiting while its message is only sent."""
    from flows import engine

    plain = make_flow(api, [{"id": "s", "type": "send_sms", "data": {"body": "x"}}], [])
    outcome = make_flow(api, [{"id": "s", "type": "send_sms", "data": {
        "body": "x", "wait_for": "delivered", "timeout": "1h"}}], [])
    ids = [start(api, flow["id"], ContactFactory(workspace=workspace))
           for flow in (plain, outcome)]
    for execution_id in ids:
        assert engine.advance(execution_id=execution_id) == "waiting"
    Message.objects.update(status="sent")

    assert engine.sweep()["steps_finished"] == 1

    assert Execution.objects.get(pk=ids[0]).status == "completed"
    assert Execution.objects.get(pk=ids[1]).status == "waiting"
    assert Step.objects.get(execution_id=ids[1]).status == "waiting"
