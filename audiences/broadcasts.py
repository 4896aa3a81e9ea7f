"""Broadcasts: one message to every contact of an audience, through the message pipeline.

A launched broadcast makes its messages in the background, BROADCAST_BATCH contacts per
transaction, with the composer every sender uses (messaging.compose) and the one insert
path (messaging.delivery.creation): the pre-send policy, rate limits, retries, dead letters
and events apply to each message as to any other. A throttle ("1000/min") gives message n
the due time start + n / rate, so the durable timer (the dispatcher) releases them at that
pace whatever the speed of the batches; without one they are queued at once.

Each batch's messages, its recipients (unique per contact: a contact is targeted once) and
the broadcast's cursor commit together, under an update conditional on the cursor and the
status, so a repeated task writes nothing twice and a cancel stops the next batch.
"""
from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from audiences.models import Broadcast, BroadcastRecipient, Segment
from audiences.publishing import RUN_BROADCAST, send, send_on_commit
from audiences.segments import SegmentInvalid, segment_rules
from core.audit import Actor, audit
from core.models import Contact, Workspace
from core.parsing import Rate
from flows.rules import AUDIENCE_ROOTS, unknown_roots, validate_rules
from flows.services import audience, audience_batch
from messaging.compose import MessageInvalid, content_check, message_compose
from messaging.delivery.creation import (
    CANCEL_BATCH,
    message_create_many,
    messages_cancel_many,
)
from messaging.events.outbox import event_emit
from messaging.events.types import BROADCAST_COMPLETED
from messaging.models import CANCELLABLE_STATUSES, Category, MessageStatus, Template

# One batch: one contacts query, N composes, one messages INSERT (with their timeline and
# events) and one recipients INSERT; ~500 keeps a transaction near the API's batch size.
BROADCAST_BATCH = 500
S = MessageStatus
# Messages not yet finished: a broadcast with any of these is still sending.
LIVE_STATUSES = (S.SCHEDULED, S.QUEUED, S.SENDING, S.RETRYING)
# How the stats fold message statuses.
STAT_OF: dict[str, str] = {S.SCHEDULED: "pending", S.QUEUED: "pending", S.SENDING: "pending",
           S.RETRYING: "pending", S.SENT: "sent", S.DELIVERED: "delivered",
           S.UNDELIVERED: "failed", S.FAILED: "failed", S.SUPPRESSED: "suppressed",
           S.CANCELLED: "cancelled"}
STATS = ("pending", "sent", "delivered", "failed", "suppressed", "cancelled")
# Errors of these inputs are answered under their own name, the others under `content`.
CONTENT_KEYS = ("channel", "category", "template")


class BroadcastInvalid(Exception):
    """The broadcast cannot be made; `fields` maps each refused input to its reasons."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__("; ".join(f"{key}: {value}" for key, value in fields.items()))
        self.fields = fields


class NotCancellable(Exception):
    """The broadcast has ended (completed or cancelled)."""


class NotLaunchable(Exception):
    """Only a draft can be launched."""


def throttle_clean(text: str) -> Rate | None:
    """Return the throttle's rate (None for none); raise BroadcastInvalid for a bad one."""
    if not text:
        return None
    try:
        return Rate.parse(text)
    except ValueError as exc:
        raise BroadcastInvalid({"throttle": [str(exc)]}) from exc


def _check(*, workspace: Workspace, channel: str, content: Any, category: str, rules: Any,
           throttle: str, template: Any = None) -> None:
    """Raise BroadcastInvalid naming every bad input."""
    errors: dict[str, Any] = {}
    if not isinstance(content, dict):
        errors["content"] = ["Must be a JSON object of the channel's content fields."]
    else:
        named = {"template": str(template)} if template is not None else {}
        try:
            content_check(data={**content, **named, "channel": channel,
                                "category": category}, workspace=workspace)
        except MessageInvalid as exc:
            for name, problems in exc.fields.items():
                if name in CONTENT_KEYS:
                    errors[name] = problems
                else:
                    errors.setdefault("content", {})[name] = problems
    if rules is not None:
        problems = validate_rules(rules, "rules") or unknown_roots(
            rules, AUDIENCE_ROOTS, "an audience", "rules")
        if problems:
            errors["rules"] = problems
    try:
        throttle_clean(throttle)
    except BroadcastInvalid as exc:
        errors.update(exc.fields)
    if errors:
        raise BroadcastInvalid(errors)


