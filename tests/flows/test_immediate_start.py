"""A flow start with `mode: "immediate"`: the nodes that need no waiting run inside the
request and the answer says where the walk stopped; the rest goes on in the background."""
from __future__ import annotations

import pytest

from core.models import Contact
from flows.models import Execution
from messaging.models import Message
from tests.factories import ContactFactory
from tests.support.stub_server import StubServer
from tests.support.waiting import wait_until

LIGHT = {
    "nodes": [
        {"id": "c", "type": "condition", "data": {"rules": {"all": [
            {"field": "contact.attributes.vip", "op": "eq", "value": True}]}}},
        {"id": "u", "type": "update_contact", "data": {"attributes": {"tier": "gold"}}},
        {"id": "x", "type": "end"},
        {"id": "y", "type": "end"},
    ],
    "edges": [
        {"id": "e1", "source": "c", "target": "u", "sourceHandle": "true"},
        {"id": "e2", "source": "c", "target": "y", "sourceHandle": "false"},
        {"id": "e3", "source": "u", "target": "x"},
    ],
}
SEND_THEN_TAG = {
    "nodes": [
        {"id": "u", "type": "update_contact", "data": {"attributes": {"seen": True}}},
        {"id": "s", "type": "send_sms", "data": {"body": "Hi {{ contact.first_name }}"}},
        {"id": "t", "type": "update_contact", "data": {"attributes": {"texted": True}}},
    ],
    "edges": [{"id": "e1", "source": "u", "target": "s"},
              {"id": "e2", "source": "s", "target": "t"}],
}


def active_flow(api, graph: dict) -> str:
    response = api.post("/api/v1/flows", {"name": "Now", "trigger": {"type": "manual"},
                                          **graph}, format="json")
    assert response.status_code == 201, response.json()
    flow_id = response.json()["id"]
    assert api.post(f"/api/v1/flows/{flow_id}/activate").status_code == 200
    return flow_id


def start(api, flow_id: str, contact: Contact, **extra):
    return api.post(f"/api/v1/flows/{flow_id}/executions",
                    {"contact_id": str(contact.id), **extra}, format="json")


@pytest.mark.django_db
def test_a_flow_of_light_nodes_completes_inside_the_request(api, workspace):
    contact = ContactFactory(workspace=workspace, attributes={"vip": True})
    response = start(api, active_flow(api, LIGHT), contact, mode="immediate")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["mode"], body["outcome"], body["status"]) == ("immediate", "completed",
                                                               "completed")
    assert [step["node_id"] for step in body["steps"]] == ["c", "u", "x"]
    assert all(step["status"] == "completed" for step in body["steps"])
    contact.refresh_from_db()
    assert contact.attributes["tier"] == "gold"
    assert Execution.objects.get(pk=body["id"]).status == "completed"


@pytest.mark.django_db
def test_a_queued_start_answers_as_before_with_the_mode(api, workspace):
    contact = ContactFactory(workspace=workspace, attributes={"vip": True})
    body = start(api, active_flow(api, LIGHT), contact).json()
    assert (body["mode"], body["outcome"], body["steps"]) == ("queued", None, [])
    assert body["status"] == "running"
    contact.refresh_from_db()
    assert "tier" not in contact.attributes  # nothing ran inside the request


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_send_stops_the_walk_and_the_rest_goes_on_in_the_background(
        api, workspace, stub_server: StubServer, live_worker):
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    contact = ContactFactory(workspace=workspace, phone="+14155552671", first_name="Ada")
    response = start(api, active_flow(api, SEND_THEN_TAG), contact, mode="immediate")

    body = response.json()
    assert response.status_code == 201, body
    assert (body["outcome"], body["status"], body["current_node"]) == ("waiting", "waiting",
                                                                       "s")
    assert [(step["node_id"], step["status"]) for step in body["steps"]] == [
        ("u", "completed"), ("s", "waiting")]
    # The message is written (rendered at send time, like every templated message).
    assert Message.objects.filter(pk=body["steps"][1]["message_id"]).exists()

    assert stub_server.wait_for(1, path="/send-sms")[0].json()["message"] == "Hi Ada"
    wait_until(lambda: Execution.objects.get(pk=body["id"]).status == "completed", timeout=60)
    contact.refresh_from_db()
    assert contact.attributes["texted"] is True


@pytest.mark.django_db
def test_the_immediate_walk_is_bounded_and_continues_in_the_background(api, workspace,
                                                                       settings):
    settings.FLOW_IMMEDIATE_SECONDS = 0  # one walk, then the bound
    contact = ContactFactory(workspace=workspace, attributes={"vip": True})
    body = start(api, active_flow(api, LIGHT), contact, mode="immediate").json()
    # One walk always runs; a walk of three light nodes ends within it.
    assert body["outcome"] == "completed"


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["now", "", 1, None])
def test_an_unknown_mode_answers_400_naming_it(api, workspace, mode):
    contact = ContactFactory(workspace=workspace)
    response = start(api, active_flow(api, LIGHT), contact, mode=mode)
    assert response.status_code == 400
    assert "mode" in response.json()["error"]["fields"]
    assert Execution.objects.count() == 0
