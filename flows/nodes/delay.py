"""The `delay` node: wait a duration, until a datetime, or until a local time of day."""
from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any

from django.utils import timezone

from flows.nodes.base import NodeType, Preview, Result, data_of

MAX_DELAY_SECONDS = 366 * 24 * 3600
DELAY_KEYS = ("seconds", "until", "until_local_time")

_LOCAL_TIME = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d", re.ASCII)


def _is_delay_seconds(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and 0 < value <= MAX_DELAY_SECONDS


def _is_aware_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _is_local_time(value: Any) -> bool:
    return isinstance(value, str) and _LOCAL_TIME.fullmatch(value) is not None


_DELAY_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seconds": (_is_delay_seconds, f"must be a number above 0 and at most {MAX_DELAY_SECONDS}"),
    "until": (_is_aware_datetime, "must be an ISO 8601 datetime with a UTC offset"),
    "until_local_time": (_is_local_time, "must be a 24-hour time as HH:MM"),
}


def check(data: dict) -> list[str]:
    """Require exactly one way of saying how long to wait, and a valid value for it."""
    given = [key for key in DELAY_KEYS if key in data]
    if len(given) != 1:
        return ["delay needs exactly one of data.seconds, data.until, data.until_local_time"]
    key = given[0]
    valid, message = _DELAY_CHECKS[key]
    return [] if valid(data[key]) else [f"delay data.{key} {message}"]


def run(node: dict, context: dict, execution: Any) -> Result:
    """Set a durable timer, or go straight on when the moment has passed."""
    data = data_of(node)
    now = timezone.now()
    if "seconds" in data:
        wake = now + timedelta(seconds=float(data["seconds"]))
    elif "until" in data:
        wake = datetime.fromisoformat(str(data["until"]).replace("Z", "+00:00"))
    else:
        wake = next_local_time(str(data["until_local_time"]), context, execution, now)
    if wake <= now:
        return Result(output={"waited_until": wake.isoformat(), "skipped": True})
    return Result(wait=True, wake_at=wake, output={"until": wake.isoformat()})


def next_local_time(hhmm: str, context: dict, execution: Any, now: datetime) -> datetime:
    """Return the next moment the contact's clock (else the workspace's) shows hh:mm."""
    name = context["contact"].get("timezone") or execution.workspace.timezone or "UTC"
    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("UTC")
    hour, minute = (int(part) for part in hhmm.split(":"))
    local_now = now.astimezone(zone)
    candidate = datetime.combine(local_now.date(), time(hour, minute), tzinfo=zone)
    if candidate <= local_now:
        candidate = datetime.combine(local_now.date() + timedelta(days=1), time(hour, minute),
                                     tzinfo=zone)
    return candidate


def dry_run(node: dict, context: dict, events: list[str]) -> Preview:
    """Skip the wait and show what it was configured as."""
    data = data_of(node)
    return Preview(output={"skipped_delay": {k: v for k, v in data.items() if k in DELAY_KEYS}})


DELAY = NodeType(name="delay", check=check, run=run, dry_run=dry_run, pauses=True)
