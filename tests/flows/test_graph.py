"""Flow graph validation and navigation, on graphs shaped like the visual builder's."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from flows.graph import (
    NODE_TYPES,
    Graph,
    GraphError,
    parse,
    validate,
)
from flows.nodes import REGISTRY

EXAMPLE: dict[str, list[dict]] = {
    "nodes": [
        {"id": "n1", "type": "send_sms", "data": {"body": "Hi {{ contact.first_name }}"}},
        {"id": "n2", "type": "delay", "data": {"seconds": 2}},
        {"id": "n3", "type": "condition", "data": {"rules": {"all": [
            {"field": "contact.attributes.vip", "op": "eq", "value": True}]}}},
        {"id": "n4", "type": "send_email", "data": {"subject": "Welcome", "html": "<p>Hi</p>"}},
        {"id": "n5", "type": "send_webhook",
         "data": {"url": "https://example.com/hook", "payload": {"a": 1}}},
    ],
    "edges": [
        {"id": "e1", "source": "n1", "target": "n2"},
        {"id": "e2", "source": "n2", "target": "n3"},
        {"id": "e3", "source": "n3", "target": "n4", "sourceHandle": "true"},
        {"id": "e4", "source": "n3", "target": "n5", "sourceHandle": "false"},
    ],
}

Graphish = dict[str, list[dict]]


def example() -> Graphish:
    """Return a fresh copy of the example graph, safe to mutate."""
    return copy.deepcopy(EXAMPLE)


def node(node_id: str, node_type: str, **data: Any) -> dict:
    """Return a builder node."""
    return {"id": node_id, "type": node_type, "data": data}


def edge(source: str, target: str, handle: str | None = None, edge_id: str | None = None) -> dict:
    """Return a builder edge with id e-<source>-<target> unless one is given."""
    result = {"id": edge_id or f"e-{source}-{target}", "source": source, "target": target}
    if handle is not None:
        result["sourceHandle"] = handle
    return result


def deeply_nested(levels: int) -> dict:
    """Return a rules group nested `levels` groups deep."""
    group: dict = {"all": [{"field": "a", "op": "exists"}]}
    for _ in range(levels - 1):
        group = {"any": [group]}
    return group


def messages(errors: list[dict]) -> list[str]:
    """Return just the messages, for readable assertions."""
    return [error["message"] for error in errors]


# The valid example -------------------------------------------------------------------------------


def test_example_graph_is_valid_and_navigable() -> None:
    graph = parse(**example())

    assert validate(**example()) == []
    assert graph.start == "n1"
    assert graph.next("n1") == "n2"
    assert graph.next("n2") == "n3"
    assert graph.next("n3", "true") == "n4"
    assert graph.next("n3", "false") == "n5"
    assert graph.next("n4") is None
    assert graph.node("n3")["type"] == "condition"


def test_branching_node_needs_a_known_handle() -> None:
    graph = parse(**example())

    with pytest.raises(ValueError, match="n3"):
        graph.next("n3")
    with pytest.raises(ValueError, match="n3"):
        graph.next("n3", "event")


def test_wait_for_event_exits_by_event_and_timeout() -> None:
    nodes = [node("w", "wait_for_event", event="order.paid", timeout_seconds=3600),
             node("paid", "send_sms", body="Thanks"), node("late", "end")]
    graph = parse(nodes, [edge("w", "paid", "event"), edge("w", "late", "timeout")])

    assert (graph.next("w", "event"), graph.next("w", "timeout")) == ("paid", "late")


def test_wait_for_event_timeout_exit_is_optional() -> None:
    nodes = [node("w", "wait_for_event", event="order.paid", timeout_seconds=60),
             node("paid", "end")]
    graph = parse(nodes, [edge("w", "paid", "event")])

    assert graph.next("w", "timeout") is None


def test_handle_of_a_non_branching_node_is_ignored() -> None:
    nodes = [node("a", "send_sms", body="x"), node("b", "end")]
    graph = parse(nodes, [edge("a", "b", handle="bottom")])

    assert graph.next("a") == "b"
    assert graph.next("a", "anything") == "b"


def test_builder_extra_keys_are_kept() -> None:
    graph_input = example()
    for index, item in enumerate(graph_input["nodes"]):
        item.update(position={"x": index * 100, "y": 0}, label=f"Step {index}",
                    style={"width": 180}, selected=False)
    graph_input["edges"][0].update(animated=True, label="then", style={"stroke": "#888"})

    graph = parse(**graph_input)

    assert graph.node("n1") is graph_input["nodes"][0]
    assert graph.node("n1")["position"] == {"x": 0, "y": 0}
    assert graph.edges[0]["animated"] is True
    assert isinstance(graph, Graph)


def test_edge_ids_may_be_absent() -> None:
    graph_input = example()
    for item in graph_input["edges"]:
        del item["id"]

    assert parse(**graph_input).next("n3", "false") == "n5"


def test_type_tables_cover_every_node_type() -> None:
    assert NODE_TYPES == set(REGISTRY)
    assert REGISTRY["send_sms"].channel == "sms"
    assert len(NODE_TYPES) == 11


@pytest.mark.parametrize(
    ("node_type", "data"),
    [
        ("send_sms", {"body": "Hi", "media_urls": ["https://cdn.example.com/a.png"],
                      "to": "+15550100", "on_failure": "continue"}),
        ("send_email", {"subject": "S", "text": "plain", "to": "a@example.com"}),
        ("send_webhook", {"url": "http://example.com", "payload": None,
                          "headers": {"X-Key": "v"}, "on_failure": "stop"}),
        ("ai_reply", {"prompt": "Answer", "system": "Be brief", "model": "small",
                      "callback_url": "https://example.com/cb"}),
        ("delay", {"seconds": 0.5}),
        ("delay", {"seconds": 366 * 86400}),
        ("delay", {"until": "2030-01-01T09:00:00+02:00"}),
        ("delay", {"until": "2030-01-01T09:00:00Z"}),
        ("delay", {"until_local_time": "23:59"}),
        ("update_contact", {"attributes": {"vip": True}}),
        ("end", {}),
        ("split", {"branches": [{"name": "a", "weight": 60}, {"name": "b", "weight": 40}]}),
        ("send_sms", {"body": "Hi", "wait_for": "delivered", "timeout": "10m"}),
    ],
)
def test_each_node_type_accepts_its_configuration(node_type: str, data: dict) -> None:
    assert validate([node("x1", node_type, **data)], []) == []


def test_end_node_needs_no_data_at_all() -> None:
    assert validate([{"id": "x1", "type": "end"}], []) == []


# Node configuration errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node_type", "data", "fragment"),
    [
        ("send_sms", {}, "send_sms needs data.body"),
        ("send_sms", {"body": "  "}, "send_sms needs data.body"),
        ("send_sms", {"body": "x", "media_urls": []}, "data.media_urls"),
        ("send_sms", {"body": "x", "media_urls": ["http://insecure.example.com/a.png"]},
         "data.media_urls"),
        ("send_sms", {"body": "x", "media_urls": ["https://e.com/a.png"] * 11}, "data.media_urls"),
        ("send_sms", {"body": "x", "to": ""}, "data.to"),
        ("send_sms", {"body": "x", "on_failure": "retry"}, "data.on_failure"),
        ("send_email", {"html": "<p>x</p>"}, "send_email needs data.subject"),
        ("send_email", {"subject": "S"}, "send_email needs data.html or data.text"),
        ("send_email", {"subject": "S", "text": "t", "html": 5}, "data.html must be a string"),
        ("send_webhook", {"url": "ftp://example.com", "payload": {}}, "data.url"),
        ("send_webhook", {"url": "https://", "payload": {}}, "data.url"),
        ("send_webhook", {"url": "https://example.com"}, "send_webhook needs data.payload"),
        ("send_webhook", {"url": "https://e.com", "payload": 1, "headers": {"a": 1}},
         "data.headers"),
        ("ai_reply", {}, "ai_reply needs data.prompt"),
        ("ai_reply", {"prompt": "p", "callback_url": "javascript:alert(1)"}, "data.callback_url"),
        ("ai_reply", {"prompt": "p", "on_failure": None}, "data.on_failure"),
        ("delay", {}, "delay needs exactly one of"),
        ("delay", {"seconds": 5, "until_local_time": "09:00"}, "delay needs exactly one of"),
        ("delay", {"seconds": 0}, "data.seconds"),
        ("delay", {"seconds": -1}, "data.seconds"),
        ("delay", {"seconds": 366 * 86400 + 1}, "data.seconds"),
        ("delay", {"seconds": True}, "data.seconds"),
        ("delay", {"seconds": "10"}, "data.seconds"),
        ("delay", {"until": "2030-01-01T09:00:00"}, "data.until"),
        ("delay", {"until": "next tuesday"}, "data.until"),
        ("delay", {"until_local_time": "24:00"}, "data.until_local_time"),
        ("delay", {"until_local_time": "9:30"}, "data.until_local_time"),
        ("condition", {}, "condition needs data.rules"),
        ("condition", {"rules": {"all": [{"field": "a", "op": "like", "value": 1}]}},
         "data.rules.all[0].op: unknown operator 'like'"),
        ("update_contact", {"attributes": {}}, "update_contact needs data.attributes"),
        ("update_contact", {"attributes": {"a": 1}, "first_name": "Ada"}, "data.first_name"),
        ("wait_for_event", {"timeout_seconds": 60}, "wait_for_event needs data.event"),
        ("wait_for_event", {"event": "paid", "timeout_seconds": 0}, "data.timeout_seconds"),
        ("wait_for_event", {"event": "paid", "timeout_seconds": 1.5}, "data.timeout_seconds"),
        ("foo", {}, "unknown node type 'foo'"),
    ],
)
def test_invalid_node_configuration_is_reported_on_the_node(node_type: str, data: dict,
                                                            fragment: str) -> None:
    errors = validate([node("x1", node_type, **data)], [])

    # A lone condition or wait_for_event node also lacks its exits, hence "any".
    assert {error["node"] for error in errors} == {"x1"}
    assert any(fragment in message for message in messages(errors))


@pytest.mark.parametrize(
    ("bad_node", "fragment"),
    [
        ({"id": "x1", "data": {}}, "node has no type"),
        ({"id": "x1", "type": "end", "data": []}, "data must be an object"),
        ({"id": "x1", "type": ["end"]}, "unknown node type"),
    ],
)
def test_malformed_node_is_reported_on_the_node(bad_node: dict, fragment: str) -> None:
    errors = validate([bad_node], [])

    assert [error["node"] for error in errors] == ["x1"]
    assert fragment in errors[0]["message"]


@pytest.mark.parametrize(
    ("bad_node", "message"),
    [
        ("n6", "nodes[5] must be an object"),
        ({"type": "end"}, "nodes[5] needs a non-empty string id"),
        ({"id": 6, "type": "end"}, "nodes[5] needs a non-empty string id"),
    ],
)
def test_node_without_usable_id_is_reported_by_position(bad_node: Any, message: str) -> None:
    graph_input = example()
    graph_input["nodes"].append(bad_node)

    assert messages(validate(**graph_input)) == [message]


def test_duplicate_node_id_is_reported() -> None:
    graph_input = example()
    graph_input["nodes"].append(node("n4", "end"))

    assert validate(**graph_input) == [
        {"node": "n4", "edge": None, "message": "duplicate node id n4"},
    ]


# Edge and structure errors -----------------------------------------------------------------------


def add_edge(**fields: Any) -> Callable[[Graphish], None]:
    """Return a mutation appending an edge."""
    return lambda graph: graph["edges"].append(fields)


def replace_edge(index: int, **fields: Any) -> Callable[[Graphish], None]:
    """Return a mutation updating one of the example's edges."""
    return lambda graph: graph["edges"][index].update(fields)


