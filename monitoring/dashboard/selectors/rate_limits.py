"""Reads behind the rate-limits page: deferrals per channel and readable recent events."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from messaging.channels import CHANNEL_QUEUES
from monitoring.dashboard import charts
from monitoring.dashboard.selectors.common import format_seconds

# One colour per channel queue, in the channel table's order (grey for anything else).
CHANNEL_COLORS = dict(zip(CHANNEL_QUEUES, ("#2563eb", "#7c3aed", "#0891b2", "#ea580c", "#16a34a"),
                          strict=False))


def epoch_to_datetime(value: Any) -> datetime | None:
    """Return an aware datetime from epoch seconds (None when not a number)."""
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


@dataclass(frozen=True)
class DeferralEvent:
    when: datetime | None
    channel: str
    delay: str


def rate_limit_panels(counts: dict[str, int], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the rate-limit page's bar chart, totals and readable event rows."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    bars = charts.bars_svg([charts.Slice(channel, count, CHANNEL_COLORS.get(channel, "#64748b"))
                            for channel, count in ordered], label="Deferrals per channel")
    rows = [DeferralEvent(epoch_to_datetime(event.get("ts")), str(event.get("channel", "")),
                          format_seconds(_float_or_none(event.get("delay"))))
            for event in events if isinstance(event, dict)]
    return {"counts": ordered, "total": sum(counts.values()), "bars": bars, "events": rows}


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
