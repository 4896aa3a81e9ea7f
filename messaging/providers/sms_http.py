"""A generic HTTP SMS API for sms and mms: POST <api_url>/send-sms with a JSON body.

Config: api_url, api_key (sent as a Bearer token when set). Body: to, message, contactId,
workspaceId, mediaUrl, mediaUrls (see shared.contact_fields for whose ids those are), and
metadata: the sender's own, as the older queue service passed a job's metadata on (the
service's reserved keys left out).
"""
from __future__ import annotations

from typing import Any

from django.conf import settings

from messaging.models import metadata_public
from messaging.providers import http
from messaging.providers.base import Outbound, ProviderError, Receipt
from messaging.providers.shared import (
    answer_id,
    auth_headers,
    contact_fields,
    media_urls,
    sms_body,
)


class HttpSmsProvider:
    """Send SMS/MMS through a generic JSON HTTP API."""

    name = "http"

    @staticmethod
    def defaults() -> dict[str, Any]:
        """Return the environment's HTTP SMS settings (a workspace may override them)."""
        return {"api_url": settings.SMS_API_URL, "api_key": settings.SMS_API_KEY}

    def send(self, outbound: Outbound) -> Receipt:
        """POST the message to <api_url>/send-sms; raise ProviderError on any failure."""
        api_url = outbound.config.get("api_url") or ""
        if not api_url:
            raise ProviderError("http sms: api_url is required", permanent=True, code="config")
        urls = media_urls(outbound.content)
        payload = {
            "to": outbound.to,
            "message": sms_body(outbound.content),
            **contact_fields(outbound),
            "mediaUrl": urls[0] if urls else None,
            "mediaUrls": urls,
            "metadata": metadata_public(outbound.metadata),
        }
        response = http.request("POST", f"{api_url.rstrip('/')}/send-sms",
                                guarded=False,  # operator-configured host
                                json=payload, headers=auth_headers(outbound))
        http.raise_for_response(response)
        body = http.excerpt(response)
        return Receipt(provider_message_id=answer_id(body), status_code=response.status_code,
                       response=body)
