"""The `split` node: an A/B test. Each contact goes down one weighted branch, chosen by a
stable hash of (flow, contact), never by a random draw: re-entry and replays keep the
branch. An optional holdout branch sends nothing and ends the execution.

`{"branches": [{"name": "a", "weight": 50}, {"name": "b", "weight": 45},
{"name": "holdout", "weight": 5, "holdout": true}]}`: 2 to 5 branches besides the holdout,
whole-number weights summing to 100; edges leave by `sourceHandle` = the branch's name.
"""
from __future__ import annotations

import hashlib
from typing import Any

from flows.nodes.base import NodeType, Preview, Result, data_of
from flows.nodes.checks import is_text

MIN_BRANCHES, MAX_BRANCHES = 2, 5
# Assignment resolution: a contact's bucket is one of 10,000 (weights in whole percent).
BUCKETS = 10_000


def check(data: dict) -> list[str]:
    """Require 2-5 named branches with whole weights summing to 100, at most one holdout."""
    branches = data.get("branches")
    if not isinstance(branches, list) or not all(isinstance(b, dict) for b in branches):
        return ["split needs data.branches, a list of {name, weight, holdout}"]
    problems = []
    names = [b.get("name") for b in branches]
    if not all(is_text(name) for name in names):
        problems.append("split data.branches[].name must be a non-empty string")
    elif len(set(names)) != len(names):
        problems.append("split data.branches names must be unique")
    weights = [b.get("weight") for b in branches]
    if not all(isinstance(w, int) and not isinstance(w, bool) and 0 < w <= 100
               for w in weights):
        problems.append("split data.branches[].weight must be a whole number from 1 to 100")
    elif sum(weights) != 100:
        problems.append(f"split weights must sum to 100 (they sum to {sum(weights)})")
    holdouts = [b for b in branches if b.get("holdout", False) is not False]
    if any(b["holdout"] is not True for b in holdouts) or len(holdouts) > 1:
        problems.append("split allows one branch with holdout: true")
    if not MIN_BRANCHES <= len(branches) - len(holdouts) <= MAX_BRANCHES:
        problems.append(f"split needs {MIN_BRANCHES} to {MAX_BRANCHES} branches besides the "
                        "holdout")
    return problems


def exits(data: dict) -> dict[str, tuple[int, int]]:
    """One exit per branch, named as it; the holdout's has no edge (it ends there)."""
    branches = data.get("branches")
    if not isinstance(branches, list):
        return {}
    return {str(b.get("name")): (0, 0) if b.get("holdout") is True else (0, 1)
            for b in branches if isinstance(b, dict)}


def bucket(flow_id: Any, contact_id: Any) -> int:
    """Return the contact's bucket (0 to 9,999) in this flow: stable across runs."""
    digest = hashlib.sha256(f"{flow_id}:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign(branches: list[dict], flow_id: Any, contact_id: Any) -> dict:
    """Return the branch this contact of this flow goes down (by its bucket)."""
    point = bucket(flow_id, contact_id)
    edge = 0
    for branch in branches:
        edge += int(branch["weight"]) * BUCKETS // 100
        if point < edge:
            return branch
    return branches[-1]


def _output(branch: dict, point: int) -> dict[str, Any]:
    return {"branch": branch["name"], "holdout": branch.get("holdout") is True,
            "bucket": point}


def run(node: dict, context: dict, execution: Any) -> Result:
    """Take the contact's branch (the holdout's exit has no edge: the execution ends)."""
    branches = data_of(node)["branches"]
    branch = assign(branches, execution.flow_id, execution.contact_id)
    return Result(output=_output(branch, bucket(execution.flow_id, execution.contact_id)),
                  handle=branch["name"])


def dry_run(node: dict, context: dict, events: list[str]) -> Preview:
    """Take the branch the sample contact would get; without an id, the first branch."""
    branches = data_of(node)["branches"]
    contact_id, flow_id = context["contact"].get("id"), context.get("flow_id")
    if contact_id and flow_id:
        branch = assign(branches, flow_id, contact_id)
        return Preview(output=_output(branch, bucket(flow_id, contact_id)),
                       handle=branch["name"])
    return Preview(output={"branch": branches[0]["name"], "sample": True},
                   handle=branches[0]["name"])


SPLIT = NodeType(name="split", check=check, run=run, dry_run=dry_run, exits_for=exits)
