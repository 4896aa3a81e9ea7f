"""The dashboard's flow page: the flow's funnel (flows.selectors.flow_stats) laid out along
its graph, and its splits' comparison."""
from __future__ import annotations

from collections import deque
from typing import Any

from flows.models import Flow
from flows.selectors import flow_stats


def flow_funnel(flow: Flow) -> dict[str, Any]:
    """Return the nodes of the flow's live version (its draft when never published) in the
    order a walk from the start reaches them, each with its counts, the share of the first
    node's entries it kept (`bar`, percent) and where its edges lead; and the splits."""
    version = flow.live_version
    nodes = version.nodes if version else flow.nodes
    edges = version.edges if version else flow.edges
    stats = flow_stats(flow=flow)
    counts = {row["node_id"]: row for row in stats["nodes"]}
    by_id: dict[str, dict] = {str(node.get("id")): node for node in nodes
                              if isinstance(node, dict)}
    leaving: dict[str, list[dict[str, str]]] = {}
    targets = set()
    for edge in edges if isinstance(edges, list) else []:
        if isinstance(edge, dict) and edge.get("source") in by_id:
            leaving.setdefault(edge["source"], []).append(
                {"target": str(edge.get("target")), "handle": str(edge.get("sourceHandle") or "")})
            targets.add(edge.get("target"))
    order = _walk([node_id for node_id in by_id if node_id not in targets], leaving)
    order += [node_id for node_id in by_id if node_id not in order]
    top = max([counts.get(node_id, {}).get("entered", 0) for node_id in order] or [0]) or 1
    rows = []
    for node_id in order:
        row = counts.get(node_id, {"entered": 0, "completed": 0, "failed": 0, "exited": 0})
        rows.append({"id": node_id, "type": by_id[node_id].get("type"),
                     "entered": row["entered"], "completed": row["completed"],
                     "failed": row["failed"], "exited": row["exited"],
                     "bar": round(100 * row["entered"] / top),
                     "leaving": leaving.get(node_id, [])})
    return {"version": version.number if version else None, "nodes": rows,
            "splits": stats["splits"], "executions": stats["executions"],
            "converted": stats["converted"]}


def _walk(starts: list[str], leaving: dict[str, list[dict[str, str]]]) -> list[str]:
    seen: list[str] = []
    queue = deque(starts)
    while queue:
        node_id = queue.popleft()
        if node_id in seen:
            continue
        seen.append(node_id)
        queue.extend(edge["target"] for edge in leaving.get(node_id, []))
    return seen
