"""The event types (the only list), the version of each one's payload schema, and the
envelope every receiver gets: {type, schema_version, timestamp, data}."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

MESSAGE_QUEUED = "message.queued"
MESSAGE_SENT = "message.sent"
MESSAGE_DELIVERED = "message.delivered"
MESSAGE_UNDELIVERED = "message.undelivered"
MESSAGE_FAILED = "message.failed"
MESSAGE_SUPPRESSED = "message.suppressed"
MESSAGE_RECEIVED = "message.received"
EXECUTION_STARTED = "execution.started"
EXECUTION_COMPLETED = "execution.completed"
EXECUTION_FAILED = "execution.failed"
EXECUTION_EXITED = "execution.exited"
EXECUTION_CONVERTED = "execution.converted"
SCHEDULE_RUN_FAILED = "schedule.run_failed"
DEAD_LETTER_CREATED = "dead_letter.created"
BROADCAST_COMPLETED = "broadcast.completed"
# The only list of event types (the API refuses any other; "*" subscribes to all), each with
# the version of its payload schema (docs/events/<type>.schema.json): bump it, and the
# schema file, whenever a builder changes the payload's shape (tests/messaging/
# test_event_schemas.py fails otherwise).
SCHEMA_VERSIONS: dict[str, int] = {
    MESSAGE_QUEUED: 1, MESSAGE_SENT: 1, MESSAGE_DELIVERED: 1, MESSAGE_UNDELIVERED: 1,
    MESSAGE_FAILED: 1, MESSAGE_SUPPRESSED: 1, MESSAGE_RECEIVED: 1, EXECUTION_STARTED: 1,
    EXECUTION_COMPLETED: 1, EXECUTION_FAILED: 1, EXECUTION_EXITED: 1, EXECUTION_CONVERTED: 1,
    SCHEDULE_RUN_FAILED: 1, DEAD_LETTER_CREATED: 1, BROADCAST_COMPLETED: 1}
EVENT_TYPES: tuple[str, ...] = tuple(SCHEMA_VERSIONS)
ALL_EVENTS = "*"
# Message sources of event deliveries: they emit no events of their own, or a failing
# endpoint would be sent its own failures, forever.
EVENT_SOURCE = "event"
CALLBACK_SOURCE = "callback"
QUIET_SOURCES = frozenset({EVENT_SOURCE, CALLBACK_SOURCE})
# Delivery metadata naming the event type it carries (its id: providers.webhook).
EVENT_TYPE_FIELD = "_event_type"


@dataclass(frozen=True)
class Event:
    """One thing that happened in a workspace; `data` is what the type's payload builder
    made of the object (messaging.events.payloads, flows.events)."""

    workspace_id: Any
    type: str
    data: dict[str, Any]
    # A message's own status callback (message events only).
    callback_url: str = ""
    id: str = field(default_factory=lambda: f"evt_{uuid.uuid4().hex}")
    occurred_at: datetime = field(default_factory=timezone.now)

    def payload(self) -> dict[str, Any]:
        """Return the body every receiver gets: {type, schema_version, timestamp, data};
        schema_version tells a receiver which shape of `data` this is."""
        return {"type": self.type, "schema_version": SCHEMA_VERSIONS[self.type],
                "timestamp": self.occurred_at.isoformat(), "data": self.data}
