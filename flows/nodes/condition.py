"""The `condition` node: leave through "true" or "false" as its rules match the context."""
from __future__ import annotations

from typing import Any

from flows.nodes.base import NodeType, Preview, Result, data_of
from flows.rules import evaluate, evaluate_seen, validate_rules


def check(data: dict) -> list[str]:
    """Require rules and report what is wrong with them."""
    if "rules" not in data:
        return ["condition needs data.rules"]
    return validate_rules(data["rules"], "data.rules")


def _outcome(matched: bool) -> tuple[dict, str]:
    """Return the output and exit of the rules' answer, the same for a run and a dry run."""
    return {"result": matched}, "true" if matched else "false"


def run(node: dict, context: dict, execution: Any) -> Result:
    """Evaluate the rules and take the matching exit; the step's input keeps the values the
    rules saw, for the execution's timeline."""
    matched, seen = evaluate_seen(data_of(node)["rules"], context)
    output, handle = _outcome(matched)
    return Result(output=output, handle=handle, input=seen)


def dry_run(node: dict, context: dict, events: list[str]) -> Preview:
    """Evaluate the rules against the sample contact, as a run would."""
    output, handle = _outcome(evaluate(data_of(node)["rules"], context))
    return Preview(output=output, handle=handle)


CONDITION = NodeType(name="condition", check=check, run=run, dry_run=dry_run,
                     exits={"true": (1, 1), "false": (1, 1)})