def broadcast_create(*, workspace: Workspace, name: str, channel: str, content: Any,
                     category: str = Category.MARKETING, contact_ids: list[str] | None = None,
                     rules: dict | None = None, segment: Segment | None = None,
                     send_at: Any = None, throttle: str = "", draft: bool = False,
                     template: Any = None, actor: Actor | None = None) -> Broadcast:
    """Record a broadcast and launch it (a draft waits for broadcast_launch); raise
    BroadcastInvalid, having written nothing, for bad content, rules or throttle.

    The audience is one of contact_ids, rules or a segment of the workspace (whose rules,
    other segments expanded, are copied into the broadcast's). Instead of content, a
    `template` id: its current version is kept, and each message takes its variant for the
    contact's locale."""
    given = [name for name, value in (("contact_ids", contact_ids), ("rules", rules),
                                      ("segment_id", segment)) if value is not None]
    if len(given) != 1:
        raise BroadcastInvalid({name: ["Give one of contact_ids, rules or segment_id."]
                                for name in given or ["contact_ids"]})
    if segment is not None:
        if segment.workspace_id != workspace.pk:
            raise BroadcastInvalid({"segment_id": ["No such segment in this workspace."]})
        try:
            rules = segment_rules(segment)
        except SegmentInvalid as exc:
            raise BroadcastInvalid({"segment_id": exc.fields["rules"]}) from exc
    _check(workspace=workspace, channel=channel, content=content, category=category,
           rules=rules, throttle=throttle, template=template)
    version = (Template.objects.get(workspace=workspace, pk=template).current
               if template is not None else None)
    ids = list(dict.fromkeys(str(pk) for pk in contact_ids)) if contact_ids is not None else None
    with transaction.atomic():
        broadcast = Broadcast.objects.create(
            workspace=workspace, name=name, channel=channel, content=content,
            template_version=version, category=category, contact_ids=ids, rules=rules,
            segment=segment, send_at=send_at, throttle=throttle)
        if actor is not None:
            audit(actor=actor, action="broadcast.create", workspace=workspace,
                  target_type="broadcast", target_id=broadcast.pk,
                  detail={"channel": channel, "draft": draft})
        if not draft:
            broadcast_launch(broadcast=broadcast)
    return broadcast


def broadcast_launch(*, broadcast: Broadcast) -> Broadcast:
    """Start a draft: `scheduled` until its send_at, else `sending`; its messages are made
    in the background. Raise NotLaunchable for anything but a draft."""
    now = timezone.now()
    start = broadcast.send_at if broadcast.send_at and broadcast.send_at > now else now
    status = Broadcast.Status.SCHEDULED if start > now else Broadcast.Status.SENDING
    with transaction.atomic():
        moved = Broadcast.objects.filter(pk=broadcast.pk, status=Broadcast.Status.DRAFT).update(
            status=status, start_at=start, launched_at=now, heartbeat_at=now)
        if not moved:
            raise NotLaunchable("Only a draft can be sent.")
        send_on_commit(RUN_BROADCAST, str(broadcast.pk))
    broadcast.refresh_from_db()
    return broadcast


def _candidates(broadcast: Broadcast) -> QuerySet[Contact]:
    """Return the audience's contacts in id order (rules apply per batch)."""
    return audience(workspace=broadcast.workspace, contact_ids=broadcast.contact_ids)


