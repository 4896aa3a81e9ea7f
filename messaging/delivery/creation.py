"""Creating and cancelling messages: one builder, one insert path, publish after commit.

The builder is messaging.building.message_build (imported here for the callers of
creation.message_build): event deliveries, below this room, build with it too."""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from core import logcontext
from core.audit import Actor, audit
from messaging.building import message_build
from messaging.events.outbox import messages_emit
from messaging.events.types import MESSAGE_QUEUED
from messaging.models import CANCELLABLE_STATUSES, Message, MessageStatus, TimelineKind
from messaging.publishing import publish
from messaging.timeline import accepted, entries_write, entry

logger = logging.getLogger(__name__)


class NotCancellable(Exception):
    """The message is past the point where it can be cancelled."""


def message_create_many(*, messages: list[Message], origin: dict[str, Any] | None = None,
                        origins: dict[Any, dict[str, Any]] | None = None) -> list[Message]:
    """Insert the messages in one transaction and publish the queued ones after commit;
    message.queued and their `accepted` timeline entries (with `origin`, or `origins` per
    message id: see messaging.timeline.accepted) go in the same transaction."""
    with transaction.atomic():
        Message.objects.bulk_create(messages, batch_size=500)
        entries_write(entries=accepted(messages, timezone.now(), origin, origins))
        transaction.on_commit(lambda: _log_accepted(messages))
        messages_emit(changes=[(m, MESSAGE_QUEUED) for m in messages],
                             fresh=True)
        queued = [m for m in messages if m.status == MessageStatus.QUEUED]
        if queued:
            transaction.on_commit(lambda: publish(queued))
    return messages


def _log_accepted(messages: list[Message]) -> None:
    """Log one line per message created, carrying its ids."""
    if not logger.isEnabledFor(logging.INFO):
        return
    for message in messages:
        with logcontext.bind(message_id=message.pk, workspace_id=message.workspace_id,
                             request_id=message.request_id):
            logger.info("%s message accepted: %s", message.channel, message.status)


def message_create(**kwargs: Any) -> Message:
    """Create one message (see message_build for the arguments)."""
    return message_create_many(messages=[message_build(**kwargs)])[0]


def messages_cancel_many(*, ids: list[Any], reason: str, now: Any = None) -> list[Any]:
    """Cancel the messages among ids that have not been handed to a provider yet, in the
    caller's transaction, each with its `cancelled` timeline entry saying why; return the
    ids cancelled. The rows are locked first: a delivery claim waiting on one finds it
    cancelled once this commits, and sends nothing; one a worker claimed before is left to
    finish. One locking read, one UPDATE and one timeline INSERT: callers with many
    messages pass them in batches (CANCEL_BATCH)."""
    if not ids:
        return []
    now = now or timezone.now()
    with transaction.atomic():
        pending = list(Message.objects.select_for_update().filter(
            pk__any=ids, status__in=CANCELLABLE_STATUSES).values_list("pk", "status"))
        Message.objects.filter(pk__any=[pk for pk, _ in pending]).update(
            status=MessageStatus.CANCELLED, cancelled_at=now, due_at=None, status_reason="",
            updated_at=now)
        entries_write(entries=[entry(message_id=pk, kind=TimelineKind.CANCELLED, at=now,
                                     from_status=status, reason=reason)
                               for pk, status in pending])
    return [pk for pk, _ in pending]


# Messages a caller with many cancels per messages_cancel_many call (one transaction each).
CANCEL_BATCH = 1000


def message_cancel(*, message: Message, actor: Actor | None = None,
                   reason: str = "") -> Message:
    """Cancel a message that has not been handed to a provider yet; an operator's cancel
    (with an actor) goes in the audit log in the same transaction. Its timeline says who,
    and `reason` why when the service cancels it on its own (an execution's cancel)."""
    now = timezone.now()
    with transaction.atomic():
        changed = Message.objects.filter(pk=message.pk, status__in=CANCELLABLE_STATUSES
                                         ).update(status=MessageStatus.CANCELLED,
                                                  cancelled_at=now, due_at=None,
                                                  status_reason="", updated_at=now)
        if changed:
            entries_write(entries=[entry(
                message_id=message.pk, kind=TimelineKind.CANCELLED, at=now,
                by=actor.label if actor is not None else "", reason=reason,
                from_status=message.status)])
        if changed and actor is not None:
            audit(actor=actor, action="message.cancel", workspace=message.workspace_id,
                  target_type="message", target_id=message.pk,
                  detail={"channel": message.channel, "status": message.status})
    message.refresh_from_db()
    if not changed:
        raise NotCancellable(f"A message that is '{message.status}' cannot be cancelled.")
    return message
