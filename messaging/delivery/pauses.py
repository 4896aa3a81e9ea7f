"""Pausing channel queues, for one workspace or for all of them (README.md, "Pausing").

A `QueuePause` row is the truth. While one covers a message, the delivery task *holds* it
instead of sending: right after the claim the message goes back to `scheduled` with no
timer (due_at NULL), its `status_reason` saying why, and the attempt the claim counted given
back (like a rate-limit deferral). Held rows are invisible to the dispatcher and the
sweeper's scans, so a long pause costs nothing per pass. Resuming deletes the row and
re-times the held rows in the order they were created, spaced at the workspace's rate limit,
so the dispatcher hands them over in order and the limiter is never flooded. The sweeper
releases any held row whose pause is gone (a resume racing a hold cannot strand it).

The check on the hot path is one indexed query per delivery batch over a table of a few rows.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from core.audit import Actor, audit
from core.models import Workspace
from messaging import ratelimit
from messaging.channels import CHANNEL_QUEUES, QUEUE_CHANNELS, queue_for
from messaging.models import Message, MessageStatus, QueuePause, TimelineKind
from messaging.timeline import entries_write, entry

logger = logging.getLogger(__name__)

# A resume re-times at most this many held rows per UPDATE (one CASE statement each).
RELEASE_BATCH = 500
GLOBAL, WORKSPACE = "global", "workspace"


class UnknownQueue(ValueError):
    """The name is not a channel queue (the message lists the ones there are)."""


def check_queue(queue: str) -> str:
    """Return the queue name when it is a channel queue, else raise UnknownQueue."""
    if queue not in CHANNEL_QUEUES:
        raise UnknownQueue(f"No queue '{queue}'; the channel queues are "
                           f"{', '.join(CHANNEL_QUEUES)}.")
    return queue


def reason_for(queue: str, scope: str) -> str:
    """Return the status_reason of a message held by a pause: "paused: sms (workspace)"."""
    return f"paused: {queue} ({scope})"


# --- pausing and resuming -------------------------------------------------------------------

def queue_pause(*, queue: str, workspace: Workspace | None, actor: Actor,
                reason: str = "") -> tuple[QueuePause, bool]:
    """Pause a queue for one workspace (or for all with workspace=None); return the pause
    and whether this call paused it (pausing a paused queue changes nothing)."""
    check_queue(queue)
    with transaction.atomic():
        pause, created = QueuePause.objects.get_or_create(
            queue=queue, workspace=workspace,
            defaults={"paused_by": actor.name[:150], "reason": reason[:500]})
        if created:
            audit(actor=actor, action="queue.pause", workspace=workspace, target_type="queue",
                  target_id=queue, detail={"scope": pause.scope, "reason": pause.reason})
    return pause, created


def queue_resume(*, queue: str, workspace: Workspace | None, actor: Actor) -> int | None:
    """Resume a paused queue and release the messages it held, in order; return how many
    were released, or None when it was not paused."""
    check_queue(queue)
    with transaction.atomic():
        pause = (QueuePause.objects.select_for_update()
                 .filter(queue=queue, workspace=workspace).first())
        if pause is None:
            return None
        paused_for = timezone.now() - pause.paused_at
        pause.delete()
        released = held_release(queue=queue, workspace_id=getattr(workspace, "pk", None),
                                by=actor.label)
        audit(actor=actor, action="queue.resume", workspace=workspace, target_type="queue",
              target_id=queue, detail={"scope": GLOBAL if workspace is None else WORKSPACE,
                                       "released": released,
                                       "paused_seconds": round(paused_for.total_seconds())})
    return released


def pauses_of(workspace: Workspace | None) -> dict[str, QueuePause]:
    """Return the pause in force per queue for a workspace (its own, else the global one);
    with workspace=None, the global pauses only."""
    rows = QueuePause.objects.filter(Q(workspace__isnull=True) | Q(workspace=workspace)) \
        if workspace is not None else QueuePause.objects.filter(workspace__isnull=True)
    found: dict[str, QueuePause] = {}
    for pause in rows.order_by("workspace_id"):  # NULLs last: a global pause wins
        found[pause.queue] = pause
    return found


def held(queue: str | None = None, workspace_id: Any = None) -> QuerySet[Message]:
    """Return the messages held by pauses (of one queue and workspace when given)."""
    rows = Message.objects.filter(status=MessageStatus.SCHEDULED, due_at__isnull=True)
    if queue is not None:
        rows = rows.filter(channel__in=QUEUE_CHANNELS[queue])
    if workspace_id is not None:
        rows = rows.filter(workspace_id=workspace_id)
    return rows


# --- the delivery task's check --------------------------------------------------------------

def hold_paused(messages: Iterable[Message], now: datetime) -> set[Any]:
    """Hold the claimed messages a pause covers; return their ids. One query for the whole
    batch finds the pauses; one UPDATE per reason holds the messages."""
    messages = list(messages)
    if not messages:
        return set()
    queues = {queue_for(m.channel) for m in messages}
    workspaces = {m.workspace_id for m in messages}
    # (queue, workspace id or None) -> who paused it
    pauses: dict[tuple[str, Any], str] = {
        (queue, workspace): by for queue, workspace, by in QueuePause.objects.filter(
            queue__in=queues).filter(Q(workspace__isnull=True) | Q(
                workspace_id__in=workspaces)).values_list("queue", "workspace_id", "paused_by")}
    if not pauses:
        return set()
    by_reason: dict[str, list[Any]] = {}
    paused_by: dict[Any, str] = {}
    for message in messages:
        queue = queue_for(message.channel)
        scope = (GLOBAL if (queue, None) in pauses else
                 WORKSPACE if (queue, message.workspace_id) in pauses else None)
        if scope is not None:
            reason = reason_for(queue, scope)
            by_reason.setdefault(reason, []).append(message.pk)
            paused_by[message.pk] = pauses[(queue, None if scope == GLOBAL else
                                            message.workspace_id)]
    with transaction.atomic():
        for reason, ids in by_reason.items():
            # No timer, no attempt: the claim's attempt is given back, as for a deferral.
            Message.objects.filter(pk__in=ids, status=MessageStatus.SENDING).update(
                status=MessageStatus.SCHEDULED, due_at=None, lease_until=None,
                attempts=F("attempts") - 1, status_reason=reason, updated_at=now)
        entries_write(entries=[entry(message_id=pk, kind=TimelineKind.PAUSED, at=now,
                                     reason=reason, paused_by=paused_by[pk])
                               for reason, ids in by_reason.items() for pk in ids])
    return {pk for ids in by_reason.values() for pk in ids}


# --- releasing ------------------------------------------------------------------------------

def held_release(*, queue: str, workspace_id: Any = None, now: datetime | None = None,
                 by: str = "") -> int:
    """Give the held messages of a queue (one workspace's, or all) their timers back, in
    creation order and spaced at each workspace's rate limit; skip those another pause still
    covers; their timelines say who released them (`by`; none: the sweeper). Return how
    many were released. Runs in the caller's transaction if any."""
    if QueuePause.objects.filter(queue=queue, workspace__isnull=True).exists():
        return 0
    now = now or timezone.now()
    still_paused = QueuePause.objects.filter(queue=queue, workspace__isnull=False) \
        .values("workspace_id")
    with transaction.atomic():
        rows = list(held(queue, workspace_id).exclude(workspace_id__in=still_paused)
                    .select_for_update().order_by("workspace_id", "created_at", "id")
                    .values_list("pk", "workspace_id"))
        spacing = _spacing(queue, {workspace for _, workspace in rows})
        released, index, current = [], 0, None
        for pk, workspace in rows:
            index = 0 if workspace != current else index + 1
            current = workspace
            # Microseconds keep the order where there is no limit.
            due = now + spacing[workspace] * index + timedelta(microseconds=index)
            released.append(Message(pk=pk, due_at=due, status_reason="", updated_at=now))
        Message.objects.bulk_update(released, ["due_at", "status_reason", "updated_at"],
                                    batch_size=RELEASE_BATCH)
        entries_write(entries=[entry(message_id=m.pk, kind=TimelineKind.RELEASED, at=now,
                                     due=m.due_at, by=by or "sweeper") for m in released])
    if released:
        logger.info("released %d held %s messages", len(released), queue)
    return len(released)


def _spacing(queue: str, workspace_ids: set[Any]) -> dict[Any, timedelta]:
    """Return per workspace the gap between two sends of the queue at its rate limit."""
    channel = QUEUE_CHANNELS[queue][0]
    spacing = {}
    for workspace in Workspace.objects.filter(pk__in=workspace_ids):
        rate = ratelimit.rate_for(workspace, channel)
        spacing[workspace.pk] = timedelta(microseconds=rate.interval_us) if rate else \
            timedelta(0)
    return spacing


def release_orphans(*, now: datetime | None = None) -> int:
    """Release held messages whose pause is gone (the sweeper's repair); return how many."""
    pauses: set[tuple[str, Any]] = set(QueuePause.objects.values_list("queue", "workspace_id"))
    pairs = {(queue_for(channel), workspace) for channel, workspace
             in held().order_by().values_list("channel", "workspace_id").distinct()}
    count = 0
    for queue, workspace in sorted(pairs, key=str):
        if (queue, None) not in pauses and (queue, workspace) not in pauses:
            count += held_release(queue=queue, workspace_id=workspace, now=now)
    return count
