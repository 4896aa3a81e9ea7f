"""The durable timer: rows whose `due_at` has come are queued and published."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import logcontext
from messaging.models import TIMER_STATUSES, Message, MessageStatus
from messaging.publishing import publish

logger = logging.getLogger(__name__)

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
                   .only("id", "channel", "due_at", "priority", "category", "lane",
                         "workspace_id", "request_id")[:batch])
        if not due:
            return 0
        Message.objects.filter(pk__in=[m.pk for m in due], status__in=TIMER_STATUSES).update(
            status=MessageStatus.QUEUED, enqueued_at=now, status_reason="", updated_at=now)
        transaction.on_commit(lambda: publish(due))
    _log_due(due)
    return len(due)


def _log_due(due: list[Message]) -> None:
    """Log one line per message whose timer fired, carrying its ids."""
    if not logger.isEnabledFor(logging.INFO):
        return
    for message in due:
        with logcontext.bind(message_id=message.pk, workspace_id=message.workspace_id,
                             request_id=message.request_id):
            logger.info("%s message due: queued", message.channel)
