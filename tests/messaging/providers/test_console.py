from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from messaging.providers.base import Outbound
from messaging.providers.console import ConsoleProvider


def test_console_logs_and_returns_a_console_id(
        make_outbound: Callable[..., Outbound], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="messaging.console"):
        receipt = ConsoleProvider().send(make_outbound(message_id="m-42"))

    assert receipt.provider_message_id == "console-m-42"
    assert any(record.name == "messaging.console" and "+14155550100" in record.getMessage()
               for record in caplog.records)
