"""An execution's timeline on the real stack: API -> live worker -> stand-in provider ->
dispatcher timers -> events, read back from GET /api/v1/executions/{id}/timeline."""
from __future__ import annotations

import pytest
from django.urls import reverse

from flows.models import Execution
from tests.factories import ContactFactory, StaffUserFactory
from tests.flows.test_engine_end_to_end import make_flow, start
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

NODES = [
    {"id": "hello", "type": "send_sms", "data": {"body": "Hi {{ contact.first_name }}"}},
    {"id": "pause", "type": "delay", "data": {"seconds": 1}},
    {"id": "vip", "type": "condition", "data": {"rules": {"all": [
        {"field": "contact.attributes.vip", "op": "eq", "value": True},
        {"field": "trigger.score", "op": "gte", "value": 5},
        {"field": "contact.attributes.tier", "op": "exists"}]}}},
    {"id": "wait", "type": "wait_for_event", "data": {"event": "clicked",
                                                       "timeout_seconds": 3600}},
    {"id": "bye", "type": "end", "data": {}},
]
EDGES = [
    {"id": "e1", "source": "hello", "target": "pause"},
    {"id": "e2", "source": "pause", "target": "vip"},
    {"id": "e3", "source": "vip", "target": "bye", "sourceHandle": "true"},
    {"id": "e4", "source": "vip", "target": "wait", "sourceHandle": "false"},
    {"id": "e5", "source": "wait", "target": "bye", "sourceHandle": "event"},
]


def _status(execution_id: str) -> str:
    return Execution.objects.get(pk=execution_id).status


def test_it_shows_each_step_the_branch_the_values_seen_the_waits_and_the_end(
        api, client, workspace, providers, live_worker, dispatcher):
    flow = make_flow(api, NODES, EDGES)
    contact = ContactFactory(workspace=workspace, first_name="Ada", attributes={"vip": True})
    execution_id = start(api, flow["id"], contact, {"score": 3})
    wait_until(lambda: Execution.objects.get(pk=execution_id).waiting_event == "clicked",
               timeout=30)
    assert api.post(f"/api/v1/executions/{execution_id}/pause").status_code == 200
    assert api.post(f"/api/v1/executions/{execution_id}/resume").status_code == 200
    assert api.post("/api/v1/events", {"name": "clicked", "contact_id": str(contact.id),
                                       "properties": {"link": "a"}},
                    format="json").status_code == 202
    wait_until(lambda: _status(execution_id) == "completed", timeout=30)

    response = api.get(f"/api/v1/executions/{execution_id}/timeline")
    assert response.status_code == 200
    entries = response.json()["results"]
    assert [(e["kind"], (e["step"] or {}).get("node_id")) for e in entries] == [
        ("started", None), ("step", "hello"), ("step", "pause"), ("step", "vip"),
        ("step", "wait"), ("paused", None), ("resumed", None), ("step", "bye"),
        ("completed", None)]
    started, hello, pause, vip, wait, paused, resumed, bye, completed = entries
    assert started["detail"] == {"source": "api", "data": {"score": 3}, "version": 1}
    # The send step waited for its message; the message woke it.
    assert hello["wait"]["woke_by"] == "message"
    assert hello["wait"]["message_id"] == hello["step"]["message_id"]
    assert hello["step"]["output"]["status"] == "sent"
    assert hello["next_node"] == "pause"
    # The delay's timer woke it.
    assert pause["wait"]["woke_by"] == "timer" and pause["wait"]["until"]
    assert pause["wait"]["woke_at"] == pause["step"]["completed_at"]
    # The condition says what it saw and which way it went.
    assert vip["step"]["input"] == {"values": {"contact.attributes.vip": True,
                                               "trigger.score": 3},
                                    "missing": ["contact.attributes.tier"]}
    assert (vip["branch"], vip["next_node"]) == ("false", "wait")
    assert vip["wait"] is None
    # The wait for the event: the event woke it, through its "event" exit.
    assert wait["wait"]["event"] == "clicked" and wait["wait"]["woke_by"] == "event"
    assert (wait["branch"], wait["next_node"]) == ("event", "bye")
    assert wait["step"]["output"]["properties"] == {"link": "a"}
    assert paused["actor"].startswith("api:") and paused["detail"]["node"] == "wait"
    assert resumed["actor"] == paused["actor"]
    assert bye["next_node"] is None
    assert completed["at"] == Execution.objects.get(pk=execution_id).completed_at.isoformat(
    ).replace("+00:00", "Z")

    # The dashboard's execution page shows the same timeline.
    client.force_login(StaffUserFactory())
    html = client.get(reverse("dashboard:execution-detail", args=[execution_id])).content.decode()
    assert html.count('data-kind="step"') == 5
    assert "Branch <strong>false</strong> → wait" in html
    assert "Values seen" in html and "&quot;trigger.score&quot;: 3" in html
    assert "woken by <strong>event</strong>" in html
    assert "woken by <strong>timer</strong>" in html
    assert 'data-kind="paused"' in html and 'data-kind="completed"' in html


def test_a_cancelled_wait_shows_the_operator_woke_it(api, workspace, providers,
                                                      live_worker, dispatcher):
    flow = make_flow(api, NODES, EDGES)
    contact = ContactFactory(workspace=workspace, attributes={"vip": False})
    execution_id = start(api, flow["id"], contact, {"score": 9})
    wait_until(lambda: Execution.objects.get(pk=execution_id).waiting_event == "clicked",
               timeout=30)
    assert api.post(f"/api/v1/executions/{execution_id}/cancel").status_code == 200

    entries = api.get(f"/api/v1/executions/{execution_id}/timeline").json()["results"]
    assert [e["kind"] for e in entries][-2:] == ["step", "cancelled"]
    wait = entries[-2]
    assert wait["step"]["status"] == "skipped"
    assert wait["wait"]["woke_by"] == "operator"
    assert entries[-1]["actor"].startswith("api:")


def test_another_workspaces_execution_timeline_is_not_found(api, other_api, workspace,
                                                            providers, live_worker,
                                                            dispatcher):
    flow = make_flow(api, NODES, EDGES)
    contact = ContactFactory(workspace=workspace, attributes={"vip": True})
    execution_id = start(api, flow["id"], contact, {"score": 9})
    assert other_api.get(f"/api/v1/executions/{execution_id}/timeline").status_code == 404
