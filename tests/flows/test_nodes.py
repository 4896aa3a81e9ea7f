"""The node registry: the one list of node types that validation, runs and dry runs read."""
from __future__ import annotations

import pytest

from flows.graph import NODE_TYPES
from flows.nodes import REGISTRY, NodeType, Preview, Result


def test_each_node_type_is_registered_under_its_own_name() -> None:
    assert all(name == node_type.name for name, node_type in REGISTRY.items())
    assert frozenset(REGISTRY) == NODE_TYPES


def test_a_node_type_cannot_be_made_without_a_dry_run_view() -> None:
    with pytest.raises(TypeError):
        NodeType(name="noop", check=lambda data: [],  # type: ignore[call-arg]
                 run=lambda node, context, execution: Result())


def test_a_dry_run_of_a_condition_takes_the_exit_a_run_would_take() -> None:
    node = {"id": "c", "type": "condition", "data": {"rules": {"all": [
        {"field": "contact.attributes.vip", "op": "eq", "value": True}]}}}
    context = {"contact": {"attributes": {"vip": True}}, "trigger": {}, "steps": {}}
    preview = REGISTRY["condition"].dry_run(node, context, [])
    assert preview == Preview(output={"result": True}, handle="true")
    assert REGISTRY["condition"].run(node, context, None).handle == "true"


def test_a_condition_run_keeps_every_field_its_rules_name_even_past_the_answer() -> None:
    # "any" is answered by its first condition and "all" by its missing tier: the step's
    # input still holds every field, in the rules' order, each once.
    node = {"id": "c", "type": "condition", "data": {"rules": {"all": [
        {"any": [{"field": "contact.attributes.vip", "op": "eq", "value": True},
                 {"field": "trigger.score", "op": "gt", "value": 5}]},
        {"field": "contact.attributes.tier", "op": "eq", "value": "gold"},
        {"field": "steps.s1.status", "op": "exists"},
        {"field": "trigger.score", "op": "lt", "value": 9},
        {"field": "contact.attributes.tier", "op": "neq", "value": "free"}]}}}
    context = {"contact": {"attributes": {"vip": True}}, "trigger": {"score": 3},
               "steps": {}}
    result = REGISTRY["condition"].run(node, context, None)
    assert (result.output, result.handle) == ({"result": False}, "false")
    assert result.input == {"values": {"contact.attributes.vip": True, "trigger.score": 3},
                            "missing": ["contact.attributes.tier", "steps.s1.status"]}
    context["contact"]["attributes"]["tier"] = "gold"
    context["steps"] = {"s1": {"status": "completed"}}
    result = REGISTRY["condition"].run(node, context, None)
    assert (result.output, result.handle) == ({"result": True}, "true")
    assert result.input == {"values": {"contact.attributes.vip": True, "trigger.score": 3,
                                       "contact.attributes.tier": "gold",
                                       "steps.s1.status": "completed"}}
