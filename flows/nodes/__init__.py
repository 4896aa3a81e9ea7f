"""The node types of flows, each defined once in its own module and listed in REGISTRY.

Graph validation, the walker, the engine and the dry run read REGISTRY and nothing else,
so a new node type is one module (a NodeType with its check, run and dry-run view) and one
line here.
"""
from __future__ import annotations

from typing import Any

from flows.nodes import condition, delay, end, send, update_contact, wait_for_event
from flows.nodes.base import NodeType, Preview, Result
from flows.nodes.send import channel_of

__all__ = ["REGISTRY", "NodeType", "Preview", "Result", "channel_of", "dry_run", "run"]

REGISTRY: dict[str, NodeType] = {node_type.name: node_type for node_type in (
    send.SEND_SMS,
    send.SEND_EMAIL,
    send.SEND_WEBHOOK,
    send.AI_REPLY,
    delay.DELAY,
    condition.CONDITION,
    update_contact.UPDATE_CONTACT,
    wait_for_event.WAIT_FOR_EVENT,
    end.END,
)}


def run(node: dict, context: dict, *, execution: Any) -> Result:
    """Run one node of an execution and say what happens next."""
    return REGISTRY[node["type"]].run(node, context, execution)


def dry_run(node: dict, context: dict, *, events: list[str]) -> Preview:
    """Show what the node would do for a sample contact, sending nothing."""
    return REGISTRY[node["type"]].dry_run(node, context, events)
