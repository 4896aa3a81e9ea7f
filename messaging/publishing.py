"""Publish delivery tasks for messages: the broker only wakes workers (README.md, "Delivery").

Below the pipeline and the events module, which both publish what they wrote after commit.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from datetime import datetime

import redis
from celery import current_app
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.publishing import hold
from messaging.lanes import BROKER_PRIORITY, PRIORITY, kind_of, lane_of, queue_of
from messaging.models import Message
from messaging.ratelimit import client as redis_client

logger = logging.getLogger(__name__)

# Message ids per delivery task: one claim, one read and one outcome transaction serve the
# whole batch, and its provider calls run concurrently; 50 keeps a task under a second
# with a healthy provider while cutting database commits per message by ~50x.
PUBLISH_BATCH = 50
# The delivery task, published by name so this module never imports the tasks module (which
# imports the pipeline, which imports this one). The name is in in-flight broker messages:
# never change it.
DELIVER_TASK = "messaging.tasks.deliver_messages"
# A lane task claims its lane's next rows when it starts, not the ids it names, so a row
# committed while one waits in the broker needs no task of its own: that one will claim it
# (a full claim publishes one more: messaging.delivery.sending). This Redis key says one
# waits; set when it is published, deleted by the task as it starts, before its claim.
# Single-message requests then cost the workers a share of a task each instead of a task
# each. It expires after WAITING_MS in case the task never starts (taken by a worker that
# was killed before it began): what joined it meanwhile waits for the sweeper, so the
# window is short. A task that waits longer (a backlog) only lets more tasks be published.
WAITING_KEY = "relay:lane-task-waiting:{lane}"
WAITING_MS = 1000


def publish(messages: Iterable[Message], *, now: datetime | None = None,
            join_waiting: bool = True) -> int:
    """Publish delivery tasks, one per batch of messages due together; return how many
    messages were published (or held: inside core.publishing.grouped() they go out with the
    block's others at its end; inside core.publishing.in_background() this process's
    publishing thread sends them). Messages due now that fit in one claim of a lane whose
    task waits in the broker join that task instead (WAITING_KEY), unless `join_waiting`
    is False (the sweeper: it republishes because tasks were lost). A broker failure is
    logged, never raised: the rows stay `queued`, so the sweeper publishes them again."""
    messages = list(messages)
    send = _publish_now if join_waiting else _publish_all
    if hold(send, messages, background=True):
        return len(messages)
    return send(messages, now=now)


def lane_queue(lane: str) -> str:
    """Return the Celery queue of a lane's delivery tasks: its channel's queue, or the
    priority lane's own queue when PRIORITY_LANE_QUEUE names one (workers kept for it)."""
    if settings.PRIORITY_LANE_QUEUE and kind_of(lane) == PRIORITY:
        return str(settings.PRIORITY_LANE_QUEUE)
    return queue_of(lane)


def _publish_all(messages: list[Message], *, now: datetime | None = None) -> int:
    """Publish a task for every batch, whether or not one of its lane waits."""
    return _publish_now(messages, now=now, join_waiting=False)


def _publish_now(messages: list[Message], *, now: datetime | None = None,
                 join_waiting: bool = True) -> int:
    now = now or timezone.now()
    groups: dict[tuple[str, str, str, float], list[Message]] = {}
    for message in messages:
        countdown = 0.0
        if message.due_at is not None:
            # Messages due within the same 50 ms share a task; rounding up, never early.
            countdown = math.ceil(max(0.0, (message.due_at - now).total_seconds()) * 20) / 20
        # A row without a lane (written before lanes: a dead letter replayed) is claimed
        # by its id, at the priority its fields give.
        lane = lane_of(message)
        kind = kind_of(lane)
        key = (lane_queue(lane), message.lane, kind, countdown)
        groups.setdefault(key, []).append(message)
    count = 0
    try:
        for (queue, lane, kind, countdown), batch in groups.items():
            # Only a PostgreSQL claim takes its lane's next rows (SQLite's takes the ids).
            joins = (join_waiting and lane and not countdown and len(batch) <= PUBLISH_BATCH
                     and connection.vendor == "postgresql")
            if joins and _task_waits(lane):
                count += len(batch)  # the waiting task will claim them
                continue
            try:
                for offset in range(0, len(batch), PUBLISH_BATCH):
                    # The task claims up to PUBLISH_BATCH of its lane's next rows (these or
                    # others: the workspaces take turns); one task per batch published
                    # keeps a claim coming for every row.
                    chunk = batch[offset:offset + PUBLISH_BATCH]
                    _send(queue, lane, kind, countdown, chunk)
                    count += len(chunk)
            except Exception:
                if joins:  # no task waits after all: let the next publish go out
                    lane_task_started(lane)
                raise
    except Exception:  # the broker is down: the sweeper republishes from the database
        logger.exception("publish failed after %d messages; the sweeper will retry", count)
    return count


def _send(queue: str, lane: str, kind: str, countdown: float, chunk: list[Message]) -> None:
    """Publish one delivery task for the chunk (with a lane: for as many of its rows)."""
    current_app.send_task(DELIVER_TASK, args=[[str(m.id) for m in chunk]],
                          kwargs={"lane": lane} if lane else None, queue=queue,
                          priority=BROKER_PRIORITY[kind], countdown=countdown or None,
                          headers=_headers(chunk))


def _task_waits(lane: str) -> bool:
    """Return whether a task of the lane waits in the broker; if none does, mark the one
    the caller is about to publish as waiting. Without Redis, say no: publish."""
    try:
        return not redis_client().set(WAITING_KEY.format(lane=lane), "1", nx=True,
                                      px=WAITING_MS)
    except redis.RedisError:
        return False


def lane_task_started(lane: str) -> None:
    """Say that a task of the lane started (before its claim): what is queued from now on
    needs a task of its own. A Redis failure leaves the key to expire (WAITING_MS)."""
    try:
        redis_client().delete(WAITING_KEY.format(lane=lane))
    except redis.RedisError:
        logger.warning("could not clear the waiting task of lane %s", lane)


def publish_lane_more(lane: str) -> None:
    """Publish one more task for the lane now, not at the end of a grouped() block, unless
    one waits: a claim that came back full may have left rows whose publishes joined the
    task that made it."""
    if _task_waits(lane):
        return
    kind = kind_of(lane)
    try:
        _send(lane_queue(lane), lane, kind, 0.0, [])
    except Exception:  # the broker is down: the sweeper republishes from the database
        lane_task_started(lane)
        logger.exception("publish of lane %s's next claim failed; the sweeper will retry",
                         lane)


def _headers(chunk: list[Message]) -> dict[str, str] | None:
    """Return the task's headers: the request id its messages were created by, when they
    share one (requests' messages published together by the publishing thread may not;
    each message keeps its own anyway: Message.request_id)."""
    ids = {getattr(message, "request_id", "") for message in chunk}
    rid = ids.pop() if len(ids) == 1 else ""
    return {"request_id": rid} if rid else None
