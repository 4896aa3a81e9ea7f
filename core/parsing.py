"""Parsers for the texts workspace settings and the environment hold: rates ("5/s"),
frequency caps ("3/day") and clock times ("21:00").

They are pure (no Django, no Redis), so core's settings checks, messaging's rate limiter,
caps and policy all read a text the same way, and a value the admin page or the API
accepts is one the pipeline can use.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import time
from typing import Any

# Units accepted after the "/" of a rate, in seconds.
_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}
_RATE_RE = re.compile(
    r"""^\s*(?P<count>\d+)\s*/\s*(?P<mult>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)
        (?:\s+burst\s*[=:]?\s*(?P<burst>\d+))?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


@dataclass(frozen=True)
class Rate:
    """A rate of `count` events per `period` seconds, `burst` of which may go back to back."""

    count: int
    period: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"rate count must be at least 1, got {self.count}")
        if not self.period > 0:
            raise ValueError(f"rate period must be positive, got {self.period}")
        if self.burst < 1:
            raise ValueError(f"rate burst must be at least 1, got {self.burst}")

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse "5/s", "20/min", "100/m", "1000/h", "10/2s" or "5/s burst 5" into a Rate."""
        match = _RATE_RE.match(text or "")
        if match is None:
            raise ValueError(
                f"malformed rate {text!r}: expected '<count>/[<n>]<unit> [burst <n>]' such as "
                f"'5/s', '20/min', '10/2s' or '5/s burst 5'"
            )
        unit = match["unit"].lower()
        if unit not in _UNITS:
            raise ValueError(
                f"malformed rate {text!r}: unknown unit {match['unit']!r} "
                f"(use ms, s, min/m, h or d)"
            )
        multiplier = float(match["mult"]) if match["mult"] else 1.0
        burst = int(match["burst"]) if match["burst"] else 1
        try:
            return cls(count=int(match["count"]), period=multiplier * _UNITS[unit], burst=burst)
        except ValueError as exc:
            raise ValueError(f"malformed rate {text!r}: {exc}") from None

    @property
    def interval_us(self) -> int:
        """Return the spacing between events in whole microseconds, rounded up."""
        # Rounding up keeps the real rate at or under the configured one; the epsilon stops
        # float noise (e.g. 100000.00000000001) from adding a microsecond to exact rates.
        return max(1, math.ceil(self.period * 1_000_000 / self.count - 1e-6))


# Units of a frequency cap's window, in seconds.
_CAP_UNITS = {"m": 60, "min": 60, "minute": 60, "minutes": 60,
              "h": 3600, "hour": 3600, "hours": 3600,
              "d": 86400, "day": 86400, "days": 86400,
              "w": 604800, "week": 604800, "weeks": 604800}
_CAP_RE = re.compile(r"^\s*(?P<count>\d+)\s*/\s*(?P<mult>\d+)?\s*(?P<unit>[a-z]+)\s*$",
                     re.IGNORECASE)


@dataclass(frozen=True)
class Cap:
    """At most `count` messages per `period` seconds."""

    count: int
    period: int

    @classmethod
    def parse(cls, text: str) -> Cap:
        """Parse "3/day", "10/week", "2/12h" or "5/hour"; raise ValueError otherwise."""
        match = _CAP_RE.match(text) if isinstance(text, str) else None
        unit = _CAP_UNITS.get(match.group("unit").lower()) if match else None
        if match is None or unit is None:
            raise ValueError(f"{text!r} is not a cap such as '3/day', '10/week' or '2/12h'")
        count, mult = int(match.group("count")), int(match.group("mult") or 1)
        if count < 1 or mult < 1:
            raise ValueError(f"{text!r}: the count and the period must be at least 1")
        return cls(count=count, period=unit * mult)


def parse_clock(text: Any) -> time:
    """Parse "HH:MM" (24-hour) into a time; raise ValueError otherwise."""
    if not (isinstance(text, str) and len(text) == 5 and text[2] == ":"
            and text[:2].isdigit() and text[3:].isdigit()):
        raise ValueError(f"{text!r} is not a time of day as HH:MM")
    hours, minutes = int(text[:2]), int(text[3:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day as HH:MM (00:00 to 23:59)")
    return time(hours, minutes)
