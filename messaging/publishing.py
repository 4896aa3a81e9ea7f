"""Publish delivery tasks for messages: the broker only wakes workers (README.md, "Delivery").

Below the pipeline and the events module, which both publish what they wrote after commit.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from datetime import datetime

from celery import current_app
from django.conf import settings
from django.utils import timezone

from core.publishing import hold
from messaging.channels import queue_for
from messaging.lanes import BROKER_PRIORITY, PRIORITY, kind_of, lane_of
from messaging.models import Message

logger = logging.getLogger(__name__)

# Message ids per delivery task: one claim, one read and one outcome transaction serve the
# whole batch, and its provider calls run concurrently; 50 keeps a task under a second
# with a healthy provider while cutting database commits per message by ~50x.
PUBLISH_BATCH = 50
# The delivery task, published by name so this module never imports the tasks module (which
# imports the pipeline, which imports this one). The name is in in-flight broker messages:
# never change it.
DELIVER_TASK = "messaging.tasks.deliver_messages"


def publish(messages: Iterable[Message], *, now: datetime | None = None) -> int:
    """Publish delivery tasks, one per batch of messages due together; return how many
    messages were published (or held: inside core.publishing.grouped() they go out with the
    block's others at its end; inside core.publishing.in_background() this process's
    publishing thread sends them). A broker failure is logged, never raised: the rows stay
    `queued`, so the sweeper publishes them again."""
    messages = list(messages)
    if hold(_publish_now, messages, background=True):
        return len(messages)
    return _publish_now(messages, now=now)


def task_queue(message: Message, kind: str) -> str:
    """Return the Celery queue of a message's delivery task (`kind`: its lane's, priority
    or bulk): its channel's, or the priority lane's own queue when PRIORITY_LANE_QUEUE
    names one (workers kept for it)."""
    if settings.PRIORITY_LANE_QUEUE and kind == PRIORITY:
        return str(settings.PRIORITY_LANE_QUEUE)
    return queue_for(message.channel)


def _publish_now(messages: list[Message], *, now: datetime | None = None) -> int:
    now = now or timezone.now()
    groups: dict[tuple[str, str, str, float], list[Message]] = {}
    for message in messages:
        countdown = 0.0
        if message.due_at is not None:
            # Messages due within the same 50 ms share a task; rounding up, never early.
            countdown = math.ceil(max(0.0, (message.due_at - now).total_seconds()) * 20) / 20
        # A row without a lane (written before lanes: a dead letter replayed) is claimed
        # by its id, at the priority its fields give.
        kind = kind_of(lane_of(message))
        key = (task_queue(message, kind), message.lane, kind, countdown)
        groups.setdefault(key, []).append(message)
    count = 0
    try:
        for (queue, lane, kind, countdown), batch in groups.items():
            for offset in range(0, len(batch), PUBLISH_BATCH):
                # The task claims up to PUBLISH_BATCH of its lane's next rows (these or
                # others: the workspaces take turns); one task per batch published keeps
                # a claim coming for every row.
                chunk = batch[offset:offset + PUBLISH_BATCH]
                current_app.send_task(DELIVER_TASK, args=[[str(m.id) for m in chunk]],
                                      kwargs={"lane": lane} if lane else None, queue=queue,
                                      priority=BROKER_PRIORITY[kind],
                                      countdown=countdown or None, headers=_headers(chunk))
                count += len(chunk)
    except Exception:  # the broker is down: the sweeper republishes from the database
        logger.exception("publish failed after %d messages; the sweeper will retry", count)
    return count


def _headers(chunk: list[Message]) -> dict[str, str] | None:
    """Return the task's headers: the request id its messages were created by, when they
    share one (requests' messages published together by the publishing thread may not;
    each message keeps its own anyway: Message.request_id)."""
    ids = {getattr(message, "request_id", "") for message in chunk}
    rid = ids.pop() if len(ids) == 1 else ""
    return {"request_id": rid} if rid else None
