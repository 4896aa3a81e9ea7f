"""The `join` node: where parallel branches meet (README.md, "Parallel branches").

A node with several outgoing edges runs them all, each in a branch execution of its own;
a branch that reaches the join ends there, and once every branch of the fork has ended the
execution that forked goes on from the join (its step records the branches that arrived).
The walker does the waiting (flows.branches); run here is the pass-through of an execution
that is no branch, and publishing refuses a join fewer than two branches of one fork reach.
"""
from __future__ import annotations

from flows.nodes.base import NodeType, accept_any, run_nothing, show_nothing

# Run in an execution that is no branch it passes; a branch's arrival is the walker's (it
# ends the branch there), and the dry run shows it once every branch before it is shown.
JOIN = NodeType(name="join", check=accept_any, run=run_nothing, dry_run=show_nothing)
