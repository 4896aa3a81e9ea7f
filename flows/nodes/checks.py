"""Predicates the node types' schema checks share."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

# The longest duration a setting may give (an attribution window, a send's outcome
# timeout): a year, like the longest delay.
MAX_DURATION_SECONDS = 366 * 24 * 3600
_DURATION = re.compile(r"([1-9]\d{0,8})([smhd])", re.ASCII)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_HELP = ('a duration like "30s", "10m", "12h" or "7d", or whole seconds, at most '
                 f"{MAX_DURATION_SECONDS}")
# Whitespace and control characters make URL parsers disagree about the host.
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


def is_str(value: Any) -> bool:
    """Return True for any string (empty ones too)."""
    return isinstance(value, str)


def is_text(value: Any) -> bool:
    """Return True for a string with something besides whitespace."""
    return isinstance(value, str) and bool(value.strip())


def is_url(value: Any, schemes: tuple[str, ...] = ("http", "https")) -> bool:
    """Return True for a URL with one of the schemes and a host that parsers agree on."""
    if not isinstance(value, str) or _URL_UNSAFE.search(value):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme in schemes and bool(parts.hostname)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return False


def optional(data: dict, key: str, check: Callable[[Any], bool], message: str) -> list[str]:
    """Return [message] when the optional key is present with a value failing the check."""
    return [message] if key in data and not check(data[key]) else []


def duration_seconds(value: Any) -> int | None:
    """Return the seconds of a duration ("10m", "7d" or whole seconds); None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    else:
        return None
    return seconds if 0 < seconds <= MAX_DURATION_SECONDS else None
