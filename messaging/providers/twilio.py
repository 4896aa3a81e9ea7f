"""Twilio Programmable Messaging for sms and mms, plus Twilio's webhook signature check.

Config: account_sid, auth_token, from_number or messaging_service_sid, api_base,
public_base_url (status callbacks are requested only when it is set).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from django.conf import settings

from messaging.providers import http
from messaging.providers.base import Outbound, ProviderError, Receipt
from messaging.providers.shared import media_urls, sms_body

# Twilio MessageStatus -> our delivery status; unlisted values (accepted, scheduled, ...)
# say nothing new, so the caller ignores them.
STATUS_MAP: dict[str, str] = {
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "undelivered",
}

# Twilio error codes (https://www.twilio.com/docs/api/errors) whose retry outcome we know,
# as code -> permanent. Codes not listed fall back to the HTTP status rules.
ERROR_CODES: dict[int, bool] = {
    20003: True,  # authentication failed: retrying with the same credentials cannot work
    20404: True,  # account or resource not found: a configuration error
    21211: True,  # invalid To number: the same number stays invalid
    21408: True,  # sending to this region is not enabled on the account
    21606: True,  # From is not an SMS-capable number of this account
    21610: True,  # recipient replied STOP: sending again is refused (and not allowed)
    21612: True,  # no route between From and To
    21614: True,  # To is not a mobile number: it cannot receive SMS
    21617: True,  # body too long: the same body stays too long
    20429: False,  # too many concurrent requests: back off and retry
    20500: False,  # Twilio internal error
    20503: False,  # Twilio temporarily unavailable
}
# Error codes meaning the recipient opted out at Twilio: the address goes on the suppression
# list, so later messages are suppressed before any provider call.
OPTED_OUT_CODES = frozenset({21610})


class TwilioProvider:
    """Send SMS/MMS through Twilio's Messages API."""

    name = "twilio"

    @staticmethod
    def defaults() -> dict[str, Any]:
        """Return the environment's Twilio settings (a workspace may override them)."""
        return {"account_sid": settings.TWILIO_ACCOUNT_SID,
                "auth_token": settings.TWILIO_AUTH_TOKEN,
                "from_number": settings.TWILIO_FROM_NUMBER,
                "messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID,
                "api_base": settings.TWILIO_API_BASE,
                "public_base_url": settings.PUBLIC_BASE_URL}

    def send(self, outbound: Outbound) -> Receipt:
        """Create the Twilio message; raise ProviderError on any failure."""
        config = outbound.config
        sid, token = config.get("account_sid") or "", config.get("auth_token") or ""
        if not sid or not token:
            raise ProviderError("twilio: account_sid and auth_token are required",
                                permanent=True, code="config")
        base = (config.get("api_base") or "https://api.twilio.com").rstrip("/")
        response = http.request(
            "POST", f"{base}/2010-04-01/Accounts/{quote(sid, safe='')}/Messages.json",
            guarded=False,  # the operator configures this host, not a tenant
            data=form_fields(outbound), auth=(sid, token),
            headers={"Idempotency-Key": outbound.key,
                     "I-Twilio-Idempotency-Token": outbound.key},
        )
        check(response)
        body = http.excerpt(response)
        message_sid = body.get("sid", "") if isinstance(body, dict) else ""
        return Receipt(provider_message_id=message_sid or "", status_code=response.status_code,
                       response=body)


def form_fields(outbound: Outbound) -> list[tuple[str, str]]:
    """Return the form fields of a Messages.json create, MediaUrl repeated per URL."""
    config = outbound.config
    fields = [("To", outbound.to)]
    if config.get("messaging_service_sid"):
        fields.append(("MessagingServiceSid", config["messaging_service_sid"]))
    elif config.get("from_number"):
        fields.append(("From", config["from_number"]))
    else:
        raise ProviderError("twilio: from_number or messaging_service_sid is required",
                            permanent=True, code="config")
    fields.append(("Body", sms_body(outbound.content)))
    fields.extend(("MediaUrl", url) for url in media_urls(outbound.content))
    public = (config.get("public_base_url") or "").rstrip("/")
    if public:
        callback = (f"{public}/api/v1/providers/twilio/status"
                    f"?message_id={quote(outbound.message_id, safe='')}")
        fields.append(("StatusCallback", callback))
    return fields


def check(response: requests.Response) -> None:
    """Raise ProviderError for a Twilio error answer, classified by its error code."""
    try:
        http.raise_for_response(response)
    except ProviderError as error:
        body = error.response if isinstance(error.response, dict) else {}
        code = body.get("code")
        if isinstance(code, int):
            error.code = str(code)
            error.permanent = ERROR_CODES.get(code, error.permanent)
            error.suppress_address = code in OPTED_OUT_CODES
            if body.get("message"):
                error.message = f"twilio {code}: {body['message']}"
                error.args = (error.message,)
        raise


def compute_signature(auth_token: str, url: str, params: dict[str, str | list[str]]) -> str:
    """Return Twilio's X-Twilio-Signature for a request: base64 HMAC-SHA1 of the URL
    followed by every POST parameter name and value, sorted by name (then value)."""
    data = url
    for name in sorted(params):
        values = params[name]
        for value in sorted([values] if isinstance(values, str) else values):
            data += name + value
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> list[str]:
    """Return the URL as given, without and with its default port.

    Twilio signs the URL it called, which may or may not carry the port a proxy adds or
    removes; Twilio's own validators accept either form, and so do we.
    """
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    bare = urlunsplit(parts._replace(netloc=f"{prefix}{host}"))
    with_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{parts.port or default}"))
    return list(dict.fromkeys([url, bare, with_port]))


def validate_signature(auth_token: str, url: str, params: dict[str, str | list[str]],
                       signature: str) -> bool:
    """Return whether `signature` (X-Twilio-Signature) matches this URL and POST params."""
    if not auth_token or not signature:
        return False
    expected = signature.strip().encode()
    # Compare every variant (no early exit) so timing does not depend on which matched.
    matches = [hmac.compare_digest(compute_signature(auth_token, variant, params).encode(),
                                   expected) for variant in url_variants(url)]
    return any(matches)

