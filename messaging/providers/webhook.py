"""Outbound webhooks signed per Standard Webhooks (https://www.standardwebhooks.com/).

Config: secrets (the workspace's current and, while rotating, previous "whsec_" secret).
Content: {"url", "payload", "headers" (optional user headers)}.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta
from typing import Any

import requests

from messaging.providers import http
from messaging.providers.base import Outbound, ProviderError, Receipt
from messaging.providers.shared import CALLBACK_SHAPE_FIELD, JOB_SHAPES

# Headers the signature and the body depend on: a user header must never replace them.
RESERVED_HEADERS = {"content-type", "content-length", "host", "transfer-encoding",
                    "idempotency-key"}
# Metadata naming the event a delivery carries: its webhook-id (messaging.events writes it).
EVENT_ID_FIELD = "_event_id"
# Receivers are untrusted: their answers are not worth storing in full.
RESPONSE_EXCERPT_BYTES = 2000
# Request mistakes that fail the same way on every attempt.
INVALID_REQUEST = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                   requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader)


def secret_key(secret: str) -> bytes:
    """Return the HMAC key of a "whsec_<base64>" secret."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return "v1,<base64 HMAC-SHA256 of '{msg_id}.{timestamp}.' + body>"."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signing_secrets(current: str, previous: str, rotated_at: datetime | None,
                    now: datetime, overlap: timedelta) -> list[str]:
    """Return the secrets that sign now: the current one, plus the previous one for
    `overlap` after a rotation (receivers switch over without dropping a delivery)."""
    keep_previous = bool(previous) and (rotated_at is None or now - rotated_at < overlap)
    return [current, previous] if keep_previous else [current]


def signature_header(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the webhook-signature value: one space-separated signature per secret."""
    unique = dict.fromkeys(secret for secret in secrets if secret)
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in unique)


def user_headers(headers: Any) -> dict[str, str]:
    """Return the user's headers minus those the signature or body depend on."""
    if not isinstance(headers, dict):
        return {}
    return {str(name): str(value) for name, value in headers.items()
            if str(name).lower() not in RESERVED_HEADERS
            and not str(name).lower().startswith("webhook-")}


def post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    """POST through the SSRF guard; a refused or malformed URL is a permanent failure (the
    helper already turns a refused URL into one)."""
    try:
        return http.request("POST", url, guarded=True, data=body, headers=headers)
    except INVALID_REQUEST as exc:
        raise ProviderError(f"webhook: invalid request: {exc}", permanent=True,
                            code="invalid_request") from exc


def _explained(error: ProviderError, outbound: Outbound) -> ProviderError:
    """Return the error, saying so when a job's callback refused the body with 400: an older
    CRM answers 400 to a shape it cannot read, and retrying the same body cannot help, so it
    still fails for good, but the dead letter names the cause and the way out."""
    shape = outbound.metadata.get(CALLBACK_SHAPE_FIELD)
    if error.status_code != 400 or shape not in JOB_SHAPES:
        return error
    other = "flat" if shape == "job" else "job"
    error.message = (
        f"callback_shape: the callback answered 400 to the {shape} body {JOB_SHAPES[shape]}; "
        f"if it cannot read that shape, send callbackShape \"{other}\" or set the workspace "
        f"setting compat_callback_shape to \"{other}\", then replay. {error.message}")
    error.args = (error.message,)
    error.code = "callback_shape"
    return error


class WebhookProvider:
    """POST a signed JSON payload to a workspace's URL, through the SSRF guard."""

    name = "webhook"

    def send(self, outbound: Outbound) -> Receipt:
        """Deliver the webhook; 2xx is success, anything else raises ProviderError."""
        url = str(outbound.content.get("url") or "")
        if not url:
            raise ProviderError("webhook: no url", permanent=True, code="invalid_request")
        # Serialise once and sign exactly the bytes that are sent.
        body = json.dumps(outbound.content.get("payload"), separators=(",", ":"),
                          ensure_ascii=False).encode()
        try:
            headers = self.headers(outbound, body)
        except ValueError as exc:  # binascii.Error: a secret that is not base64
            raise ProviderError(f"webhook: bad signing secret: {exc}", permanent=True,
                                code="config") from exc
        response = post(url, body, headers)
        try:
            http.raise_for_response(response)
        except ProviderError as exc:
            raise _explained(exc, outbound) from None
        return Receipt(provider_message_id=outbound.message_id,
                       status_code=response.status_code,
                       response=http.excerpt(response, RESPONSE_EXCERPT_BYTES))

    @staticmethod
    def headers(outbound: Outbound, body: bytes) -> dict[str, str]:
        """Return the user's headers plus the Standard Webhooks and idempotency headers."""
        timestamp = int(time.time())
        secrets = [secret for secret in outbound.config.get("secrets") or [] if secret]
        if not secrets:
            # Fail closed: receivers must be able to trust every delivery is signed.
            raise ProviderError("webhook: no signing secret", permanent=True, code="config")
        headers = user_headers(outbound.content.get("headers"))
        # An event delivery is identified by its event (a replay or a second endpoint
        # carries the same id), so receivers can deduplicate.
        webhook_id = str(outbound.metadata.get(EVENT_ID_FIELD) or outbound.message_id)
        headers.update({
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "Idempotency-Key": outbound.message_id,
        })
        headers["webhook-signature"] = signature_header(secrets, webhook_id, timestamp, body)
        return headers