def _compose(broadcast: Broadcast, contacts: list[Contact], position: int,
             rate: Rate | None) -> tuple[list[Any], list[BroadcastRecipient], int]:
    """Return the batch's messages, its recipient rows and how many contacts had no
    address on the channel."""
    now = timezone.now()
    cache: dict = {}
    messages, recipients, skipped = [], [], 0
    base = {**broadcast.content, "channel": broadcast.channel,
            "category": broadcast.category}
    version = broadcast.template_version
    if version is not None:  # the version kept at creation, not the template's newest
        base["template"] = str(version.template_id)
        cache[("template", base["template"])] = version
    for contact in contacts:
        due = broadcast.start_at or now
        if rate is not None:
            due += timedelta(seconds=position * rate.period / rate.count)
        cache[("pk", str(contact.pk))] = contact
        data = {**base, "contact_id": str(contact.pk), **({"send_at": due} if due > now else {})}
        try:
            message = message_compose(workspace=broadcast.workspace, data=data,
                                      source="broadcast", contacts_cache=cache)
        except MessageInvalid:
            skipped += 1  # no phone or address for the channel
            continue
        messages.append(message)
        recipients.append(BroadcastRecipient(broadcast=broadcast, contact=contact,
                                             message=message, position=position))
        position += 1
    return messages, recipients, skipped


def broadcast_run_batch(*, broadcast: Broadcast) -> bool:
    """Make the messages of the next batch of contacts; return True while batches remain."""
    if broadcast.created_all or broadcast.status not in (Broadcast.Status.SCHEDULED,
                                                         Broadcast.Status.SENDING):
        return False
    last, read, matched = audience_batch(contacts=_candidates(broadcast), rules=broadcast.rules,
                                         cursor=broadcast.cursor, size=BROADCAST_BATCH)
    messages, recipients, skipped = _compose(broadcast, matched, broadcast.targeted,
                                             throttle_clean(broadcast.throttle))
    done = read < BROADCAST_BATCH
    with transaction.atomic():
        moved = Broadcast.objects.filter(
            pk=broadcast.pk, cursor=broadcast.cursor, created_all=False,
            status__in=(Broadcast.Status.SCHEDULED, Broadcast.Status.SENDING)).update(
            cursor=last or broadcast.cursor, created_all=done,
            targeted=broadcast.targeted + len(messages),
            skipped=broadcast.skipped + skipped, heartbeat_at=timezone.now())
        if not moved:
            return False  # cancelled, or another task made this batch
        if messages:
            message_create_many(messages=messages, origin={"broadcast": str(broadcast.pk)})
            BroadcastRecipient.objects.bulk_create(recipients, batch_size=BROADCAST_BATCH)
    return not done


def broadcast_cancel(*, broadcast: Broadcast, actor: Actor | None = None) -> Broadcast:
    """Cancel a broadcast and every message of it not yet handed to a provider; raise
    NotCancellable once it has ended."""
    now = timezone.now()
    with transaction.atomic():
        moved = Broadcast.objects.filter(
            pk=broadcast.pk, status__in=(Broadcast.Status.DRAFT, Broadcast.Status.SCHEDULED,
                                         Broadcast.Status.SENDING)).update(
            status=Broadcast.Status.CANCELLED, cancelled_at=now)
        if not moved:
            broadcast.refresh_from_db()
            raise NotCancellable(f"A broadcast that is '{broadcast.status}' cannot be "
                                 "cancelled.")
        if actor is not None:
            audit(actor=actor, action="broadcast.cancel", workspace=broadcast.workspace_id,
                  target_type="broadcast", target_id=broadcast.pk, detail={})
    # The status fence above already stops every later batch; a batch that committed first
    # is visible here.
    ids = list(BroadcastRecipient.objects.filter(
        broadcast=broadcast, message__status__in=CANCELLABLE_STATUSES)
        .values_list("message_id", flat=True))
    for offset in range(0, len(ids), CANCEL_BATCH):
        messages_cancel_many(ids=ids[offset:offset + CANCEL_BATCH],
                             reason=f"broadcast {broadcast.pk} cancelled")
    Broadcast.objects.filter(pk=broadcast.pk).update(final_stats=stats_count(broadcast))
    broadcast.refresh_from_db()
    return broadcast


