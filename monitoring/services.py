"""Operator actions: replay, discard and export dead letters; requeue stuck work; purge history.

Replaying can never send twice. A dead letter is locked while it is replayed and replays
only while `open`; its message goes back to `queued` only through a conditional UPDATE
from `failed` (same row, same id, so the provider sees the same idempotency key), and its
step is retried only if the step and its execution are still `failed`. Everything happens
in one transaction and the message is published after commit.

The dashboard calls these functions directly; the REST API, the admin actions and the
management commands are thin layers over them.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from core.audit import Actor, as_actor, audit
from core.models import AuditEntry, DeadLetter, Workspace
from flows import engine, operations
from flows.models import Execution, ScheduleRun, Step
from messaging import publishing, ratelimit
from messaging.channels import QUEUE_CHANNELS
from messaging.delivery import sweeper
from messaging.events.types import EVENT_SOURCE
from messaging.models import (
    FAILURE_STATUSES,
    FINAL_STATUSES,
    SUCCESS_STATUSES,
    Message,
    MessageStatus,
)
from monitoring.models import AlertEvent, HistoryPurge

logger = logging.getLogger(__name__)

# One purge batch deletes this many parent rows (and their children: ~3 attempts per
# message, ~5 steps per execution): one SELECT of ids plus a few DELETE ... WHERE id IN,
# tens of milliseconds on PostgreSQL, short enough not to hold locks that block senders.
PURGE_BATCH = 1000
# A bulk replay through the API handles at most this many entries per request (each is its
# own small transaction, ~5 ms); the answer says how many remain, so callers repeat.
BULK_REPLAY_LIMIT = 1000
EXPORT_FIELDS = ["id", "workspace_id", "kind", "source_id", "channel", "flow_id", "error",
                 "error_code", "attempts", "status", "replay_count", "replay_result",
                 "replayed_at", "replayed_by", "created_at", "payload"]
FINISHED_EXECUTION = (Execution.Status.COMPLETED, Execution.Status.FAILED,
                      Execution.Status.CANCELLED)

Letter = DeadLetter.Status


@dataclass(frozen=True)
class ReplayOutcome:
    """What replaying one dead letter did: replayed, or refused with the reason."""

    letter_id: int
    replayed: bool
    reason: str


@dataclass
class BulkReplayReport:
    """Counts of a bulk replay, with the first refusals and their reasons."""

    matched: int = 0
    replayed: int = 0
    refused: int = 0
    remaining: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as the API answers it."""
        return {"matched": self.matched, "replayed": self.replayed, "refused": self.refused,
                "remaining": self.remaining, "refusals": self.refusals}


class _Refused(Exception):
    """Internal: the source cannot be replayed (the reason is the message)."""


# --- selecting ------------------------------------------------------------------------------

def dead_letters_filter(*, workspace: Workspace | None = None, kind: str = "",
                        channel: str = "", status: str = "", error_contains: str = "",
                        since: datetime | None = None, until: datetime | None = None,
                        flow_id: str = "", source_id: str = "") -> QuerySet[DeadLetter]:
    """Return the dead letters matching every given filter (empty filters match all)."""
    queryset = DeadLetter.objects.select_related("workspace")
    if workspace is not None:
        queryset = queryset.filter(workspace=workspace)
    exact = {"kind": kind, "channel": channel, "status": status, "flow_id": flow_id,
             "source_id": source_id}
    queryset = queryset.filter(**{name: value for name, value in exact.items() if value})
    if error_contains:
        queryset = queryset.filter(Q(error__icontains=error_contains)
                                   | Q(error_code__icontains=error_contains))
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    if until is not None:
        queryset = queryset.filter(created_at__lt=until)
    return queryset


# --- replay ---------------------------------------------------------------------------------

