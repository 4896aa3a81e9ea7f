"""Helpers the provider modules share: content fields, JSON answers, auth headers.

Content shapes (rendered before a provider sees them):
  sms/mms: {"body": str, "media_urls": [str, ...]}  ("text" is accepted for "body")
  email:   {"subject": str, "html": str, "text": str}
"""
from __future__ import annotations

import html
import re
from typing import Any

from messaging.providers.base import Outbound

# Message metadata key holding the ids an older-endpoint client sent ({"contactId",
# "workspaceId"}, as sent): only the older endpoints may write it (the composer refuses it
# from anyone else), and its presence marks a message that came through them.
COMPAT_IDS = "_compat"
# Metadata asking for another callback body than today's: the older AI queue's (ai_response,
# sms) for an AI reply, the older engine's for a schedule-job callback (job, job_flat). Only
# the older endpoints write it; the webhook provider reads it to explain a 400 (below).
CALLBACK_SHAPE_FIELD = "_callback_shape"
JOB_SHAPES = {"job": "{jobId, type, data}",
              "job_flat": "{jobId, result, nodeId, executionId, flowId, contactId, workspaceId}"}

_BLOCK_END = re.compile(r"(?i)<\s*(br\s*/?|/p|/div|/li|/tr|/h[1-6])\s*>")
_DROPPED = re.compile(r"(?is)<(script|style|head)\b.*?</\1\s*>")
_TAG = re.compile(r"(?s)<[^>]+>")


def sms_body(content: dict[str, Any]) -> str:
    """Return the text of an SMS/MMS."""
    return str(content.get("body") or content.get("text") or "")


def media_urls(content: dict[str, Any]) -> list[str]:
    """Return the MMS media URLs, tolerating a single string."""
    urls = content.get("media_urls") or []
    if isinstance(urls, str):
        return [urls]
    return [str(url) for url in urls if url]


def html_to_text(markup: str) -> str:
    """Return a readable plain-text version of an HTML body (for the text/plain part)."""
    text = _DROPPED.sub("", markup)
    # Keep paragraph and line breaks; otherwise the whole mail collapses into one line.
    text = _BLOCK_END.sub("\n", text)
    text = html.unescape(_TAG.sub("", text))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def email_text(content: dict[str, Any]) -> str:
    """Return the plain-text body: the given text, else one derived from the HTML."""
    return str(content.get("text") or html_to_text(str(content.get("html") or "")))


def answer_id(body: Any) -> str:
    """Return the provider's message id from a JSON answer (id, messageId or sid)."""
    if not isinstance(body, dict):
        return ""
    return str(body.get("id") or body.get("messageId") or body.get("sid") or "")


def auth_headers(outbound: Outbound) -> dict[str, str]:
    """Return the Idempotency-Key header, plus the Bearer token when an api_key is set."""
    headers = {"Idempotency-Key": outbound.key}
    if outbound.config.get("api_key"):
        headers["Authorization"] = f"Bearer {outbound.config['api_key']}"
    return headers


def contact_fields(outbound: Outbound) -> dict[str, Any]:
    """Return the contactId/workspaceId fields of an outside API's body.

    The older /send-sms contract carried the client's own (a CRM's) ids there, so a message
    from the older endpoints sends those as given, and the service's own under relayMessageId,
    relayWorkspaceId and relayContactId. Other messages send the service's ids, as always.
    """
    ours = {"contactId": outbound.contact_id, "workspaceId": outbound.workspace_id}
    sent = outbound.metadata.get(COMPAT_IDS)
    if not isinstance(sent, dict):
        return ours
    return {"contactId": sent.get("contactId", outbound.contact_id),
            "workspaceId": sent.get("workspaceId", outbound.workspace_id),
            "relayMessageId": outbound.message_id, "relayWorkspaceId": outbound.workspace_id,
            "relayContactId": outbound.contact_id}
