"""The node types of flows, each defined once in its own module and listed in REGISTRY.

Graph validation, the walker, the engine and the dry run read REGISTRY and nothing else,
so a new node type is one module (a NodeType with its check, run and dry-run view) and one
line here. The older builder's node names are aliases of these types, declared in
`aliases.ALIASES`; graph validation turns aliased nodes into engine ones, so `run` and
`dry_run` only ever see the names below.
"""
from __future__ import annotations

from typing import Any

from flows.nodes import (
    aliases,
    condition,
    delay,
    end,
    join,
    send,
    split,
    update_contact,
    wait_for_event,
)
from flows.nodes.aliases import ALIASES, engine_node, engine_type
from flows.nodes.base import NodeType, Preview, Result
from flows.nodes.base import exits_of as _exits_of
from flows.nodes.send import channel_of

__all__ = ["ALIASES", "REGISTRY", "NodeType", "Preview", "Result", "channel_of", "check",
           "dry_run", "engine_node", "engine_type", "exits_of", "run"]

REGISTRY: dict[str, NodeType] = {node_type.name: node_type for node_type in (
    send.SEND_SMS,
    send.SEND_EMAIL,
    send.SEND_WEBHOOK,
    send.AI_REPLY,
    delay.DELAY,
    condition.CONDITION,
    split.SPLIT,
    join.JOIN,
    update_contact.UPDATE_CONTACT,
    wait_for_event.WAIT_FOR_EVENT,
    end.END,
)}


def exits_of(node: dict) -> dict[str, tuple[int, int]] | None:
    """Return the exits of an engine node ({sourceHandle: (fewest, most) edges}), or None
    when it has a single way on: a condition's, a wait's, a send's that waits for its
    outcome."""
    return _exits_of(node, REGISTRY)


def check(node_type: str, data: dict) -> list[str]:
    """Return the problems of a node's data, an aliased node's in the builder's names."""
    if node_type in ALIASES:
        return aliases.check(ALIASES[node_type], data)
    return REGISTRY[node_type].check(data)


def run(node: dict, context: dict, *, execution: Any) -> Result:
    """Run one node of an execution and say what happens next."""
    return REGISTRY[node["type"]].run(node, context, execution)


def dry_run(node: dict, context: dict, *, events: list[str]) -> Preview:
    """Show what the node would do for a sample contact, sending nothing."""
    return REGISTRY[node["type"]].dry_run(node, context, events)
