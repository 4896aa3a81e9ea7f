"""A dry run of a flow: walk the graph for a sample contact, render, send nothing."""
from __future__ import annotations

from typing import Any

from flows import nodes
from flows.graph import parse
from flows.models import Flow

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
        preview = nodes.dry_run(node, context, events=events)
        if preview.message is not None:
            messages.append(preview.message)
        context["steps"][node_id] = {"status": "completed", "output": preview.output}
        path.append({"node_id": node_id, "type": node["type"], "output": preview.output,
                     "exit": preview.handle})
        if nodes.REGISTRY[node["type"]].final:
            break
        node_id = graph.next(node_id, preview.handle)
    return {"path": path, "messages": messages, "sent": 0,
            "completed": node_id is None or nodes.REGISTRY[path[-1]["type"]].final,
            "truncated": len(path) >= MAX_DRY_RUN_STEPS}
