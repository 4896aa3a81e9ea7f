"""The durable timer: rows whose `due_at` has come are queued and published."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from messaging.models import TIMER_STATUSES, Message, MessageStatus
from messaging.publishing import publish

# One dispatcher pass claims at most this many due rows: one SELECT + one UPDATE + N
# publishes, a few milliseconds per hundred rows, short enough to hold row locks.
DISPATCH_BATCH = 500


def dispatch_due(*, now: datetime | None = None, batch: int = DISPATCH_BATCH) -> int:
    """Move timers due within the lookahead to `queued` and publish them with a countdown.

    SKIP LOCKED lets several dispatchers (one per machine) share the work.
    """
    now = now or timezone.now()
    horizon = now + timedelta(seconds=settings.DISPATCH_LOOKAHEAD_SECONDS)
    with transaction.atomic():
        due = list(Message.objects.select_for_update(skip_locked=True)
                   .filter(status__in=TIMER_STATUSES, due_at__lte=horizon)
                   .order_by("due_at")
                   .only("id", "channel", "due_at", "priority")[:batch])
        if not due:
            return 0
        Message.objects.filter(pk__in=[m.pk for m in due], status__in=TIMER_STATUSES).update(
            status=MessageStatus.QUEUED, enqueued_at=now, status_reason="", updated_at=now)
        transaction.on_commit(lambda: publish(due))
    return len(due)
