"""Creating and cancelling messages: one builder, one insert path, publish after commit."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.audit import Actor, audit
from core.models import Contact, Workspace
from messaging import events
from messaging.models import CANCELLABLE_STATUSES, Category, Message, MessageStatus
from messaging.publishing import publish

# A message's category when its sender names none: flow (and so schedule) sends are
# marketing, API and compat sends transactional (README.md, "Recipients' rules").
DEFAULT_CATEGORY = {"flow": Category.MARKETING}


class NotCancellable(Exception):
    """The message is past the point where it can be cancelled."""


def message_build(*, workspace: Workspace, channel: str, to: str, content: dict[str, Any],
                  contact: Contact | None = None, send_at: datetime | None = None,
                  metadata: dict | None = None, priority: str = "normal",
                  source: str = "api", parent: Message | None = None,
                  category: str | None = None, status_callback_url: str = "") -> Message:
    """Return an unsaved Message, `scheduled` when send_at is more than a moment away.
    Without a category, flow sends are marketing and everything else transactional."""
    now = timezone.now()
    scheduled = send_at is not None and send_at > now
    return Message(
        workspace=workspace, contact=contact, channel=channel, to=to, content=content,
        metadata=metadata or {}, priority=priority, source=source, parent=parent,
        category=category or DEFAULT_CATEGORY.get(source, Category.TRANSACTIONAL),
        status=MessageStatus.SCHEDULED if scheduled else MessageStatus.QUEUED,
        scheduled_for=send_at, due_at=send_at if scheduled else now,
        enqueued_at=None if scheduled else now,
        max_attempts=settings.MAX_ATTEMPTS.get(channel, 3),
        status_callback_url=status_callback_url,
    )


def message_create_many(*, messages: list[Message]) -> list[Message]:
    """Insert the messages in one transaction and publish the queued ones after commit;
    message.queued goes out in the same transaction."""
    with transaction.atomic():
        Message.objects.bulk_create(messages, batch_size=500)
        events.messages_emit(changes=[(m, events.MESSAGE_QUEUED) for m in messages],
                             fresh=True)
        queued = [m for m in messages if m.status == MessageStatus.QUEUED]
        if queued:
            transaction.on_commit(lambda: publish(queued))
    return messages


def message_create(**kwargs: Any) -> Message:
    """Create one message (see message_build for the arguments)."""
    return message_create_many(messages=[message_build(**kwargs)])[0]


def message_cancel(*, message: Message, actor: Actor | None = None) -> Message:
    """Cancel a message that has not been handed to a provider yet; an operator's cancel
    (with an actor) goes in the audit log in the same transaction."""
    now = timezone.now()
    with transaction.atomic():
        changed = Message.objects.filter(pk=message.pk, status__in=CANCELLABLE_STATUSES
                                         ).update(status=MessageStatus.CANCELLED,
                                                  cancelled_at=now, due_at=None,
                                                  status_reason="", updated_at=now)
        if changed and actor is not None:
            audit(actor=actor, action="message.cancel", workspace=message.workspace_id,
                  target_type="message", target_id=message.pk,
                  detail={"channel": message.channel, "status": message.status})
    message.refresh_from_db()
    if not changed:
        raise NotCancellable(f"A message that is '{message.status}' cannot be cancelled.")
    return message
