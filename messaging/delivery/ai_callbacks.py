"""An AI reply's callback: a signed webhook message of its own, through the same pipeline."""
from __future__ import annotations

from typing import Any

from messaging.channels import WEBHOOK
from messaging.delivery.creation import message_build, message_create_many
from messaging.models import Message
from messaging.providers.base import Receipt
from messaging.providers.shared import CALLBACK_SHAPE_FIELD
from messaging.ratelimit import RATE_KEY_FIELD

__all__ = ["AI_RESPONSE_SHAPE", "AI_SMS_SHAPE", "CALLBACK_SHAPE_FIELD", "ai_callback_create"]

# The older AI queue's two callback bodies for its clients' jobs: its dedicated one,
# {workspace_id, message_id, job_id, response_text}, and the SMS endpoint's,
# {to, message, workspaceId}, which let a reply go straight to a /send-sms callback.
AI_RESPONSE_SHAPE = "ai_response"
AI_SMS_SHAPE = "sms"


def ai_callback_create(message: Message, url: str, receipt: Receipt) -> None:
    """Send the AI reply to the callback URL as a signed webhook, through this pipeline.

    The webhook is limited as a webhook: the AI message's own rate key and callback shape
    stay with it.
    """
    payload = _ai_callback_payload(message, receipt.output.get("response_text", ""))
    metadata = {k: v for k, v in (message.metadata or {}).items()
                if k not in (RATE_KEY_FIELD, CALLBACK_SHAPE_FIELD)}
    child = message_build(workspace=message.workspace, channel=WEBHOOK, to=url,
                          content={"url": url, "payload": payload}, contact=message.contact,
                          metadata=metadata, source=message.channel, parent=message)
    message_create_many(messages=[child])


def _ai_callback_payload(message: Message, text: str) -> dict[str, Any]:
    """Return the callback body: the older AI queue's shape, in its client's own ids, for a
    job it scheduled (only that endpoint can write the mark), today's shape otherwise."""
    metadata = message.metadata or {}
    if metadata.get(CALLBACK_SHAPE_FIELD) == AI_SMS_SHAPE:
        return {"to": metadata.get("to", metadata.get("contact_id")), "message": text,
                "workspaceId": metadata.get("workspace_id"), "jobId": str(message.id)}
    if metadata.get(CALLBACK_SHAPE_FIELD) == AI_RESPONSE_SHAPE:
        return {"workspace_id": metadata.get("workspace_id"),
                "message_id": metadata.get("message_id"), "job_id": str(message.id),
                "response_text": text}
    return {"workspace_id": str(message.workspace_id), "message_id": str(message.id),
            "contact_id": str(message.contact_id) if message.contact_id else None,
            "response_text": text}
