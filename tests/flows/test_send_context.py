"""A flow send's context (its trigger and earlier steps) renders its templates, and shows
nowhere a client or a receiver can read: not in the API's answer, not in its events."""
from __future__ import annotations

import pytest

from config.celery import app
from flows import services
from flows.tasks import advance_executions
from messaging.delivery.sending import messages_deliver
from messaging.models import Message
from tests.factories import ContactFactory, FlowFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

# A condition first, so the send has an earlier step to quote.
NODES = [
    {"id": "c", "type": "condition", "data": {"rules": {"all": [
        {"field": "contact.first_name", "op": "eq", "value": "Ada"}]}}},
    {"id": "s", "type": "send_sms", "data": {
        "body": "plan {{ trigger.plan }}, vip {{ steps.c.output.result }}"}},
    {"id": "x", "type": "end", "data": {}},
]
EDGES = [{"id": "e", "source": "c", "target": "s", "sourceHandle": "true"},
         {"id": "f", "source": "c", "target": "x", "sourceHandle": "false"}]


def flow_message(workspace, data: dict) -> Message:
    """Start the flow for a new contact and walk it to its send; return the message."""
    flow = FlowFactory(workspace=workspace, publish=True, nodes=NODES, edges=EDGES)
    contact = ContactFactory(workspace=workspace, first_name="Ada")
    [execution], _ = services.executions_start_many(flow=flow, contacts=[contact],
                                                    data=data, source="api")
    assert advance_executions([str(execution.pk)]) == {str(execution.pk): "waiting"}
    return Message.objects.get(workspace=workspace, source="flow")


def test_a_flow_send_renders_its_trigger_and_steps(workspace, providers):
    message = flow_message(workspace, {"plan": "gold"})
    messages_deliver(message_ids=[str(message.pk)])
    [request] = providers.wait_for(1, path="/send-sms")
    assert request.json()["message"] == "plan gold, vip true"
    app.control.purge()


def test_a_flow_sends_context_is_not_in_its_api_answer_nor_its_events(
        api, workspace, providers, allow_local):
    response = api.post("/api/v1/webhook-endpoints", {
        "url": f"{providers.url}/events", "events": ["message.sent"]}, format="json")
    assert response.status_code == 201, response.json()
    message = flow_message(workspace, {"plan": "gold", "secret": "s3"})
    messages_deliver(message_ids=[str(message.pk)])

    detail = api.get(f"/api/v1/messages/{message.pk}").json()
    assert set(detail["metadata"]) == {"flow_id", "execution_id", "node_id"}
    assert "flow_context" not in detail and "s3" not in str(detail)
    delivery = Message.objects.get(webhook_endpoint_id=response.json()["id"])
    messages_deliver(message_ids=[str(delivery.pk)])
    [event] = providers.wait_for(1, path="/events")
    assert event.json()["type"] == "message.sent"
    assert event.json()["data"]["metadata"] == detail["metadata"]
    assert "s3" not in event.body.decode()
    app.control.purge()