def drop_edge(index: int) -> Callable[[Graphish], None]:
    """Return a mutation removing one of the example's edges."""
    return lambda graph: graph["edges"].pop(index)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (replace_edge(0, source="n0"),
         [{"node": None, "edge": "e1", "message": "edge e1 comes from unknown node n0"},
          {"node": None, "edge": None,
           "message": "more than one start node (nodes without incoming edges): n1, n2"}]),
        (replace_edge(0, target=None),
         [{"node": None, "edge": "e1", "message": "edge e1 has no target"},
          {"node": None, "edge": None,
           "message": "more than one start node (nodes without incoming edges): n1, n2"}]),
        (add_edge(id="e2", source="n4", target="n5"),
         [{"node": None, "edge": "e2", "message": "duplicate edge id e2"}]),
        (add_edge(id=7, source="n4", target="n5"),
         [{"node": None, "edge": None, "message": "edges[4] id must be a non-empty string"}]),
        (add_edge(source="n4", target="n42"),
         [{"node": None, "edge": None, "message": "edge n4->n42 targets unknown node n42"}]),
        (add_edge(id="e5", source="n4", target="n4"),
         [{"node": None, "edge": "e5",
           "message": "edge e5 loops node n4 back to itself without a delay"}]),
        (drop_edge(3),
         [{"node": "n3", "edge": None, "message": "condition node n3 needs a 'false' exit"},
          {"node": None, "edge": None,
           "message": "more than one start node (nodes without incoming edges): n1, n5"}]),
        (replace_edge(3, sourceHandle="true"),  # two 'true' edges fork: the 'false' is missing
         [{"node": "n3", "edge": None, "message": "condition node n3 needs a 'false' exit"}]),
        (replace_edge(3, sourceHandle="maybe"),
         [{"node": None, "edge": "e4",
           "message": "edge e4 from condition node n3 needs sourceHandle 'true' or 'false'"},
          {"node": "n3", "edge": None, "message": "condition node n3 needs a 'false' exit"}]),
        (lambda graph: graph["nodes"].append({"id": "j", "type": "join"}) or graph[
            "edges"].append(edge("n4", "j")),
         [{"node": "j", "edge": None, "message": "join node j is not reached by two or more "
           "parallel branches (several edges leaving one node)"}]),
        (lambda graph: graph["nodes"][4].update(type="end", data={}) or graph["edges"].append(
            edge("n5", "n4")),
         [{"node": "n5", "edge": None, "message": "end node n5 cannot have outgoing edges"}]),
    ],
)
def test_invalid_structure_is_reported_with_its_edge_or_node(
    mutate: Callable[[Graphish], None], expected: list[dict]
) -> None:
    graph_input = example()
    mutate(graph_input)

    assert validate(**graph_input) == expected


