"""The sweeper: repairs what the broker lost (expired leases, lost tasks, orphaned holds)."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from messaging.delivery import pauses
from messaging.delivery.recording import fail, notify_finals
from messaging.events.endpoints import deliveries_recorded
from messaging.events.outbox import messages_emit
from messaging.events.types import MESSAGE_FAILED
from messaging.models import DeliveryAttempt, Message, MessageStatus
from messaging.publishing import publish

logger = logging.getLogger(__name__)


# One sweeper pass repairs at most this many rows per kind; the next pass takes the rest.
SWEEP_BATCH = 1000


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Repair what the broker lost; return how many rows of each kind were repaired.

    - `sending` past its lease: the worker died. With a started attempt it died mid-call:
      the attempt is closed as `lost` and the message flagged a possible duplicate (the
      provider may have acted), then queued again, or failed if it has no attempts left.
      Without one it was never called: it is not flagged and gets its attempt back (a
      worker killed with a batch in hand costs its waiting messages nothing), up to
      max_attempts such losses; past those it fails like a lost last attempt.
    - `queued` for longer than REQUEUE_AFTER_SECONDS: its task was lost; publish again.
    - held by a pause that is gone (a resume raced the hold): give it its timer back.
    """
    now = now or timezone.now()
    return {"expired_leases": _recover_expired_leases(now), "requeued": _republish_stale(now),
            "released": pauses.release_orphans(now=now)}


def _recover_expired_leases(now: datetime) -> int:
    failed: list[tuple[Any, str]] = []
    with transaction.atomic():
        expired = list(Message.objects.select_for_update(skip_locked=True)
                       .filter(status=MessageStatus.SENDING, lease_until__lt=now)
                       .select_related("workspace")[:SWEEP_BATCH])
        requeue: list[Message] = []
        lost: list[Message] = []
        for message in expired:
            # Only a started attempt may have reached the provider: flag only those.
            called = _close_lost_attempt(message, now)
            if called:
                flag: dict[str, Any] = {"possible_duplicate": True}
                spent = message.attempts >= message.max_attempts
            else:
                # Never called: the claim's attempt was not spent; give it back.
                flag = {"attempts": F("attempts") - 1,
                        "lost_before_call": F("lost_before_call") + 1}
                spent = message.lost_before_call >= message.max_attempts
            if spent:
                fail(message, now, "worker lost during the last attempt" if called else
                     f"worker lost before the provider call {message.lost_before_call} "
                     "times", "lost", **(flag if called else {}))
                failed.append((message.pk, message.source))
                lost.append(message)
                continue
            Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(
                status=MessageStatus.QUEUED, lease_until=None, enqueued_at=now,
                due_at=now, updated_at=now, **flag)
            requeue.append(message)
        messages_emit(changes=[(m, MESSAGE_FAILED) for m in lost])
        deliveries_recorded(outcomes=[(m, "failed") for m in lost], now=now)
        transaction.on_commit(lambda: publish(requeue, now=now, join_waiting=False))
        transaction.on_commit(lambda: notify_finals(failed))
    if expired:
        logger.warning("sweeper recovered %d messages from expired leases", len(expired))
    return len(expired)


def _close_lost_attempt(message: Message, now: datetime) -> bool:
    """Close the started attempt whose worker vanished as `lost`, a possible duplicate (the
    provider may or may not have acted); return whether there was one. Without one the
    worker died before the call: nothing reached the provider and nothing is recorded."""
    return bool(DeliveryAttempt.objects.filter(
        message=message, number=message.attempts, finished_at__isnull=True).update(
        finished_at=now, outcome="lost", possible_duplicate=True,
        error="worker lost during the provider call (lease expired)"))


def _republish_stale(now: datetime) -> int:
    cutoff = now - timedelta(seconds=settings.REQUEUE_AFTER_SECONDS)
    with transaction.atomic():
        stale = list(Message.objects.select_for_update(skip_locked=True)
                     .filter(status=MessageStatus.QUEUED)
                     .filter(Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True))
                     .only("id", "channel", "priority", "category", "lane")[:SWEEP_BATCH])
        Message.objects.filter(pk__in=[m.pk for m in stale]).update(enqueued_at=now)
        for message in stale:
            message.due_at = None
        transaction.on_commit(lambda: publish(stale, now=now, join_waiting=False))
    if stale:
        logger.warning("sweeper republished %d queued messages", len(stale))
    return len(stale)
