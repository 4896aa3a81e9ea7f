"""The older builder's node names and data fields, accepted as aliases of the engine's types."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from flows import nodes
from flows.graph import parse, validate
from flows.nodes import ALIASES, REGISTRY, engine_node
from tests.flows.conftest import BUILDER_GRAPH


def builder(node_type: str, **data: Any) -> dict:
    """Return a node as the older builder saved it."""
    return {"id": "n", "type": node_type, "data": data, "position": {"x": 1, "y": 2}}


def test_each_alias_stands_for_a_registered_node_type() -> None:
    assert all(REGISTRY[alias.engine.name] is alias.engine for alias in ALIASES.values())
    assert sorted(ALIASES) == ["condition", "delay", "send-email", "send-message"]


def test_a_message_node_becomes_an_sms_with_its_one_image_as_a_media_list() -> None:
    node = builder("send-message", messageText="Hi", imageUrl="https://cdn.example.com/a.png",
                   on_failure="continue")
    assert engine_node(node) == {
        "id": "n", "type": "send_sms", "position": {"x": 1, "y": 2}, "data": {
            "body": "Hi", "media_urls": ["https://cdn.example.com/a.png"],
            "on_failure": "continue"}}
    assert nodes.channel_of(engine_node(node)) == "mms"


def test_an_empty_image_url_means_no_image() -> None:
    node = engine_node(builder("send-message", messageText="Hi", imageUrl=""))
    assert node["data"] == {"body": "Hi"} and nodes.channel_of(node) == "sms"


def test_an_email_node_sends_its_body_as_html() -> None:
    node = engine_node(builder("send-email", to="a@example.com", subject="S", body="<p>B</p>"))
    assert (node["type"], node["data"]) == (
        "send_email", {"to": "a@example.com", "subject": "S", "html": "<p>B</p>"})


@pytest.mark.parametrize("data,seconds", [
    ({"delayMs": 1500}, 1.5),
    ({"duration": 3, "unit": "minutes"}, 180),
    ({"duration": 2, "unit": "hours"}, 7200),
    ({"duration": 1.5, "unit": "days"}, 129600),
])
def test_a_builder_delay_becomes_seconds(data: dict, seconds: float) -> None:
    node = engine_node(builder("delay", **data))
    assert (node["type"], node["data"]) == ("delay", {"seconds": seconds})


def test_builder_conditions_become_a_rules_group_with_engine_operators() -> None:
    node = engine_node(builder("condition", matchType="any", conditions=[
        {"field": "contact.attributes.plan", "operator": "equals", "value": "pro"},
        {"field": "contact.attributes.age", "operator": "greaterThanOrEqual", "value": 18},
        {"field": "contact.email", "op": "exists", "value": True}]))
    assert node["data"] == {"rules": {"any": [
        {"field": "contact.attributes.plan", "op": "eq", "value": "pro"},
        {"field": "contact.attributes.age", "op": "gte", "value": 18},
        {"field": "contact.email", "op": "exists", "value": True}]}}


def test_conditions_match_all_unless_the_node_says_any() -> None:
    node = engine_node(builder("condition", conditions=[
        {"field": "contact.attributes.vip", "operator": "notEquals", "value": True}]))
    assert node["data"] == {"rules": {"all": [
        {"field": "contact.attributes.vip", "op": "neq", "value": True}]}}


@pytest.mark.parametrize("node", [
    builder("delay", seconds=5),
    builder("condition", rules={"all": [{"field": "x", "op": "eq", "value": 1}]}),
    builder("send_sms", body="Hi"),
])
def test_engine_shaped_nodes_are_left_as_they_are(node: dict) -> None:
    assert engine_node(node) is node


def test_parse_hands_the_engine_its_types_and_leaves_the_stored_graph_as_given() -> None:
    stored = copy.deepcopy(BUILDER_GRAPH)
    graph = parse(stored["nodes"], stored["edges"])
    assert [node["type"] for node in graph.nodes.values()] == [
        "send_sms", "delay", "send_email"]
    assert graph.start == "m" and graph.next("m") == "d" and graph.next("d") == "e"
    assert stored == BUILDER_GRAPH


@pytest.mark.parametrize("node_type,data,message", [
    ("send-message", {}, "send-message needs data.messageText"),
    ("send-message", {"messageText": "x", "imageUrl": "http://cdn.example.com/a.png"},
     "send-message data.imageUrl must be an https URL"),
    ("send-message", {"messageText": "x", "body": "y"},
     "send-message takes data.body or data.messageText, not both"),
    ("send-message", {"messageText": "x", "on_failure": "retry"},
     "send-message data.on_failure must be 'continue' or 'stop'"),
    ("send-email", {"body": "x"}, "send-email needs data.subject"),
    ("send-email", {"subject": "s"}, "send-email needs data.body or data.text"),
    ("send-email", {"subject": "s", "body": 3}, "send-email data.body must be a string"),
    ("delay", {"delayMs": "500"}, "delay data.delayMs must be a number of milliseconds"),
    ("delay", {"delayMs": 0}, "delay data.delayMs must come to more than 0 and at most 366 days"),
    ("delay", {"duration": 5},
     "delay data.duration needs data.unit, one of seconds, minutes, hours, days"),
    ("delay", {"duration": 400, "unit": "days"},
     "delay data.duration must come to more than 0 and at most 366 days"),
    ("delay", {"delayMs": 1000, "duration": 1, "unit": "seconds"},
     "delay takes data.delayMs or data.duration, not both"),
    ("delay", {"delayMs": 1000, "until": "2030-01-01T00:00:00+00:00"},
     "delay needs exactly one of data.delayMs, data.until, data.until_local_time"),
    ("condition", {"conditions": [{"field": "x", "operator": "like", "value": 1}]},
     "data.conditions[0].operator: unknown operator 'like'"),
    ("condition", {"conditions": []}, "data.conditions: must be a non-empty list"),
    ("condition", {"conditions": "vip"},
     "condition data.conditions must be a list of {field, operator, value}"),
    ("condition", {"conditions": [{"field": "x", "operator": "equals", "value": 1}],
                   "matchType": "some"},
     "condition data.conditions needs data.matchType 'all' or 'any'"),
])
def test_problems_with_a_builder_node_use_the_builder_names(node_type: str, data: dict,
                                                           message: str) -> None:
    problems = nodes.check(node_type, data)
    assert problems[0] == message
    assert not any(engine in problem for problem in problems
                   for engine in ("send_", "data.html", "data.seconds", "data.rules", ".op:"))


def test_problems_with_an_engine_shaped_delay_keep_the_engine_names() -> None:
    assert nodes.check("delay", {"seconds": 0}) == [
        "delay data.seconds must be a number above 0 and at most 31622400"]


def test_the_older_builders_several_edges_from_one_node_are_parallel_branches() -> None:
    graph_nodes = [builder("send-message", messageText="x"),
                   {"id": "a", "type": "end"}, {"id": "b", "type": "end"}]
    edges = [{"id": "1", "source": "n", "target": "a"}, {"id": "2", "source": "n", "target": "b"}]
    assert validate(graph_nodes, edges) == []
    assert parse(graph_nodes, edges).next("n") == "n/fork"


@pytest.mark.parametrize("node_type", ["send-sms", "send_message", "Send-Message", "email"])
def test_other_names_are_still_unknown_node_types(node_type: str) -> None:
    assert [error["message"] for error in validate([builder(node_type)], [])] == [
        f"unknown node type '{node_type}'"]
