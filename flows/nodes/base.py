"""The shape every node type fills in: its schema check, its run and its dry-run view.

All three are required fields of NodeType, so a node type cannot be registered without
saying what a dry run shows for it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.models import Execution
    from messaging.models import Message


@dataclass
class Result:
    """What running a node did, and what the walk does next."""

    output: dict[str, Any] = field(default_factory=dict)
    handle: str | None = None  # which exit to take (condition: "true"/"false")
    wait: bool = False
    wake_at: datetime | None = None
    event: str = ""
    message: Message | None = None  # an unsaved message a send node waits for
    input: dict[str, Any] = field(default_factory=dict)
    failed: bool = False
    error: str = ""
    contact_update: dict[str, Any] = field(default_factory=dict)  # attributes to write


@dataclass
class Preview:
    """What a dry run shows for a node: its output, the exit taken, a message it would send."""

    output: dict[str, Any]
    handle: str | None = None
    message: dict[str, Any] | None = None


# Problems in a node's data, as graph validation reports them.
Check = Callable[[dict], list[str]]
# Run the node for an execution: (node, context, execution) -> Result.
Run = Callable[[dict, dict, "Execution"], Result]
# Show the node in a dry run: (node, context, events that arrived) -> Preview.
DryRun = Callable[[dict, dict, list[str]], Preview]


@dataclass(frozen=True, kw_only=True)
class NodeType:
    """One node type; `check`, `run` and `dry_run` are required so none can be forgotten."""

    name: str
    check: Check
    run: Run
    dry_run: DryRun
    # Exits of a branching node: sourceHandle -> (fewest, most) edges with that handle.
    exits: dict[str, tuple[int, int]] | None = None
    # Exits that depend on the node's data (a send that waits for its outcome), else None:
    # (data) -> exits as above, or None when this node has a single way on.
    exits_for: Callable[[dict], dict[str, tuple[int, int]] | None] | None = None
    channel: str | None = None  # the message channel of a send node
    pauses: bool = False  # a cycle through it cannot spin without end
    final: bool = False  # ends the execution; no edge may leave it


def exits_of(node: dict, registry: dict[str, NodeType]) -> dict[str, tuple[int, int]] | None:
    """Return the exits of an engine node (its type's, or those its data gives it), or None
    when it has a single way on."""
    node_type = registry.get(node.get("type", ""))
    if node_type is None:
        return None
    if node_type.exits_for is not None:
        data = node.get("data")
        return node_type.exits_for(data if isinstance(data, dict) else {})
    return node_type.exits


def data_of(node: dict) -> dict:
    """Return the node's configuration (absent or empty data reads as an empty object)."""
    return node.get("data") or {}


def accept_any(data: dict) -> list[str]:
    """Accept any data: for a node that needs no configuration (end, join)."""
    return []


def run_nothing(node: dict, context: dict, execution: Any) -> Result:
    """Do nothing: what the walk does at the node is its type's (final, or a join's wait)."""
    return Result()


def show_nothing(node: dict, context: dict, events: list[str]) -> Preview:
    """Show an empty step."""
    return Preview(output={})
