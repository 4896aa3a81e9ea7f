"""A real SMTP server on 127.0.0.1 (aiosmtpd) for the tests that send email."""
from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiosmtpd.controller import Controller


class RecordingHandler:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(handler: Any) -> Iterator[int]:
    """Run an SMTP server with the handler on a free port; yield the port."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def smtp_settings(port: int) -> dict[str, Any]:
    """Return a workspace's email provider settings for the server on this port."""
    return {"name": "smtp", "host": "127.0.0.1", "port": port, "username": "", "password": "",
            "use_tls": False, "use_ssl": False, "timeout": 5,
            "from_email": "Relay <noreply@relay.example>"}
