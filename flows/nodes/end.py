"""The `end` node: stop the execution here."""
from __future__ import annotations

from typing import Any

from flows.nodes.base import NodeType, Preview, Result


def check(data: dict) -> list[str]:
    """Accept any data: `end` needs no configuration."""
    return []


def run(node: dict, context: dict, execution: Any) -> Result:
    """Do nothing; the walk ends because the type is final."""
    return Result()


def dry_run(node: dict, context: dict, events: list[str]) -> Preview:
    """Show an empty step; the dry run ends here too."""
    return Preview(output={})


END = NodeType(name="end", check=check, run=run, dry_run=dry_run, final=True)
