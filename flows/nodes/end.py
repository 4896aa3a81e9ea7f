"""The `end` node: stop the execution here."""
from __future__ import annotations

from flows.nodes.base import NodeType, accept_any, run_nothing, show_nothing

# The walk (and the dry run) ends at it because the type is final.
END = NodeType(name="end", check=accept_any, run=run_nothing, dry_run=show_nothing, final=True)