def test_unknown_target_is_reported_with_the_edge_id() -> None:
    graph_input = example()
    graph_input["edges"].append({"id": "e9", "source": "n4", "target": "n42"})

    assert validate(**graph_input) == [
        {"node": None, "edge": "e9", "message": "edge e9 targets unknown node n42"},
    ]


@pytest.mark.parametrize(
    ("edges", "fragment"),
    [
        ([], "needs a 'event' exit"),
        ([edge("w", "a", "event"), edge("w", "b", "timeout"), edge("w", "b", "timeout", "t2")],
         "2 edges to b from the same exit"),
    ],
)
def test_wait_for_event_needs_an_event_exit_and_no_repeated_edge(edges: list[dict],
                                                                 fragment: str) -> None:
    nodes = [node("w", "wait_for_event", event="paid", timeout_seconds=60),
             node("a", "end"), node("b", "end")]
    if not edges:
        nodes = nodes[:1]

    errors = validate(nodes, edges)

    assert [(error["node"], fragment in error["message"]) for error in errors] == [("w", True)]


def test_graph_without_start_node_is_refused() -> None:
    nodes = [node("a", "send_sms", body="x"), node("b", "delay", seconds=60)]

    errors = validate(nodes, [edge("a", "b"), edge("b", "a")])

    assert messages(errors) == ["no start node (every node has an incoming edge)"]


