"""The `data` of each event type, built from the rows as plain dicts.

The payload is a contract with the customers' receivers (published as JSON Schema in
docs/events/), so it is built here and not by the API's serializers: a new API field, or a
changed one, does not reach a webhook unless this module changes too, and then the type's
schema_version (messaging.events.types) and schema file change with it. The value formats
are those the payloads always had (they began as the API's): ids as strings (integer ids of
dead letters and schedule runs as numbers), times as ISO 8601 in TIME_ZONE with "Z" for UTC,
blank reasons as null.

Which builder makes which type's data: message.* -> message_data; dead_letter.created ->
dead_letter_data; execution.* and schedule.run_failed -> flows.events (flows sit above
messaging, so their builders live with their models).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from core.models import DeadLetter
from messaging.models import Message, metadata_public


def time_text(value: datetime | None) -> str | None:
    """Return a time as payloads show it: ISO 8601 in the current time zone, "Z" for UTC
    (the format the payloads were first published with), or None."""
    if value is None:
        return None
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def id_text(value: Any) -> str | None:
    """Return a UUID (or any id) as its string, or None."""
    return None if value is None else str(value)


def message_data(message: Message) -> dict[str, Any]:
    """Return a message as the message.* events show it: its metadata without the service's
    own keys (as the API answers it), flow_context not at all."""
    waiting_for = message.waiting_for
    return {
        "id": str(message.pk), "channel": message.channel, "direction": message.direction,
        "status": message.status, "status_reason": message.status_reason,
        "waiting_for": str(waiting_for) if waiting_for else None,
        "suppressed_reason": message.suppressed_reason or None,
        "category": message.category, "to": message.to, "sender": message.sender,
        "contact_id": id_text(message.contact_id), "priority": message.priority,
        "content": message.content, "rendered": message.rendered,
        "metadata": metadata_public(message.metadata),
        "scheduled_for": time_text(message.scheduled_for),
        "due_at": time_text(message.due_at), "attempts": message.attempts,
        "max_attempts": message.max_attempts, "provider": message.provider,
        "provider_message_id": message.provider_message_id, "response": message.response,
        "last_error": message.last_error, "error_code": message.error_code,
        "possible_duplicate": message.possible_duplicate, "source": message.source,
        "created_at": time_text(message.created_at),
        "updated_at": time_text(message.updated_at), "sent_at": time_text(message.sent_at),
        "delivered_at": time_text(message.delivered_at),
        "failed_at": time_text(message.failed_at),
        "cancelled_at": time_text(message.cancelled_at),
    }


def dead_letter_data(letter: DeadLetter) -> dict[str, Any]:
    """Return a dead letter as dead_letter.created shows it."""
    return {
        "id": letter.pk, "kind": letter.kind, "source_id": letter.source_id,
        "channel": letter.channel, "flow_id": letter.flow_id, "error": letter.error,
        "error_code": letter.error_code, "attempts": letter.attempts,
        "payload": letter.payload, "status": letter.status,
        "replay_count": letter.replay_count, "replay_result": letter.replay_result,
        "replayed_at": time_text(letter.replayed_at), "replayed_by": letter.replayed_by,
        "created_at": time_text(letter.created_at),
    }
