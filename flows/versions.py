"""The frozen versions executions run: their parsed graphs, read once per process."""
from __future__ import annotations

import functools

from flows.graph import Graph, parse
from flows.models import FlowVersion


@functools.lru_cache(maxsize=512)
def graph_of(version_id: int) -> Graph:
    """Return the parsed graph of a frozen version (versions never change: cache them)."""
    version = FlowVersion.objects.get(pk=version_id)
    return parse(version.nodes, version.edges)