def test_unreachable_nodes_are_reported_per_node() -> None:
    graph_input = example()
    graph_input["nodes"] += [node("i1", "delay", seconds=5), node("i2", "send_sms", body="x")]
    graph_input["edges"] += [edge("i1", "i2"), edge("i2", "i1")]

    assert validate(**graph_input) == [
        {"node": "i1", "edge": None, "message": "node i1 is not reachable from the start node n1"},
        {"node": "i2", "edge": None, "message": "node i2 is not reachable from the start node n1"},
    ]


def test_empty_graph_is_refused() -> None:
    assert messages(validate([], [])) == ["a flow needs at least one node"]


# Cycles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "edges"),
    [
        ([node("s", "send_sms", body="x"), node("d", "delay", seconds=86400)],
         [edge("s", "d"), edge("d", "s")]),
        ([node("s", "send_sms", body="x"), node("d", "delay", seconds=86400),
          node("c", "condition", rules={"all": [{"field": "a", "op": "exists"}]}),
          node("done", "end")],
         [edge("s", "d"), edge("d", "c"), edge("c", "s", "true"), edge("c", "done", "false")]),
        ([node("s", "send_sms", body="x"),
          node("w", "wait_for_event", event="e", timeout_seconds=5),
          node("r", "send_sms", body="reminder")],
         [edge("s", "w"), edge("w", "s", "event"), edge("w", "r", "timeout"), edge("r", "w")]),
        ([node("s", "send_sms", body="x"), node("d", "delay", until_local_time="09:00")],
         [edge("s", "d"), edge("d", "d")]),
    ],
)
def test_cycles_through_a_delay_or_wait_are_accepted(nodes: list[dict],
                                                     edges: list[dict]) -> None:
    graph_input = {"nodes": [node("entry", "send_sms", body="hi"), *nodes],
                   "edges": [edge("entry", nodes[0]["id"]), *edges]}

    assert validate(**graph_input) == []


