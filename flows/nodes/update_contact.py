"""The `update_contact` node: merge attributes (templates rendered) into the contact."""
from __future__ import annotations

from typing import Any

from flows.nodes.base import NodeType, Preview, Result, data_of
from messaging.delivery.templating import render_data


def check(data: dict) -> list[str]:
    """Require a non-empty attributes object and refuse the contact's own fields."""
    attributes = data.get("attributes")
    problems = []
    if not isinstance(attributes, dict) or not attributes:
        problems.append("update_contact needs data.attributes (a non-empty object)")
    # Contact fields are not settable from a flow; saying so beats silently ignoring them.
    problems += [
        f"update_contact sets only data.attributes, not data.{key}"
        for key in ("first_name", "last_name", "email") if key in data
    ]
    return problems


def _merge(node: dict, context: dict) -> dict[str, Any]:
    """Render the attributes into the context's contact, so later nodes see them."""
    values = render_data(data_of(node).get("attributes") or {}, context)
    contact = context["contact"]
    contact["attributes"] = {**(contact.get("attributes") or {}), **values}
    return values


def run(node: dict, context: dict, execution: Any) -> Result:
    """Merge the attributes; the engine writes them when it persists the step."""
    values = _merge(node, context)
    return Result(output={"attributes": values}, contact_update=values)


def dry_run(node: dict, context: dict, events: list[str]) -> Preview:
    """Merge the attributes into the sample contact only."""
    return Preview(output={"attributes": _merge(node, context)})


UPDATE_CONTACT = NodeType(name="update_contact", check=check, run=run, dry_run=dry_run)
