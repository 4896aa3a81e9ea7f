"""The `wait_for_event` node: pause until the contact's event arrives or the timeout."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from flows.nodes.base import NodeType, Preview, Result, data_of
from flows.nodes.checks import is_text


def check(data: dict) -> list[str]:
    """Require the event name and a whole-second timeout."""
    problems = [] if is_text(data.get("event")) else ["wait_for_event needs data.event"]
    timeout = data.get("timeout_seconds")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        problems.append("wait_for_event needs data.timeout_seconds (a whole number above 0)")
    return problems


def run(node: dict, context: dict, execution: Any) -> Result:
    """Wait for the event with a durable timer for the timeout exit."""
    data = data_of(node)
    wake = timezone.now() + timedelta(seconds=int(data["timeout_seconds"]))
    return Result(wait=True, wake_at=wake, event=str(data["event"]),
                  output={"event": data["event"], "timeout_at": wake.isoformat()})


def dry_run(node: dict, context: dict, events: list[str]) -> Preview:
    """Take the event exit when the dry run lists the event, else the timeout exit."""
    event = data_of(node).get("event")
    arrived = event in events
    return Preview(output={"event": event, "arrived": arrived},
                   handle="event" if arrived else "timeout")


WAIT_FOR_EVENT = NodeType(name="wait_for_event", check=check, run=run, dry_run=dry_run,
                          pauses=True, exits={"event": (1, 1), "timeout": (0, 1)})
