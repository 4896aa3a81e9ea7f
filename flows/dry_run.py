"""A dry run of a flow: walk the graph for a sample contact, render, send nothing."""
from __future__ import annotations

from typing import Any

from flows import nodes
from flows.graph import SEND_TYPES, parse
from flows.models import Flow
from flows.rules import evaluate
from messaging.pipeline import render_fields
from messaging.templating import render_data

# A cycle through a delay would walk forever when delays are skipped.
MAX_DRY_RUN_STEPS = 100


def walk(*, flow: Flow, contact: dict[str, Any], data: dict[str, Any],
         events: list[str]) -> dict[str, Any]:
    """Return the path taken and every message that would be sent.

    Delays are skipped; wait_for_event takes its `event` exit when the event is listed in
    `events`, else its `timeout` exit. The graph is the flow's current (draft) one.
    """
    graph = parse(flow.nodes, flow.edges)
    contact = {"attributes": {}, **contact}
    context: dict[str, Any] = {"contact": contact, "trigger": data, "steps": {}}
    path: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    node_id: str | None = graph.start
    while node_id is not None and len(path) < MAX_DRY_RUN_STEPS:
        node = graph.node(node_id)
        output, handle = _visit(node, context, events, messages)
        context["steps"][node_id] = {"status": "completed", "output": output}
        path.append({"node_id": node_id, "type": node["type"], "output": output,
                     "exit": handle})
        if node["type"] == "end":
            break
        node_id = graph.next(node_id, handle)
    return {"path": path, "messages": messages, "sent": 0,
            "completed": node_id is None or path[-1]["type"] == "end",
            "truncated": len(path) >= MAX_DRY_RUN_STEPS}


def _visit(node: dict, context: dict, events: list[str],
           messages: list[dict]) -> tuple[dict, str | None]:
    data = node.get("data") or {}
    kind = node["type"]
    if kind in SEND_TYPES:
        channel = nodes.channel_of(node)
        fields = {k: data[k] for k in nodes.SEND_FIELDS if k in data}
        rendered = render_fields(fields, context)
        to = rendered.get("to") or (context["contact"].get("email") if channel == "email"
                                    else context["contact"].get("phone", ""))
        if channel == "webhook":
            to = rendered.get("url", "")
        messages.append({"node_id": node["id"], "channel": channel, "to": to,
                         "content": rendered})
        return {"would_send": channel, "to": to}, None
    if kind == "condition":
        matched = evaluate(data["rules"], context)
        return {"result": matched}, "true" if matched else "false"
    if kind == "update_contact":
        values = render_data(data.get("attributes") or {}, context)
        context["contact"]["attributes"] = {**context["contact"]["attributes"], **values}
        return {"attributes": values}, None
    if kind == "delay":
        return {"skipped_delay": {k: v for k, v in data.items()
                                  if k in ("seconds", "until", "until_local_time")}}, None
    if kind == "wait_for_event":
        arrived = data.get("event") in events
        return {"event": data.get("event"), "arrived": arrived}, "event" if arrived else \
            "timeout"
    return {}, None
