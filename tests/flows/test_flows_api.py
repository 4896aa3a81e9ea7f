from __future__ import annotations

import copy

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from flows.models import Execution, Flow, FlowVersion
from messaging.models import Message, Topic
from messaging.templates import template_create
from tests.factories import ContactFactory, FlowFactory
from tests.flows.conftest import BUILDER_GRAPH, GRAPH

pytestmark = pytest.mark.django_db


def create(api, **extra):
    body = {"name": "Welcome", "description": "d", "trigger": {"type": "manual"},
            "nodes": GRAPH["nodes"], "edges": GRAPH["edges"], **extra}
    return api.post("/api/v1/flows", body, format="json")


def test_it_creates_a_draft_flow_keeping_builder_keys(api, workspace):
    response = create(api)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft" and body["version"] is None
    assert body["nodes"][0]["position"] == {"x": 0, "y": 0}
    assert Flow.objects.get(pk=body["id"]).workspace == workspace


@pytest.mark.parametrize("nodes,edges,fragment", [
    ([{"id": "a", "type": "teleport", "data": {}}], [], "unknown node type"),
    ([{"id": "a", "type": "send_sms", "data": {}}], [], "body"),
    ([{"id": "a", "type": "end"}, {"id": "b", "type": "end"}], [], "start"),
    ([{"id": "a", "type": "condition", "data": {"rules": {"all": [
        {"field": "x", "op": "eq", "value": 1}]}}},
      {"id": "b", "type": "end"}], [{"id": "e", "source": "a", "target": "b",
                                     "sourceHandle": "true"}], "false"),
    ([{"id": "a", "type": "end"}], [{"id": "e", "source": "a", "target": "zz"}], "zz"),
    ([{"id": "a", "type": "update_contact", "data": {"attributes": {"x": 1}}},
      {"id": "b", "type": "update_contact", "data": {"attributes": {"x": 2}}},
      {"id": "s", "type": "end"}],
     [{"id": "e1", "source": "s", "target": "a"}, {"id": "e2", "source": "a", "target": "b"},
      {"id": "e3", "source": "b", "target": "a"}], "cycle"),
])
def test_invalid_graphs_save_as_drafts_with_warnings_and_publishing_refuses_them(
        api, nodes, edges, fragment):
    response = api.post("/api/v1/flows", {"name": "x", "trigger": {"type": "manual"},
                                          "nodes": nodes, "edges": edges}, format="json")
    assert response.status_code == 201, response.json()
    flow = response.json()
    assert fragment in str(flow["warnings"])
    for action in ("publish", "activate"):
        answer = api.post(f"/api/v1/flows/{flow['id']}/{action}")
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == "invalid_graph"
        assert error["fields"]["graph"] == flow["warnings"]
    assert FlowVersion.objects.count() == 0
    assert Flow.objects.get(pk=flow["id"]).status == "draft"


def test_a_draft_with_every_kind_of_problem_lists_them_all_and_publishing_names_each(api):
    nodes = [{"id": "a", "type": "send_sms", "data": {}},  # no body
             {"id": "b", "type": "end"},  # a second start
             {"id": "c", "type": "delay", "data": {"seconds": 5}},
             {"id": "d", "type": "send_email", "data": {"subject": "s", "text": "t"}}]
    edges = [{"id": "e1", "source": "a", "target": "c"},
             {"id": "e2", "source": "c", "target": "d"}, {"id": "e3", "source": "d",
                                                          "target": "c"}]
    flow = api.post("/api/v1/flows", {"name": "wip", "nodes": nodes, "edges": edges},
                    format="json").json()
    messages = [w["message"] for w in flow["warnings"]]
    assert "send_sms needs data.body" in messages
    assert any("more than one start node" in m for m in messages)
    assert api.get(f"/api/v1/flows/{flow['id']}").json()["warnings"] == flow["warnings"]
    refused = api.post(f"/api/v1/flows/{flow['id']}/publish").json()["error"]
    assert [p["message"] for p in refused["fields"]["graph"]] == messages
    # Fixed, it publishes; a published flow's graph must then stay publishable.
    fixed = api.patch(f"/api/v1/flows/{flow['id']}", {"nodes": [
        {"id": "a", "type": "send_sms", "data": {"body": "hi"}}], "edges": []}, format="json")
    assert fixed.status_code == 200 and fixed.json()["warnings"] == []
    assert api.post(f"/api/v1/flows/{flow['id']}/activate").status_code == 200
    broken = api.patch(f"/api/v1/flows/{flow['id']}", {"nodes": nodes}, format="json")
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "invalid_graph"


