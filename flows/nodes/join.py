"""The `join` node: where parallel branches meet (README.md, "Parallel branches").

A node with several outgoing edges runs them all, each in a branch execution of its own;
a branch that reaches the join ends there, and once every branch of the fork has ended the
execution that forked goes on from the join (its step records the branches that arrived).
The walker does the waiting (flows.branches); run here is the pass-through of an execution
that is no branch, and publishing refuses a join fewer than two branches of one fork reach.
"""
from __future__ import annotations

from typing import Any

from flows.nodes.base import NodeType, Preview, Result


def check(data: dict) -> list[str]:
    """Accept any data: a join needs no configuration."""
    return []


def run(node: dict, context: dict, execution: Any) -> Result:
    """Go on: a branch's arrival is the walker's (it ends the branch here)."""
    return Result()


def dry_run(node: dict, context: dict, events: list[str]) -> Preview:
    """Show the join once every branch before it has been shown (the dry run's order)."""
    return Preview(output={})


JOIN = NodeType(name="join", check=check, run=run, dry_run=dry_run)
