"""A generic HTTP email API: POST <api_url>/api/email/send with a JSON body.

Config: api_url, api_key (sent as a Bearer token when set), from_email. The contactId and
workspaceId fields are those of shared.contact_fields; `headers` ({name: value}, present
only when there are any: List-Unsubscribe on marketing email) go on the mail as given.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings

from messaging.providers import http
from messaging.providers.base import Outbound, ProviderError, Receipt
from messaging.providers.shared import answer_id, auth_headers, contact_fields, email_text


class HttpEmailProvider:
    """Send email through a generic JSON HTTP API."""

    name = "http"

    @staticmethod
    def defaults() -> dict[str, Any]:
        """Return the environment's HTTP email settings (a workspace may override them)."""
        return {"api_url": settings.EMAIL_API_URL, "api_key": settings.EMAIL_API_KEY,
                "from_email": settings.EMAIL_FROM}

    def send(self, outbound: Outbound) -> Receipt:
        """POST the email to <api_url>/api/email/send; raise ProviderError on any failure."""
        config, content = outbound.config, outbound.content
        api_url = config.get("api_url") or ""
        if not api_url:
            raise ProviderError("http email: api_url is required", permanent=True,
                                code="config")
        payload = {
            "to": outbound.to,
            "from": config.get("from_email") or "",
            "subject": content.get("subject") or "",
            "html": content.get("html") or "",
            "text": email_text(content),
            "messageId": outbound.message_id,
            **contact_fields(outbound),
        }
        if outbound.headers:  # e.g. List-Unsubscribe, for the API to put on the mail as is
            payload["headers"] = dict(outbound.headers)
        response = http.request("POST", f"{api_url.rstrip('/')}/api/email/send",
                                guarded=False,  # operator-configured host
                                json=payload, headers=auth_headers(outbound))
        http.raise_for_response(response)
        body = http.excerpt(response)
        return Receipt(provider_message_id=answer_id(body),
                       status_code=response.status_code, response=body)
