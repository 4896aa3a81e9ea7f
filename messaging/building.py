"""The one Message builder: every outgoing row (API, flows, alerts, event deliveries) starts
here, so its first status, timers, category and attempt limit are decided in one place.

It sits low in messaging (it reads only models, channels and settings) because both the
delivery room (messaging.delivery.creation, which inserts and publishes) and the events room
(messaging.events.outbox, below delivery, which writes webhook deliveries) build with it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from core import logcontext
from core.models import Contact, Workspace
from messaging.lanes import lane_for
from messaging.models import Category, Message, MessageStatus, WebhookEndpoint

# A message's category when its sender names none: flow (and so schedule) sends are
# marketing, API and compat sends transactional (README.md, "Recipients' rules").
DEFAULT_CATEGORY = {"flow": Category.MARKETING}
# The attempt limit of a channel settings do not know (one registered after they were
# read); every channel of the table has its own in settings.MAX_ATTEMPTS.
FALLBACK_MAX_ATTEMPTS = 3


def attempts_limit(channel: str) -> int:
    """Return how many attempts a new message of the channel gets: MAX_ATTEMPTS_<CHANNEL>
    or the channel table's default (webhooks, and so event deliveries, 5), read once by
    settings.MAX_ATTEMPTS."""
    return settings.MAX_ATTEMPTS.get(channel, FALLBACK_MAX_ATTEMPTS)


def message_build(*, channel: str, to: str, content: dict[str, Any],
                  workspace: Workspace | None = None, workspace_id: Any = None,
                  contact: Contact | None = None, send_at: datetime | None = None,
                  metadata: dict | None = None, priority: str = "normal",
                  source: str = "api", parent: Message | None = None,
                  category: str | None = None, status_callback_url: str = "",
                  webhook_endpoint: WebhookEndpoint | None = None) -> Message:
    """Return an unsaved Message, `scheduled` when send_at is more than a moment away.

    Give the workspace, or only its id where the row is not at hand (event deliveries).
    Without a category, flow sends are marketing and everything else transactional. An
    event delivery names the endpoint it goes to (its delivery log and health)."""
    now = timezone.now()
    scheduled = send_at is not None and send_at > now
    owner: dict[str, Any] = ({"workspace": workspace} if workspace is not None
                             else {"workspace_id": workspace_id})
    category = category or DEFAULT_CATEGORY.get(source, Category.TRANSACTIONAL)
    return Message(
        **owner, contact=contact, channel=channel, to=to, content=content,
        metadata=metadata or {}, priority=priority, source=source, parent=parent,
        category=category, lane=lane_for(channel=channel, category=category, priority=priority),
        status=MessageStatus.SCHEDULED if scheduled else MessageStatus.QUEUED,
        scheduled_for=send_at, due_at=send_at if scheduled else now,
        enqueued_at=None if scheduled else now,
        max_attempts=attempts_limit(channel),
        status_callback_url=status_callback_url, webhook_endpoint=webhook_endpoint,
        request_id=logcontext.request_id(),
    )
