"""Predicates the node types' schema checks share."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

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
