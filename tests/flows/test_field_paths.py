"""Field paths of conditions, trigger filters and audiences: the roots each one sees, unknown
roots refused on save with the path named, and old flows with such paths still running."""
from __future__ import annotations

import pytest

from flows import engine, rules, services
from flows.models import Execution, FlowVersion
from messaging.delivery.templating import contact_context
from tests.factories import ContactFactory, FlowFactory

pytestmark = pytest.mark.django_db

END = {"id": "end", "type": "end"}


def condition_graph(field: str) -> dict:
    return {"nodes": [{"id": "c", "type": "condition", "data": {"rules": {"all": [
                {"field": field, "op": "exists"}]}}},
                      {"id": "yes", "type": "update_contact",
                       "data": {"attributes": {"matched": True}}}, END],
            "edges": [{"id": "e1", "source": "c", "target": "yes", "sourceHandle": "true"},
                      {"id": "e2", "source": "c", "target": "end", "sourceHandle": "false"}]}


def event_flow(api, field: str):
    trigger = {"type": "event", "event": "order", "filter": {"all": [
        {"field": field, "op": "gt", "value": 100}]}}
    return api.post("/api/v1/flows", {"name": "Big orders", "trigger": trigger,
                                      "nodes": [END], "edges": []}, format="json")


def test_a_trigger_filter_on_an_unknown_root_is_refused_naming_the_path(api):
    response = event_flow(api, "trigger.properties.total")
    assert response.status_code == 400
    [message] = response.json()["error"]["fields"]["trigger"]
    assert "trigger.properties.total" in message
    assert "event, properties, contact" in message
    assert "did you mean 'properties.total'" in message


def test_a_trigger_filter_on_properties_matches_the_event(api, workspace):
    response = event_flow(api, "properties.total")
    assert response.status_code == 201, response.json()
    assert api.post(f"/api/v1/flows/{response.json()['id']}/activate").status_code == 200
    contact = ContactFactory(workspace=workspace)
    small, big = ({"name": "order", "contact_id": str(contact.pk),
                   "properties": {"total": total}} for total in (50, 150))
    assert api.post("/api/v1/events", small, format="json").json()["started"] == 0
    assert api.post("/api/v1/events", big, format="json").json()["started"] == 1


def test_an_update_cannot_bring_in_an_unknown_root(api):
    flow = event_flow(api, "event.properties.total").json()
    trigger = {**flow["trigger"], "filter": {"all": [
        {"field": "order.total", "op": "exists"}]}}
    response = api.patch(f"/api/v1/flows/{flow['id']}", {"trigger": trigger}, format="json")
    assert response.status_code == 400
    assert "order.total" in response.json()["error"]["fields"]["trigger"][0]


@pytest.mark.parametrize(("field", "accepted"), [
    ("contact.attributes.vip", True), ("trigger.amount", True),
    ("steps.c.output.result", True), ("execution.id", True),
    ("properties.total", False), ("attributes.vip", False),
])
def test_condition_nodes_see_contact_trigger_steps_and_execution(api, field, accepted):
    flow = api.post("/api/v1/flows", {"name": "c", **condition_graph(field)},
                    format="json").json()
    assert (flow["warnings"] == []) is accepted, flow
    response = api.post(f"/api/v1/flows/{flow['id']}/publish")
    assert (response.status_code == 201) is accepted, response.json()
    if not accepted:
        error = response.json()["error"]
        assert error["code"] == "invalid_graph"
        [problem] = error["fields"]["graph"]
        assert problem["node"] == "c" and field in problem["message"]
        assert "contact, trigger, steps, execution" in problem["message"]


def test_a_builder_condition_is_checked_as_the_engine_sees_it(api):
    node = {"id": "c", "type": "condition", "data": {"conditions": [
        {"field": "amount", "operator": "greaterThan", "value": 1}]}}
    graph = condition_graph("x")
    graph["nodes"][0] = node
    flow = api.post("/api/v1/flows", {"name": "b", **graph}, format="json").json()
    response = api.post(f"/api/v1/flows/{flow['id']}/publish")
    assert response.status_code == 400
    assert "'amount'" in response.json()["error"]["fields"]["graph"][0]["message"]


def test_audiences_see_only_the_contact(api, workspace):
    flow = FlowFactory(workspace=workspace, scheduled=True)
    bad = {"all": [{"field": "trigger.plan", "op": "eq", "value": "pro"}]}
    bulk = api.post(f"/api/v1/flows/{flow.pk}/executions/bulk", {"filter": bad},
                    format="json")
    assert bulk.status_code == 400
    assert "trigger.plan" in str(bulk.json()["error"]["fields"]["filter"])
    schedule = api.post("/api/v1/schedules", {"flow": str(flow.pk), "cron": "@daily",
                                              "audience": {"filter": bad}}, format="json")
    assert schedule.status_code == 400
    assert "trigger.plan" in str(schedule.json()["error"]["fields"]["audience"])
    assert "did you mean" not in str(schedule.json()["error"]["fields"]["audience"])


def test_a_saved_flow_with_an_unknown_root_still_runs_and_takes_the_false_exit(workspace):
    # Saved and published before paths were checked (publishing refuses it now): the engine
    # evaluates it (the path is just absent).
    flow = FlowFactory(workspace=workspace, **condition_graph("order.total"))
    FlowVersion.objects.create(flow=flow, number=1, nodes=flow.nodes, edges=flow.edges,
                               trigger=flow.trigger, settings=flow.settings)
    execution = services.execution_start(flow=flow, contact=ContactFactory(
        workspace=workspace))
    engine.advance(execution_id=str(execution.pk))
    execution.refresh_from_db()
    assert execution.status == Execution.Status.COMPLETED
    assert [s.node_id for s in execution.steps.order_by("started_at", "id")] == ["c", "end"]


def test_the_documented_roots_are_the_contexts_rules_evaluate_against(workspace):
    contact = ContactFactory(workspace=workspace)
    execution = services.execution_start(
        flow=FlowFactory(workspace=workspace, publish=True), contact=contact)
    assert tuple(engine._context(execution, [])) == rules.CONDITION_ROOTS
    assert tuple(services.trigger_filter_context(
        contact=contact, name="order", properties={})) == rules.TRIGGER_FILTER_ROOTS
    assert tuple(services.audience_context(contact)) == rules.AUDIENCE_ROOTS
    assert services.audience_context(contact)["contact"] == {
        **contact_context(contact),
        "consent": {"sms": contact.sms_subscribed, "email": contact.email_subscribed}}