def dead_letter_replay(*, letter_id: int, actor: Actor | str = "") -> ReplayOutcome:
    """Replay one dead letter once: re-queue its failed message or retry its failed step.

    A letter that is not `open` (already replayed, or discarded) is refused, as is one whose
    source is no longer failed; the refusal reason is returned and stored in replay_result.
    """
    now = timezone.now()
    who = as_actor(actor)
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().filter(pk=letter_id).first()
        if letter is None:
            return ReplayOutcome(letter_id, False, "No such dead letter.")
        if letter.status == Letter.REPLAYED:
            return ReplayOutcome(letter_id, False, _already_replayed(letter))
        if letter.status == Letter.DISCARDED:
            return ReplayOutcome(letter_id, False, "Discarded; a discarded entry is not "
                                                   "replayed.")
        try:
            result = (_replay_message(letter, now) if letter.kind == DeadLetter.Kind.MESSAGE
                      else _replay_step(letter, now, who.label))
        except _Refused as exc:
            DeadLetter.objects.filter(pk=letter.pk).update(replay_result=f"refused: {exc}")
            return ReplayOutcome(letter_id, False, str(exc))
        DeadLetter.objects.filter(pk=letter.pk).update(
            status=Letter.REPLAYED, replay_count=F("replay_count") + 1, replay_result=result,
            replayed_at=now, replayed_by=who.label[:100])
        audit(actor=who, action="dead_letter.replay", workspace=letter.workspace_id,
              target_type="dead_letter", target_id=letter.pk,
              detail={"kind": letter.kind, "source_id": letter.source_id, "result": result})
    logger.info("dead letter %s replayed by %s: %s", letter_id, who.label, result)
    return ReplayOutcome(letter_id, True, result)


def _already_replayed(letter: DeadLetter) -> str:
    when = letter.replayed_at.isoformat(timespec="seconds") if letter.replayed_at else "?"
    who = f" by {letter.replayed_by}" if letter.replayed_by else ""
    return f"Already replayed at {when}{who}: {letter.replay_result}"


def _replay_message(letter: DeadLetter, now: datetime) -> str:
    try:
        message = Message.objects.select_for_update().filter(pk=letter.source_id).first()
    except ValidationError:
        message = None
    if message is None:
        raise _Refused("The message no longer exists (purged?).")
    step = Step.objects.filter(message_id=message.pk).only("pk").first()
    if step is not None and DeadLetter.objects.filter(kind=DeadLetter.Kind.STEP,
                                                      source_id=str(step.pk)).exists():
        # Re-sending the message would not resume the flow, and retrying the step sends a
        # new message: replaying both would deliver twice.
        raise _Refused(f"The message belongs to flow step {step.pk}, which failed its "
                       f"execution; replay that step's dead letter so the flow continues.")
    budget = settings.MAX_ATTEMPTS.get(message.channel, 3)
    changed = Message.objects.filter(pk=message.pk, status=MessageStatus.FAILED).update(
        status=MessageStatus.QUEUED, max_attempts=message.attempts + budget, enqueued_at=now,
        due_at=now, lease_until=None, rate_slot_at=None, failed_at=None, updated_at=now)
    if not changed:
        raise _Refused(f"The message is {message.status}, not failed.")
    message.status, message.due_at = MessageStatus.QUEUED, now
    transaction.on_commit(lambda: publishing.publish([message]))
    return (f"message {message.pk} queued again (attempt {message.attempts + 1}, "
            f"{budget} more allowed)")


def _replay_step(letter: DeadLetter, now: datetime, actor: str) -> str:
    try:
        step = Step.objects.select_for_update().filter(pk=int(letter.source_id)).first()
    except ValueError:
        step = None
    if step is None:
        raise _Refused("The step no longer exists (purged?).")
    failed_message_id = step.message_id
    try:
        operations.step_retry(step=step)
    except operations.NotRetryable as exc:
        raise _Refused(f"The step is {step.status}: {exc}") from exc
    if failed_message_id is not None:
        DeadLetter.objects.filter(kind=DeadLetter.Kind.MESSAGE, source_id=str(failed_message_id),
                                  status=Letter.OPEN).update(
            status=Letter.REPLAYED, replayed_at=now, replayed_by=actor[:100],
            replay_result=f"superseded: step {step.pk} was retried (it sends a new message)")
    return f"step {step.pk} retried; execution {step.execution_id} resumes at {step.node_id}"


def dead_letters_replay(*, queryset: QuerySet[DeadLetter], actor: Actor | str = "",
                        limit: int | None = None,
                        on_progress: Callable[[int, int, ReplayOutcome], None] | None = None,
                        ) -> BulkReplayReport:
    """Replay each dead letter of the queryset, oldest first, each in its own transaction.

    Only `open` entries are replayed (others are counted as refused by the per-entry rule).
    `on_progress(done, total, outcome)` is called after each entry.
    """
    ids = list(queryset.order_by("created_at", "id").values_list("pk", flat=True))
    report = BulkReplayReport(matched=len(ids))
    chosen = ids if limit is None else ids[:limit]
    report.remaining = len(ids) - len(chosen)
    for done, letter_id in enumerate(chosen, start=1):
        outcome = dead_letter_replay(letter_id=letter_id, actor=actor)
        if outcome.replayed:
            report.replayed += 1
        else:
            report.refused += 1
            if len(report.refusals) < 100:
                report.refusals.append({"id": letter_id, "reason": outcome.reason})
        if on_progress is not None:
            on_progress(done, len(chosen), outcome)
    return report