def test_cycle_without_a_delay_is_refused() -> None:
    nodes = [node("s0", "send_sms", body="x"), node("n1", "send_sms", body="a"),
             node("n2", "condition", rules={"all": [{"field": "a", "op": "exists"}]}),
             node("done", "end")]
    edges = [edge("s0", "n1"), edge("n1", "n2"), edge("n2", "n1", "true"),
             edge("n2", "done", "false")]

    assert validate(nodes, edges) == [
        {"node": "n1", "edge": None, "message": "cycle without a delay: n1 -> n2 -> n1"},
    ]


def test_each_instant_cycle_is_reported_once() -> None:
    nodes = [node("s", "send_sms", body="x")] + [
        node(name, "condition", rules={"all": [{"field": "a", "op": "exists"}]})
        for name in ("a", "b", "c")
    ]
    edges = [edge("s", "a"), edge("a", "b", "true"), edge("a", "c", "false"),
             edge("b", "a", "true"), edge("b", "c", "false"),
             edge("c", "a", "true"), edge("c", "b", "false")]

    assert messages(validate(nodes, edges)) == ["cycle without a delay: a -> b -> a"]


# Junk input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "edges"),
    [
        (None, None),
        ("nodes", 5),
        ({"nodes": []}, {}),
        ([None, 1, "x", [], {}], [None, 1, "x", [], {}]),
        ([{"id": ["x"], "type": {"a": 1}, "data": "d"}], [{"source": [], "target": {}}]),
        ([{"id": "a", "type": "condition", "data": {"rules": [[[[]]]]}}],
         [{"source": "a", "target": "a", "sourceHandle": ["true"]}]),
        ([node("a", "condition", rules=deeply_nested(2000))], []),
        ([node("a", "delay", seconds=float("nan")), node("b", "delay", until=5),
          node("c", "delay", until_local_time=None)], [edge("a", "b"), edge("b", "c")]),
        ([node("a", "send_webhook", url="http://[::1", payload=1, headers=[]),
          node("b", "send_sms", body=1, media_urls="https://x")], [edge("a", "b", handle={})]),
        ([node("a", "wait_for_event", event=None, timeout_seconds=float("inf"))],
         [{"id": None, "source": "a", "target": "a", "sourceHandle": None}]),
        ([node("a", "update_contact", attributes=[1]), node("a", "ai_reply", prompt=[])],
         [edge("a", "a"), edge("a", "a")]),
        ([node("a", "send_email", subject=None, html=None, text=None, on_failure=[])],
         [{"id": "", "source": "a"}, {"target": "a"}]),
    ],
)
def test_junk_input_returns_errors_instead_of_raising(nodes: Any, edges: Any) -> None:
    errors = validate(nodes, edges)

    assert errors
    for error in errors:
        assert set(error) == {"node", "edge", "message"}
        assert isinstance(error["message"], str)
    with pytest.raises(GraphError) as raised:
        parse(nodes, edges)
    assert raised.value.errors == errors


def test_graph_error_message_lists_every_problem() -> None:
    with pytest.raises(GraphError, match="a flow needs at least one node; edges must be a list"):
        parse([], None)


def test_several_edges_from_one_exit_fork_and_other_exits_still_choose_one() -> None:
    nodes = [node("w", "wait_for_event", event="paid", timeout_seconds=60),
             node("a", "end"), node("b", "end"), node("c", "end")]
    graph = parse(nodes, [edge("w", "a", "event"), edge("w", "b", "event", "second"),
                          edge("w", "c", "timeout")])

    assert graph.next("w", "event") == "w/fork/event"
    assert graph.node("w/fork/event") == {"id": "w/fork/event", "type": "fork",
                                          "data": {"source": "w", "targets": ["a", "b"]}}
    assert graph.next("w", "timeout") == "c"
