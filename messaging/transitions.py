"""The one table of a message's status moves: which status may follow which, and the event
each move emits (README.md, "Delivery"), and the one function that applies a receipt (a
provider's later word on a sent message: a status callback, an email bounce).

receipt_apply fences its UPDATE on the statuses the table allows before the new one, so
"delivered or undelivered only after sent" holds whichever report arrives, in any order,
any number of times, and the event goes out in the transaction of the change. The delivery
pipeline's own moves (claim, sent, retrying, failed) are fenced on their claim instead
(messaging/delivery/); the table names their events and documents those moves.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from messaging.events import types
from messaging.events.outbox import messages_emit
from messaging.models import CANCELLABLE_STATUSES, Message, MessageStatus, TimelineKind
from messaging.signals import message_finished
from messaging.timeline import entries_write, entry

S = MessageStatus


@dataclass(frozen=True)
class Move:
    """How a message may reach a status: from which statuses, emitting which event ("" for
    none)."""

    sources: tuple[str, ...]
    event: str = ""


# status -> how a message gets there. A new row starts `scheduled` or `queued` and emits
# message.queued (messaging.delivery.creation); an inbound one starts `received` and emits
# message.received (messaging.incoming.inbound).
MOVES: dict[str, Move] = {
    # A due timer (messaging.delivery.timers), or the sweeper taking back an expired lease.
    S.QUEUED: Move((S.SCHEDULED, S.RETRYING, S.SENDING)),
    # The claim (messaging.delivery.sending).
    S.SENDING: Move((S.QUEUED,)),
    # Deferred by a rate limit, quiet hours or a pause: a timer, not an attempt.
    S.SCHEDULED: Move((S.SENDING,)),
    S.RETRYING: Move((S.SENDING,)),
    S.SENT: Move((S.SENDING,), types.MESSAGE_SENT),
    S.FAILED: Move((S.SENDING,), types.MESSAGE_FAILED),
    S.SUPPRESSED: Move((S.SENDING,), types.MESSAGE_SUPPRESSED),
    S.CANCELLED: Move(tuple(CANCELLABLE_STATUSES)),
    # Receipts: only after sent; a late "delivered" wins over an earlier "undelivered"
    # (carriers report undelivered, then deliver on a retry), never the other way round.
    S.DELIVERED: Move((S.SENT, S.UNDELIVERED), types.MESSAGE_DELIVERED),
    S.UNDELIVERED: Move((S.SENT,), types.MESSAGE_UNDELIVERED),
}
# The statuses a receipt may set.
RECEIPT_STATUSES = (S.DELIVERED, S.UNDELIVERED)


def event_of(status: str) -> str:
    """Return the event a message emits on reaching this status ("" for none)."""
    move = MOVES.get(status)
    return move.event if move is not None else ""


def receipt_apply(*, message: Message, status: str, fields: dict[str, Any] | None = None,
                  now: datetime | None = None, report: dict[str, Any] | None = None) -> bool:
    """Move a message to a receipt's status (delivered or undelivered) with `fields`, if
    the table allows it from its current status (one conditional UPDATE), and write its
    timeline entry (with `report`: who reported what, e.g. the carrier's status and error
    code) and emit the status's event in the same transaction. Return whether it moved; a
    receipt that came too late, too early or twice changes nothing and emits nothing."""
    if status not in RECEIPT_STATUSES:
        raise ValueError(f"{status!r} is not a receipt's status.")
    move = MOVES[status]
    now = now or timezone.now()
    with transaction.atomic():
        moved = bool(Message.objects.filter(pk=message.pk, status__in=move.sources).update(
            status=status, updated_at=now, **(fields or {})))
        if moved:
            entries_write(entries=[entry(message_id=message.pk, kind=TimelineKind.RECEIPT,
                                         at=now, status=status, **(report or {}))])
        if moved and move.event:
            messages_emit(changes=[(message, move.event)])
        if moved:  # a flow step waiting for this message's outcome goes on (flows.engine)
            transaction.on_commit(lambda: message_finished.send(
                sender=Message, message_id=message.pk, source=message.source))
    return moved