def dead_letter_discard(*, letter_id: int, actor: Actor | str = "") -> bool:
    """Mark an open dead letter discarded (kept for history, never replayed); False if not open."""
    return dead_letters_discard(queryset=DeadLetter.objects.filter(pk=letter_id),
                                actor=actor) == 1


def dead_letters_discard(*, queryset: QuerySet[DeadLetter], actor: Actor | str = "") -> int:
    """Discard every open dead letter of the queryset, each with its audit entry, in one
    transaction; return how many."""
    who = as_actor(actor)
    with transaction.atomic():
        letters = list(queryset.filter(status=Letter.OPEN).select_for_update()
                       .only("pk", "workspace_id", "kind", "source_id"))
        DeadLetter.objects.filter(pk__in=[letter.pk for letter in letters]).update(
            status=Letter.DISCARDED, replay_result="discarded", replayed_at=timezone.now(),
            replayed_by=who.label[:100])
        for letter in letters:
            audit(actor=who, action="dead_letter.discard", workspace=letter.workspace_id,
                  target_type="dead_letter", target_id=letter.pk,
                  detail={"kind": letter.kind, "source_id": letter.source_id})
    return len(letters)


# --- export ---------------------------------------------------------------------------------

def _export_row(letter: DeadLetter) -> dict[str, Any]:
    row = {name: getattr(letter, name) for name in EXPORT_FIELDS}
    for name in ("replayed_at", "created_at"):
        row[name] = row[name].isoformat() if row[name] else None
    row["workspace_id"] = str(row["workspace_id"])
    return row