def _stats_counted(ids: list[Any]) -> dict[Any, dict[str, int]]:
    """Return the messages of each broadcast of `ids` counted by what became of them
    (STATS), in one grouped query."""
    counts: dict[Any, Counter[str]] = {pk: Counter() for pk in ids}
    rows = (BroadcastRecipient.objects.filter(broadcast_id__in=ids)
            .values("broadcast_id", "message__status").annotate(n=Count("pk")))
    for row in rows:
        stat = STAT_OF.get(row["message__status"])
        if stat:
            counts[row["broadcast_id"]][stat] += row["n"]
    return {pk: {name: counted[name] for name in STATS} for pk, counted in counts.items()}


def stats_count(broadcast: Broadcast) -> dict[str, int]:
    """Return the broadcast's messages counted by what became of them (STATS)."""
    return _stats_counted([broadcast.pk])[broadcast.pk]


def stats_of(broadcast: Broadcast, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """Return targeted, skipped, the STATS counts (`counts` when the caller counted them)
    and progress (messages finished of all the broadcast will make: an estimate until
    every batch is made)."""
    counts = broadcast.final_stats or counts or stats_count(broadcast)
    finished = broadcast.targeted - counts["pending"]
    total = broadcast.targeted
    if not broadcast.created_all and broadcast.status != Broadcast.Status.CANCELLED:
        total = max(total, len(broadcast.contact_ids or []) - broadcast.skipped)
    ended = broadcast.status in (Broadcast.Status.COMPLETED, Broadcast.Status.CANCELLED)
    progress = 1.0 if ended else (finished / total if total else 0.0)
    return {"targeted": broadcast.targeted, "skipped": broadcast.skipped, **counts,
            "progress": round(progress, 4)}


def stats_of_many(broadcasts: list[Broadcast]) -> dict[Any, dict[str, Any]]:
    """Return stats_of each broadcast by id, counting those not ended in one query (a
    page of a list, not a query per row)."""
    counted = _stats_counted([b.pk for b in broadcasts if not b.final_stats])
    return {b.pk: stats_of(b, counted.get(b.pk)) for b in broadcasts}


def broadcast_data(broadcast: Broadcast) -> dict[str, Any]:
    """Return the broadcast.completed payload's data (docs/events/)."""
    stats = stats_of(broadcast)
    return {"id": str(broadcast.pk), "name": broadcast.name, "channel": broadcast.channel,
            "status": broadcast.status,
            "completed_at": broadcast.completed_at.isoformat() if broadcast.completed_at
            else None, **{key: stats[key] for key in ("targeted", "skipped", *STATS)}}


def _complete(broadcast: Broadcast) -> bool:
    """Complete a sending broadcast whose every message is made and finished, emitting
    broadcast.completed in the same transaction; return whether it did."""
    if BroadcastRecipient.objects.filter(broadcast=broadcast,
                                         message__status__in=LIVE_STATUSES).exists():
        return False
    now = timezone.now()
    with transaction.atomic():
        moved = Broadcast.objects.filter(pk=broadcast.pk, status=Broadcast.Status.SENDING,
                                         created_all=True).update(
            status=Broadcast.Status.COMPLETED, completed_at=now,
            final_stats=stats_count(broadcast))
        if moved:
            broadcast.refresh_from_db()
            event_emit(workspace_id=broadcast.workspace_id, type=BROADCAST_COMPLETED,
                       data=broadcast_data(broadcast))
    return bool(moved)


def broadcasts_tick() -> dict[str, int]:
    """Move due scheduled broadcasts to sending, complete finished ones, and queue again
    the batches of those whose task was lost; return how many of each."""
    now = timezone.now()
    due = Broadcast.objects.filter(status=Broadcast.Status.SCHEDULED,
                                   start_at__lte=now).update(status=Broadcast.Status.SENDING)
    completed = sum(_complete(b) for b in Broadcast.objects.filter(
        status=Broadcast.Status.SENDING, created_all=True)[:100])
    stale = now - timedelta(seconds=settings.BROADCAST_STALL_SECONDS)
    lost = list(Broadcast.objects.filter(
        Q(status=Broadcast.Status.SCHEDULED) | Q(status=Broadcast.Status.SENDING),
        created_all=False, heartbeat_at__lt=stale).values_list("pk", flat=True)[:100])
    for pk in lost:
        send(RUN_BROADCAST, str(pk))
    return {"due": due, "completed": completed, "requeued": len(lost)}
