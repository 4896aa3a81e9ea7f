"""SMTP for email, through Django's SMTP backend.

Config: host, port, username, password, use_tls, use_ssl, timeout, from_email.
Content: {"subject", "html", "text"}; the text part is derived from the HTML when missing.
"""
from __future__ import annotations

import contextlib
import smtplib
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.smtp import EmailBackend

from messaging.providers.base import Outbound, ProviderError, Receipt
from messaging.providers.shared import email_text


class SmtpProvider:
    """Send email over SMTP (text with an HTML alternative)."""

    name = "smtp"

    @staticmethod
    def defaults() -> dict[str, Any]:
        """Return the environment's SMTP settings (a workspace may override them)."""
        return {"host": settings.EMAIL_HOST, "port": settings.EMAIL_PORT,
                "username": settings.EMAIL_HOST_USER, "password": settings.EMAIL_HOST_PASSWORD,
                "use_tls": settings.EMAIL_USE_TLS, "use_ssl": settings.EMAIL_USE_SSL,
                "timeout": settings.EMAIL_TIMEOUT, "from_email": settings.EMAIL_FROM}

    def send(self, outbound: Outbound) -> Receipt:
        """Send the email; raise ProviderError classified by where and how SMTP failed."""
        if not outbound.to:
            raise ProviderError("smtp: no recipient", permanent=True, code="invalid_address")
        message_id = make_message_id(outbound)
        message = build_message(outbound, message_id)
        backend = connect(outbound.config)
        try:
            data_started = watch_data(backend)
            try:
                backend.send_messages([message])
            except (OSError, ValueError) as exc:
                raise classify(exc, data_started=data_started[0]) from exc
        finally:
            close_quietly(backend)
        return Receipt(provider_message_id=message_id, status_code=250)


def make_message_id(outbound: Outbound) -> str:
    """Return the Message-ID header value: <message id@domain of the sender>."""
    address = parseaddr(str(outbound.config.get("from_email") or ""))[1]
    domain = address.rpartition("@")[2] or "localhost"
    return f"<{outbound.message_id}@{domain}>"


def build_message(outbound: Outbound, message_id: str) -> EmailMultiAlternatives:
    """Return the Django email: text body, the HTML as a text/html alternative."""
    content = outbound.content
    message = EmailMultiAlternatives(
        subject=str(content.get("subject") or ""),
        body=email_text(content),
        from_email=outbound.config.get("from_email") or None,
        to=[outbound.to],
        headers={**outbound.headers, "Message-ID": message_id,
                 "X-Message-Id": outbound.message_id},
    )
    if content.get("html"):
        message.attach_alternative(str(content["html"]), "text/html")
    return message


def connect(config: dict[str, Any]) -> EmailBackend:
    """Open an SMTP connection from the config; failures here sent nothing (transient)."""
    try:
        backend = EmailBackend(
            host=config.get("host") or "localhost",
            port=int(config.get("port") or 25), username=config.get("username") or "",
            password=config.get("password") or "", use_tls=bool(config.get("use_tls")),
            use_ssl=bool(config.get("use_ssl")),
            # No timeout would let a silent server hold the worker forever.
            timeout=config.get("timeout") or settings.PROVIDER_TIMEOUT_SECONDS,
            fail_silently=False,
        )
    except (TypeError, ValueError) as exc:  # e.g. use_tls with use_ssl, a non-numeric port
        raise ProviderError(f"smtp: bad configuration: {exc}", permanent=True,
                            code="config") from exc
    try:
        backend.open()
    except OSError as exc:
        close_quietly(backend)
        raise classify(exc, data_started=False) from exc
    return backend


def watch_data(backend: EmailBackend) -> list[bool]:
    """Return a flag that turns true once the DATA command is sent on this connection.

    smtplib cannot say where a dropped connection failed; after DATA the server may
    already have accepted the message, so the outcome is then unknown (not retry-safe).
    """
    started = [False]
    connection = backend.connection
    if connection is None:  # connect() opened it; a closed backend has nothing to watch
        raise ProviderError("smtp: connection closed before sending", permanent=False,
                            code="connection")
    original = connection.data

    def data(msg: Any) -> Any:
        started[0] = True
        return original(msg)

    connection.data = data  # type: ignore[method-assign]  # wrapped to see DATA go out
    return started


def close_quietly(backend: EmailBackend) -> None:
    """Close the connection; a failing QUIT does not change the outcome of the send."""
    # smtplib.SMTPException is an OSError.
    with contextlib.suppress(OSError):
        backend.close()


def classify(exc: Exception, *, data_started: bool) -> ProviderError:
    """Return the ProviderError for an SMTP failure: 5xx permanent, 4xx transient."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        # Retry only when some refusal was temporary (4xx); 5xx for all is final.
        permanent = bool(codes) and all(code >= 500 for code in codes)
        return ProviderError(f"smtp recipients refused: {exc.recipients}", permanent=permanent,
                             status_code=max(codes, default=None), code="recipients_refused")
    if isinstance(exc, smtplib.SMTPResponseException):
        return ProviderError(f"smtp {exc.smtp_code}: {exc.smtp_error!r}",
                             permanent=exc.smtp_code >= 500, status_code=exc.smtp_code,
                             code=type(exc).__name__)
    if isinstance(exc, ValueError):
        return ProviderError(f"smtp: {exc}", permanent=True, code="invalid_message")
    if isinstance(exc, smtplib.SMTPServerDisconnected | TimeoutError) and data_started:
        return ProviderError(f"smtp disconnected after DATA: {exc}", permanent=False,
                             outcome_unknown=True, code="disconnected")
    return ProviderError(f"smtp: {exc}", permanent=False, code=type(exc).__name__)
