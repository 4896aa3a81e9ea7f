"""Fixtures shared by the provider tests."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from messaging.providers.base import Outbound


def build_outbound(**overrides: Any) -> Outbound:
    """Return an Outbound with sensible test values, overridden by keyword."""
    values: dict[str, Any] = {
        "message_id": "msg-0001",
        "workspace_id": "ws-1",
        "channel": "sms",
        "to": "+14155550100",
        "content": {"body": "Hello"},
        "config": {},
        "contact_id": "contact-1",
    }
    values.update(overrides)
    return Outbound(**values)


@pytest.fixture
def make_outbound() -> Callable[..., Outbound]:
    """Return a builder of Outbound values for provider tests."""
    return build_outbound