def dead_letters_export(*, queryset: QuerySet[DeadLetter], fmt: str) -> Iterator[str]:
    """Yield the dead letters as CSV (payload as JSON text) or as one JSON array, in chunks.

    Rows are read with a server-side cursor, so exports of any size use constant memory.
    """
    if fmt not in ("csv", "json"):
        raise ValueError("format must be csv or json")
    rows = queryset.order_by("created_at", "id").iterator(chunk_size=500)
    if fmt == "json":
        yield "["
        for index, letter in enumerate(rows):
            yield ("," if index else "") + json.dumps(_export_row(letter), default=str)
        yield "]\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    for letter in rows:
        row = _export_row(letter)
        row["payload"] = json.dumps(row["payload"], default=str)
        writer.writerow({name: _spreadsheet_safe(value) for name, value in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _spreadsheet_safe(value: Any) -> Any:
    """Quote text a spreadsheet would run as a formula (provider errors are untrusted).

    https://owasp.org/www-community/attacks/CSV_Injection
    """
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# --- stuck work -------------------------------------------------------------------------------

def stuck_report(*, now: datetime | None = None) -> dict[str, int]:
    """Count what the sweepers would repair right now (nothing is changed)."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.REQUEUE_AFTER_SECONDS)
    messages = Message.objects
    return {
        "expired_leases": messages.filter(status=MessageStatus.SENDING,
                                          lease_until__lt=now).count(),
        "stale_queued": messages.filter(status=MessageStatus.QUEUED).filter(
            Q(enqueued_at__lt=stale) | Q(enqueued_at__isnull=True)).count(),
        "stuck_executions": Execution.objects.filter(
            status=Execution.Status.RUNNING, updated_at__lt=stale).exclude(
            lease_until__gt=now).count(),
        "orphan_steps": Step.objects.filter(
            status=Step.Status.WAITING,
            message__status__in=SUCCESS_STATUSES | FAILURE_STATUSES).count(),
    }


def stuck_requeue(*, now: datetime | None = None) -> dict[str, dict[str, int]]:
    """Run the message and flow sweepers once, now; return what was found and repaired."""
    found = stuck_report(now=now)
    return {"found": found, "messages": sweeper.sweep(now=now),
            "flows": engine.sweep(now=now)}


# --- retention ------------------------------------------------------------------------------

# The kinds of history retention purges, in the order a run deletes them (children first:
# the messages an execution sent go before the execution, its steps before it too).
HISTORY_KINDS = ("event_deliveries", "messages", "steps", "executions", "schedule_runs",
                 "dead_letters", "alert_events", "audit_log")
# Final message statuses retention may delete: every final one, and inbound messages.
PURGEABLE_MESSAGE_STATUSES = (*FINAL_STATUSES, MessageStatus.RECEIVED)
PURGE_LOCK_KEY = "relay:retention:purge"


def _purgeable(cutoffs: dict[str, datetime]) -> dict[str, QuerySet]:
    """Return, per kind named in `cutoffs`, the rows older than its cutoff (what an open
    dead letter needs to be replayed is kept: its message, and its step's execution)."""
    open_letters = DeadLetter.objects.filter(status=Letter.OPEN)
    open_messages = [source for source in open_letters.filter(
        kind=DeadLetter.Kind.MESSAGE).values_list("source_id", flat=True) if _is_uuid(source)]
    open_steps = [int(source) for source in open_letters.filter(
        kind=DeadLetter.Kind.STEP).values_list("source_id", flat=True) if source.isdigit()]
    kept_executions = Step.objects.filter(pk__in=open_steps).values("execution_id")
    final_messages = Message.objects.filter(status__in=PURGEABLE_MESSAGE_STATUSES).exclude(
        pk__in=open_messages)
    finished = Execution.objects.filter(status__in=FINISHED_EXECUTION).exclude(
        pk__in=kept_executions)
    kinds: dict[str, Callable[[datetime], QuerySet]] = {
        "event_deliveries": lambda cut: final_messages.filter(source=EVENT_SOURCE,
                                                              updated_at__lt=cut),
        "messages": lambda cut: final_messages.exclude(source=EVENT_SOURCE).filter(
            updated_at__lt=cut),
        "steps": lambda cut: Step.objects.filter(
            execution__in=finished.filter(updated_at__lt=cut)),
        "executions": lambda cut: finished.filter(updated_at__lt=cut),
        "schedule_runs": lambda cut: ScheduleRun.objects.filter(occurrence_at__lt=cut),
        "dead_letters": lambda cut: DeadLetter.objects.exclude(status=Letter.OPEN).filter(
            created_at__lt=cut),
        "alert_events": lambda cut: AlertEvent.objects.filter(resolved_at__lt=cut),
        "audit_log": lambda cut: AuditEntry.objects.filter(created_at__lt=cut),
    }
    return {kind: kinds[kind](cutoffs[kind]) for kind in HISTORY_KINDS if kind in cutoffs}


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def history_purge(*, older_than: timedelta, now: datetime | None = None,
                  dry_run: bool = False,
                  on_batch: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Delete finished history older than `older_than`, PURGE_BATCH parents at a time.

    Final messages (with their delivery attempts and timelines; event deliveries too),
    finished executions (with their steps), schedule runs, replayed/discarded dead letters
    and resolved alert events; not the audit log, which only the periodic purge ages out
    (retention_purge, RETENTION_AUDIT_LOG_DAYS). Messages and steps of open dead letters are
    kept so they stay replayable.
    Return the deleted (or, with dry_run, deletable) rows per model label.
    """
    cutoff = (now or timezone.now()) - older_than
    cutoffs = {kind: cutoff for kind in HISTORY_KINDS if kind not in ("audit_log", "steps")}
    totals: dict[str, int] = {}
    for kind, queryset in _purgeable(cutoffs).items():
        if dry_run:
            label = queryset.model._meta.label
            totals[label] = totals.get(label, 0) + queryset.count()
            continue
        for label, count in _delete_in_batches(queryset, kind, on_batch,
                                               batch=PURGE_BATCH).items():
            totals[label] = totals.get(label, 0) + count
    return totals


def retention_purge(*, now: datetime | None = None,
                    on_batch: Callable[[str, int], None] | None = None) -> HistoryPurge | None:
    """Run the periodic purge: each kind older than its RETENTION_<KIND>_DAYS (0: kept),
    RETENTION_BATCH_SIZE rows per short transaction, recorded as a HistoryPurge row.

    One run at a time across every beat and worker (a Redis lock): a run that finds another
    under way returns None and deletes nothing. An error stops the run; what it deleted
    until then stays deleted and the row records the error.
    """
    now = now or timezone.now()
    cutoffs = {kind: now - timedelta(days=days)
               for kind, days in settings.RETENTION_DAYS.items() if days > 0}
    redis = ratelimit.client()
    token = uuid.uuid4().hex
    if not redis.set(PURGE_LOCK_KEY, token, nx=True, ex=settings.CELERY_TASK_TIME_LIMIT):
        logger.info("history purge skipped: another run holds the lock")
        return None
    record = HistoryPurge.objects.create(started_at=now)
    # Inside the task's time limit: what is left waits for the next run.
    deadline = time.monotonic() + settings.RETENTION_RUN_SECONDS
    try:
        for kind, queryset in _purgeable(cutoffs).items():
            if time.monotonic() >= deadline:
                record.complete = False
                break
            label = queryset.model._meta.label
            counts = _delete_in_batches(queryset, kind, on_batch,
                                        batch=settings.RETENTION_BATCH_SIZE, deadline=deadline)
            record.deleted[kind] = counts.get(label, 0)
            record.rows += sum(counts.values())
            redis.expire(PURGE_LOCK_KEY, settings.CELERY_TASK_TIME_LIMIT)
    except Exception as exc:
        logger.exception("history purge failed")
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        record.finished_at = timezone.now()
        record.complete = record.complete and time.monotonic() < deadline
        record.save(update_fields=["deleted", "rows", "error", "finished_at", "complete"])
        if redis.get(PURGE_LOCK_KEY) == token:
            redis.delete(PURGE_LOCK_KEY)
    logger.info("history purge: %d row(s) deleted %s", record.rows, record.deleted)
    return record


def _delete_in_batches(queryset: QuerySet, kind: str,
                       on_batch: Callable[[str, int], None] | None, *,
                       batch: int, deadline: float | None = None) -> dict[str, int]:
    """Delete the queryset's rows `batch` at a time, each batch its own short transaction
    that checks the rows still qualify (a row that changed meanwhile is left alone); stop
    at `deadline` (time.monotonic()) if given."""
    totals: dict[str, int] = {queryset.model._meta.label: 0}
    while deadline is None or time.monotonic() < deadline:
        ids = list(queryset.order_by().values_list("pk", flat=True)[:batch])
        if not ids:
            return totals
        with transaction.atomic():
            _, per_model = queryset.filter(pk__in=ids).delete()
        for label, count in per_model.items():
            totals[label] = totals.get(label, 0) + count
        if on_batch is not None:
            on_batch(kind, len(ids))
        if not per_model.get(queryset.model._meta.label):
            return totals  # the batch no longer qualified: stop rather than spin
    return totals


# --- one queue's actions (API and dashboard) ---------------------------------------------------

# Dead letters one "retry failed" replays: each is its own transaction, so a request that
# asks for more than this replays this many and says how many remain.
QUEUE_RETRY_LIMIT = 500


def queue_retry_failed(*, queue: str, workspace: Workspace | None,
                       actor: Actor | str) -> BulkReplayReport:
    """Replay the open dead letters of the queue's failed messages (the workspace's, or all
    with None), oldest first, up to QUEUE_RETRY_LIMIT; each is re-queued as its replay is."""
    letters = dead_letters_filter(workspace=workspace, kind=DeadLetter.Kind.MESSAGE,
                                  status=Letter.OPEN).filter(channel__in=QUEUE_CHANNELS[queue])
    return dead_letters_replay(queryset=letters, actor=actor, limit=QUEUE_RETRY_LIMIT)


def queue_clean_completed(*, queue: str, workspace: Workspace | None, older_than: timedelta,
                          actor: Actor | str, now: datetime | None = None) -> int:
    """Delete the queue's completed messages (sent or delivered) last changed before
    `older_than` ago, with their attempts, PURGE_BATCH at a time; return how many. The
    workspace's only, or every workspace's with None; audited."""
    cutoff = (now or timezone.now()) - older_than
    completed = Message.objects.filter(channel__in=QUEUE_CHANNELS[queue],
                                       status__in=SUCCESS_STATUSES, updated_at__lt=cutoff)
    if workspace is not None:
        completed = completed.filter(workspace=workspace)
    deleted = _delete_in_batches(completed, "messages", None, batch=PURGE_BATCH).get(
        Message._meta.label, 0)
    with transaction.atomic():
        audit(actor=actor, action="queue.clean", workspace=workspace, target_type="queue",
              target_id=queue, detail={"older_than_seconds": int(older_than.total_seconds()),
                                       "deleted": deleted})
    return deleted


def parse_age(text: str) -> timedelta:
    """Parse "30d", "12h", "90m", "45s" or "2w" into a timedelta (ValueError otherwise)."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    text = (text or "").strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise ValueError(f"expected a duration such as 30d, 12h or 90m, got {text!r}")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def actor_for(kind: str, name: Any) -> str:
    """Return the replayed_by text for an actor: "api:<prefix>", "admin:<user>", "command"."""
    return f"{kind}:{name}" if name else kind

