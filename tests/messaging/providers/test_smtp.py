"""The SMTP provider against a real local SMTP server (aiosmtpd)."""
from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from messaging.providers.base import Outbound, ProviderError
from messaging.providers.smtp import SmtpProvider
from tests.support.smtp_server import free_port, running


class Handler:
    """Accept mail, except: gone@ is refused at RCPT (550), later@ gets 451 and reject@
    gets 554 at the end of DATA, and vanish@ has the connection closed instead of a reply."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("gone@"):
            return "550 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        recipient = envelope.rcpt_tos[0]
        if recipient.startswith("later@"):
            return "451 try later"
        if recipient.startswith("reject@"):
            return "554 message refused"
        self.received.append(envelope.content)
        if recipient.startswith("vanish@"):
            server.transport.close()
        return "250 Message accepted"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Handler, int]]:
    """Run a real SMTP server on 127.0.0.1; yield its handler and port."""
    handler = Handler()
    with running(handler) as port:
        yield handler, port


def smtp_config(port: int) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "username": "", "password": "",
            "use_tls": False, "use_ssl": False, "timeout": 5,
            "from_email": "Relay <noreply@relay.example>"}


def email_outbound(make_outbound: Callable[..., Outbound], port: int, to: str,
                   **content: str) -> Outbound:
    content = content or {"subject": "Welcome", "html": "<p>Hello <b>Ann</b></p>",
                          "text": "Hello Ann"}
    return make_outbound(channel="email", to=to, content=content, config=smtp_config(port))


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_sends_multipart_alternative_with_message_id(
        smtp_server: tuple[Handler, int], make_outbound: Callable[..., Outbound]) -> None:
    handler, port = smtp_server

    receipt = SmtpProvider().send(email_outbound(make_outbound, port, "ann@example.com"))

    [raw] = handler.received
    message = parse(raw)
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "Welcome"
    assert message["To"] == "ann@example.com"
    assert message["Message-ID"] == "<msg-0001@relay.example>"
    assert message["X-Message-Id"] == "msg-0001"
    parts = {part.get_content_type(): part.get_content().strip() for part in message.iter_parts()}
    assert parts == {"text/plain": "Hello Ann", "text/html": "<p>Hello <b>Ann</b></p>"}
    assert receipt.provider_message_id == "<msg-0001@relay.example>"


def test_text_part_is_derived_from_html_when_missing(
        smtp_server: tuple[Handler, int], make_outbound: Callable[..., Outbound]) -> None:
    handler, port = smtp_server

    SmtpProvider().send(email_outbound(make_outbound, port, "ann@example.com",
                                       subject="S", html="<h1>Title</h1><p>Body &amp; more</p>"))

    message = parse(handler.received[0])
    text = message.get_body(preferencelist=("plain",)).get_content().strip()
    assert text.splitlines() == ["Title", "Body & more"]


@pytest.mark.parametrize(("to", "permanent", "status"), [
    ("gone@example.com", True, 550),  # refused at RCPT
    ("reject@example.com", True, 554),  # refused after DATA
    ("later@example.com", False, 451),  # temporary refusal
])
def test_refusals_map_by_smtp_code(
        smtp_server: tuple[Handler, int], make_outbound: Callable[..., Outbound], to: str,
        permanent: bool, status: int) -> None:
    _, port = smtp_server

    with pytest.raises(ProviderError) as caught:
        SmtpProvider().send(email_outbound(make_outbound, port, to))

    assert caught.value.permanent is permanent
    assert caught.value.status_code == status
    assert caught.value.outcome_unknown is False


def test_disconnect_after_data_leaves_the_outcome_unknown(
        smtp_server: tuple[Handler, int], make_outbound: Callable[..., Outbound]) -> None:
    handler, port = smtp_server

    with pytest.raises(ProviderError) as caught:
        SmtpProvider().send(email_outbound(make_outbound, port, "vanish@example.com"))

    assert handler.received  # the server did get the message
    assert caught.value.permanent is False
    assert caught.value.outcome_unknown is True


def test_connection_refused_is_transient_and_nothing_was_sent(
        make_outbound: Callable[..., Outbound]) -> None:
    with pytest.raises(ProviderError) as caught:
        SmtpProvider().send(email_outbound(make_outbound, free_port(), "ann@example.com"))

    assert caught.value.permanent is False
    assert caught.value.outcome_unknown is False


def test_header_injection_in_the_subject_is_permanent(
        smtp_server: tuple[Handler, int], make_outbound: Callable[..., Outbound]) -> None:
    handler, port = smtp_server

    with pytest.raises(ProviderError) as caught:
        SmtpProvider().send(email_outbound(make_outbound, port, "ann@example.com",
                                           subject="Hi\nBcc: eve@example.com", text="x"))

    assert caught.value.permanent is True
    assert handler.received == []


def test_tls_with_ssl_is_a_permanent_configuration_error(
        make_outbound: Callable[..., Outbound]) -> None:
    outbound = email_outbound(make_outbound, 25, "ann@example.com")
    outbound.config.update(use_tls=True, use_ssl=True)

    with pytest.raises(ProviderError) as caught:
        SmtpProvider().send(outbound)

    assert (caught.value.permanent, caught.value.code) == (True, "config")