@pytest.mark.parametrize("field", ["nodes", "edges"])
def test_a_draft_still_needs_lists_of_nodes_and_edges(api, field):
    body = {"name": "x", "nodes": [{"id": "a", "type": "end"}], "edges": [], field: {"a": 1}}
    response = api.post("/api/v1/flows", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"][field] == ["Must be a list."]
    assert Flow.objects.count() == 0


@pytest.mark.parametrize("trigger", [
    {"type": "cron"}, {"type": "event"}, {"type": "event", "event": "x",
                                          "filter": {"all": [{"op": "like"}]}}, "manual"])
def test_bad_triggers_are_refused(api, trigger):
    assert create(api, trigger=trigger).status_code == 400


def test_publish_activate_pause_and_versions(api):
    flow = create(api).json()
    first = api.post(f"/api/v1/flows/{flow['id']}/publish")
    assert first.status_code == 201 and first.json()["number"] == 1
    assert api.post(f"/api/v1/flows/{flow['id']}/activate").json()["status"] == "active"
    assert api.post(f"/api/v1/flows/{flow['id']}/pause").json()["status"] == "paused"
    assert api.post(f"/api/v1/flows/{flow['id']}/publish").json()["number"] == 2
    versions = api.get(f"/api/v1/flows/{flow['id']}/versions").json()
    assert versions["count"] == 2
    assert [v["number"] for v in versions["results"]] == [2, 1]
    assert api.get(f"/api/v1/flows/{flow['id']}/versions?page_size=0").status_code == 400


def test_activate_publishes_the_first_version(api):
    flow = create(api).json()
    assert api.post(f"/api/v1/flows/{flow['id']}/activate").json()["version"] == 1
    assert FlowVersion.objects.filter(flow_id=flow["id"]).count() == 1


def test_a_paused_flow_refuses_starts_and_reentry_is_off_by_default(api, workspace):
    flow = create(api).json()
    contact = ContactFactory(workspace=workspace)
    url = f"/api/v1/flows/{flow['id']}/executions"
    assert api.post(url, {"contact_id": str(contact.id)}, format="json").status_code == 409
    api.post(f"/api/v1/flows/{flow['id']}/activate")
    assert api.post(url, {"contact_id": str(contact.id)}, format="json").status_code == 201
    again = api.post(url, {"contact_id": str(contact.id)}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "start_refused"
    assert api.post(url, {"contact_external_id": "nope"}, format="json").status_code == 400
    assert Execution.objects.count() == 1


def test_reentry_can_be_allowed(api, workspace):
    flow = create(api, settings={"allow_reentry": True,
                                 "max_concurrent_per_contact": 2}).json()
    api.post(f"/api/v1/flows/{flow['id']}/activate")
    contact = ContactFactory(workspace=workspace)
    url = f"/api/v1/flows/{flow['id']}/executions"
    codes = [api.post(url, {"contact_id": str(contact.id)}, format="json").status_code
             for _ in range(3)]
    assert codes == [201, 201, 409]


def test_dry_run_walks_renders_and_sends_nothing(api, workspace):
    flow = create(api).json()
    response = api.post(f"/api/v1/flows/{flow['id']}/test", {
        "contact": {"first_name": "Ada", "email": "ada@example.com",
                    "attributes": {"vip": True}}, "data": {"code": "Z9"}}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert [step["node_id"] for step in body["path"]] == ["n1", "n2", "n3", "n4"]
    assert body["path"][2]["exit"] == "true"
    assert [m["content"].get("body") or m["content"].get("subject")
            for m in body["messages"]] == ["Hi Ada", "Welcome Ada"]
    assert body["messages"][1]["content"]["html"] == "<p>Hi Ada, code Z9</p>"
    assert body["sent"] == 0 and body["completed"] is True
    not_vip = api.post(f"/api/v1/flows/{flow['id']}/test", {
        "contact": {"attributes": {"vip": False}}}, format="json").json()
    assert not_vip["path"][-1]["node_id"] == "n5"
    assert Message.objects.count() == 0 and Execution.objects.count() == 0


def test_every_flow_endpoint_is_isolated_per_workspace(api, other_api, workspace):
    flow = create(api).json()
    api.post(f"/api/v1/flows/{flow['id']}/activate")
    contact = ContactFactory(workspace=workspace)
    execution = api.post(f"/api/v1/flows/{flow['id']}/executions",
                         {"contact_id": str(contact.id)}, format="json").json()
    base = f"/api/v1/flows/{flow['id']}"
    assert other_api.get("/api/v1/flows").json()["count"] == 0
    assert other_api.get("/api/v1/executions").json()["count"] == 0
    for method, url in [("get", base), ("patch", base), ("delete", base),
                        ("post", f"{base}/publish"), ("post", f"{base}/activate"),
                        ("post", f"{base}/pause"), ("post", f"{base}/test"),
                        ("post", f"{base}/executions"), ("post", f"{base}/executions/bulk"),
                        ("get", f"{base}/versions"),
                        ("get", f"/api/v1/executions/{execution['id']}"),
                        ("post", f"/api/v1/executions/{execution['id']}/cancel")]:
        assert getattr(other_api, method)(url, {}, format="json").status_code == 404, url
    own_flow = other_api.post("/api/v1/flows", {"name": "o", "trigger": {"type": "manual"},
                                                "nodes": GRAPH["nodes"],
                                                "edges": GRAPH["edges"]}, format="json").json()
    other_api.post(f"/api/v1/flows/{own_flow['id']}/activate")
    foreign = other_api.post(f"/api/v1/flows/{own_flow['id']}/executions",
                             {"contact_id": str(contact.id)}, format="json")
    assert foreign.status_code == 400
    event = other_api.post("/api/v1/events", {"name": "x", "contact_id": str(contact.id)},
                           format="json")
    assert event.status_code == 400


def test_execution_list_filters(api, workspace):
    flow = create(api).json()
    api.post(f"/api/v1/flows/{flow['id']}/activate")
    contacts = ContactFactory.create_batch(3, workspace=workspace)
    for contact in contacts:
        api.post(f"/api/v1/flows/{flow['id']}/executions", {"contact_id": str(contact.id)},
                 format="json")
    assert api.get(f"/api/v1/executions?flow={flow['id']}").json()["count"] == 3
    assert api.get(f"/api/v1/executions?contact={contacts[0].id}").json()["count"] == 1
    assert api.get("/api/v1/executions?status=completed").json()["count"] == 0


def test_deleting_a_flow_with_history_archives_it(api, workspace):
    flow = create(api).json()
    assert api.delete(f"/api/v1/flows/{flow['id']}").status_code == 204
    assert not Flow.objects.filter(pk=flow["id"]).exists()
    flow = create(api).json()
    api.post(f"/api/v1/flows/{flow['id']}/activate")
    contact = ContactFactory(workspace=workspace)
    api.post(f"/api/v1/flows/{flow['id']}/executions", {"contact_id": str(contact.id)},
             format="json")
    Execution.objects.update(status="completed")
    assert api.delete(f"/api/v1/flows/{flow['id']}").status_code == 204
    assert Flow.objects.get(pk=flow["id"]).status == "archived"


def test_a_builder_shaped_graph_is_saved_and_shown_as_given(api):
    response = create(api, nodes=BUILDER_GRAPH["nodes"], edges=BUILDER_GRAPH["edges"])
    assert response.status_code == 201, response.json()
    flow = response.json()
    assert (flow["nodes"], flow["edges"]) == (BUILDER_GRAPH["nodes"], BUILDER_GRAPH["edges"])
    shown = api.get(f"/api/v1/flows/{flow['id']}").json()
    assert (shown["nodes"], shown["edges"]) == (BUILDER_GRAPH["nodes"], BUILDER_GRAPH["edges"])
    version = api.post(f"/api/v1/flows/{flow['id']}/publish").json()
    assert version["nodes"] == BUILDER_GRAPH["nodes"]


def test_a_builder_shaped_graph_is_refused_in_the_builder_names(api):
    nodes = copy.deepcopy(BUILDER_GRAPH["nodes"])
    del nodes[0]["data"]["messageText"]
    nodes[1]["data"] = {"delayMs": -5}
    flow = create(api, nodes=nodes, edges=BUILDER_GRAPH["edges"]).json()
    response = api.post(f"/api/v1/flows/{flow['id']}/publish")
    assert response.status_code == 400
    graph_errors = str(response.json()["error"]["fields"]["graph"])
    assert "send-message needs data.messageText" in graph_errors
    assert "delay data.delayMs must come to more than 0" in graph_errors
    assert graph_errors == str(flow["warnings"])
    assert FlowVersion.objects.count() == 0


def builder_graph_with_a_condition() -> dict:
    """Return the builder graph with a vip condition before the email (else it ends)."""
    graph = copy.deepcopy(BUILDER_GRAPH)
    graph["nodes"] += [
        {"id": "c", "type": "condition", "data": {"conditions": [
            {"field": "contact.attributes.vip", "operator": "equals", "value": True}]}},
        {"id": "x", "type": "end", "data": {}}]
    graph["edges"] = [graph["edges"][0],
                      {"id": "d-c", "source": "d", "target": "c"},
                      {"id": "c-e", "source": "c", "target": "e", "sourceHandle": "true"},
                      {"id": "c-x", "source": "c", "target": "x", "sourceHandle": "false"}]
    return graph


def test_a_dry_run_of_a_builder_shaped_graph_renders_its_messages(api):
    graph = builder_graph_with_a_condition()
    flow = create(api, nodes=graph["nodes"], edges=graph["edges"]).json()
    response = api.post(f"/api/v1/flows/{flow['id']}/test", {"contact": {
        "first_name": "Ada", "phone": "+14155550100", "email": "ada@example.com",
        "attributes": {"vip": True}}}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert [(step["node_id"], step["type"], step["exit"]) for step in body["path"]] == [
        ("m", "send_sms", None), ("d", "delay", None), ("c", "condition", "true"),
        ("e", "send_email", None)]
    assert body["path"][1]["output"] == {"skipped_delay": {"seconds": 2}}
    sms, email = body["messages"]
    assert (sms["channel"], sms["to"], sms["content"]) == ("mms", "+14155550100", {
        "body": "Hi Ada", "media_urls": ["https://cdn.example.com/welcome.png"]})
    assert (email["channel"], email["to"], email["content"]) == ("email", "ada@example.com", {
        "subject": "Welcome Ada", "html": "<p>Hi Ada</p>"})
    assert body["sent"] == 0 and body["completed"] is True
    not_vip = api.post(f"/api/v1/flows/{flow['id']}/test", {
        "contact": {"attributes": {"vip": False}}}, format="json").json()
    assert [step["node_id"] for step in not_vip["path"]] == ["m", "d", "c", "x"]
    assert Message.objects.count() == 0 and Execution.objects.count() == 0


def test_a_page_of_flows_costs_the_same_queries_for_two_flows_as_for_six(api, workspace):
    """Version numbers, and the templates and topics the flows' sends name, are read once
    for the page, not once for each flow."""
    template = template_create(workspace=workspace, name="hi", channel="sms",
                               variants={"en": {"body": "Hi"}}, default_locale="en")
    Topic.objects.create(workspace=workspace, key="news", name="News")

    def flows(count: int) -> None:
        for index in range(count):
            topic = "news" if index % 2 == 0 else "gone"
            FlowFactory(workspace=workspace, publish=topic == "news", edges=[], nodes=[
                {"id": "s", "type": "send_sms",
                 "data": {"template": str(template.pk), "topic": topic}}])

    def listed() -> tuple[list[dict], int]:
        with CaptureQueriesContext(connection) as queries:
            answer = api.get("/api/v1/flows")
        assert answer.status_code == 200, answer.json()
        return answer.json()["results"], len(queries)

    flows(2)
    listed()  # the key's first request reads what later ones find cached
    two, two_queries = listed()
    flows(4)
    six, six_queries = listed()
    assert len(two) == 2 and len(six) == 6
    assert six_queries == two_queries
    shown = [(flow["version"], [w["message"] for w in flow["warnings"]]) for flow in six]
    assert shown.count((1, [])) == 3
    assert shown.count((None, ["send_sms data.topic is no topic of this workspace"])) == 3
