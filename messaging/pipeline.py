"""The delivery pipeline: create, publish, claim, send, record, retry, dead-letter, sweep.

The Message row is the truth; the broker only wakes workers (README.md, "Delivery"). Every step that
changes a message's status is a conditional UPDATE, so a duplicated or late task does
nothing, and a provider is never called inside an open transaction.
"""
from __future__ import annotations

import logging
import os
import random
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Field, Q
from django.utils import timezone

from core.audit import Actor, audit
from core.models import Contact, DeadLetter, Workspace
from messaging import events, pauses, policy, ratelimit
from messaging.channels import AI, WEBHOOK, rate_key_for
from messaging.models import (
    CANCELLABLE_STATUSES,
    TIMER_STATUSES,
    Category,
    DeliveryAttempt,
    Message,
    MessageStatus,
    Suppression,
)
from messaging.providers.base import Outbound, ProviderError, Receipt
from messaging.providers.registry import provider_for
from messaging.publishing import (  # noqa: F401 (publish and its constants stay importable here)
    DELIVER_TASK,
    PRIORITY_STEPS,
    PUBLISH_BATCH,
    publish,
)
from messaging.suppressions import suppression_add
from messaging.templating import render_content
from messaging.unsubscribe import list_unsubscribe_headers

logger = logging.getLogger(__name__)

# One dispatcher pass claims at most this many due rows: one SELECT + one UPDATE + N
# publishes, a few milliseconds per hundred rows, short enough to hold row locks.
DISPATCH_BATCH = 500
# One sweeper pass repairs at most this many rows per kind; the next pass takes the rest.
SWEEP_BATCH = 1000
# Metadata naming a message's own rate key, counted apart inside its channel's limit (the
# older AI queue's rate_limit_key: one counter per end user instead of one per workspace).
RATE_KEY_FIELD = "_rate_limit_key"
# Metadata asking for another AI callback body; AI_RESPONSE_SHAPE is the older AI queue's
# dedicated one, {workspace_id, message_id, job_id, response_text}, for its clients' jobs.
CALLBACK_SHAPE_FIELD = "_callback_shape"
AI_RESPONSE_SHAPE = "ai_response"


# Provider answers that arrive within this long of the first one waited for are recorded in
# one transaction: a crash loses at most the calls in flight and this window's answers,
# and a fast provider's wave of PROVIDER_CONCURRENCY calls costs one commit, not one each.
RECORD_WINDOW_SECONDS = 0.02

# The event a delivery outcome emits.
FINAL_EVENTS = {"sent": events.MESSAGE_SENT, "failed": events.MESSAGE_FAILED}

# A message's category when its sender names none: flow (and so schedule) sends are
# marketing, API and compat sends transactional (README.md, "Recipients' rules").
DEFAULT_CATEGORY = {"flow": Category.MARKETING}


class NotCancellable(Exception):
    """The message is past the point where it can be cancelled."""


# --- creation -----------------------------------------------------------------------------

def message_build(*, workspace: Workspace, channel: str, to: str, content: dict[str, Any],
                  contact: Contact | None = None, send_at: datetime | None = None,
                  metadata: dict | None = None, priority: str = "normal",
                  source: str = "api", parent: Message | None = None,
                  category: str | None = None, status_callback_url: str = "") -> Message:
    """Return an unsaved Message, `scheduled` when send_at is more than a moment away.
    Without a category, flow sends are marketing and everything else transactional."""
    now = timezone.now()
    scheduled = send_at is not None and send_at > now
    return Message(
        workspace=workspace, contact=contact, channel=channel, to=to, content=content,
        metadata=metadata or {}, priority=priority, source=source, parent=parent,
        category=category or DEFAULT_CATEGORY.get(source, Category.TRANSACTIONAL),
        status=MessageStatus.SCHEDULED if scheduled else MessageStatus.QUEUED,
        scheduled_for=send_at, due_at=send_at if scheduled else now,
        enqueued_at=None if scheduled else now,
        max_attempts=settings.MAX_ATTEMPTS.get(channel, 3),
        status_callback_url=status_callback_url,
    )


def message_create_many(*, messages: list[Message]) -> list[Message]:
    """Insert the messages in one transaction and publish the queued ones after commit;
    message.queued goes out in the same transaction."""
    with transaction.atomic():
        Message.objects.bulk_create(messages, batch_size=500)
        events.messages_emit(changes=[(m, events.MESSAGE_QUEUED) for m in messages],
                             fresh=True)
        queued = [m for m in messages if m.status == MessageStatus.QUEUED]
        if queued:
            transaction.on_commit(lambda: publish(queued))
    return messages


def message_create(**kwargs: Any) -> Message:
    """Create one message (see message_build for the arguments)."""
    return message_create_many(messages=[message_build(**kwargs)])[0]


def message_cancel(*, message: Message, actor: Actor | None = None) -> Message:
    """Cancel a message that has not been handed to a provider yet; an operator's cancel
    (with an actor) goes in the audit log in the same transaction."""
    now = timezone.now()
    with transaction.atomic():
        changed = Message.objects.filter(pk=message.pk, status__in=CANCELLABLE_STATUSES
                                         ).update(status=MessageStatus.CANCELLED,
                                                  cancelled_at=now, due_at=None,
                                                  status_reason="", updated_at=now)
        if changed and actor is not None:
            audit(actor=actor, action="message.cancel", workspace=message.workspace_id,
                  target_type="message", target_id=message.pk,
                  detail={"channel": message.channel, "status": message.status})
    message.refresh_from_db()
    if not changed:
        raise NotCancellable(f"A message that is '{message.status}' cannot be cancelled.")
    return message


# --- the durable timer --------------------------------------------------------------------

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
            status=MessageStatus.QUEUED, enqueued_at=now, updated_at=now)
        transaction.on_commit(lambda: publish(due))
    return len(due)


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Repair what the broker lost; return how many rows of each kind were repaired.

    - `sending` past its lease: the worker died. With a started attempt it died mid-call:
      the attempt is closed as `lost` and the message flagged a possible duplicate (the
      provider may have acted); without one it was never called and is not flagged. Either
      way the message is queued again, or fails if it has no attempts left.
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
        for message in expired:
            # Only a started attempt may have reached the provider: flag only those.
            called = _close_lost_attempt(message, now)
            flag = {"possible_duplicate": True} if called else {}
            if message.attempts >= message.max_attempts:
                _fail(message, now, "worker lost during the last attempt" if called else
                      "worker lost before the last attempt's provider call", "lost", **flag)
                failed.append((message.pk, message.source))
                continue
            Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(
                status=MessageStatus.QUEUED, lease_until=None, enqueued_at=now,
                due_at=now, updated_at=now, **flag)
        requeue = [m for m in expired if m.attempts < m.max_attempts]
        lost = [m for m in expired if m.attempts >= m.max_attempts]
        events.messages_emit(changes=[(m, events.MESSAGE_FAILED) for m in lost])
        events.deliveries_recorded(outcomes=[(m, "failed") for m in lost], now=now)
        transaction.on_commit(lambda: publish(requeue, now=now))
        transaction.on_commit(lambda: _notify_finals(failed))
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
                     .only("id", "channel", "priority")[:SWEEP_BATCH])
        Message.objects.filter(pk__in=[m.pk for m in stale]).update(enqueued_at=now)
        for message in stale:
            message.due_at = None
        transaction.on_commit(lambda: publish(stale, now=now))
    if stale:
        logger.warning("sweeper republished %d queued messages", len(stale))
    return len(stale)


# --- delivery -----------------------------------------------------------------------------

def messages_deliver(*, message_ids: list[str], task_id: str = "") -> dict[str, str]:
    """Claim the messages, respect rate limits, call providers, record the outcomes.

    Return {message id: skipped (not ours) | paused | deferred | suppressed | sent | retrying
    | failed | stale}. A paused queue holds its messages first (messaging.pauses), then the
    recipients' rules (messaging.policy) decide, then the rate limit.
    Round trips per batch: one claim, one read, then one transaction per wave of concurrent
    provider calls (see _send_and_record); the calls run outside any transaction.
    """
    now = timezone.now()
    claimed = _claim(message_ids, now)
    outcomes = {str(mid): "skipped" for mid in message_ids}
    if not claimed:
        return outcomes
    # In due order, so rate-limit slots are booked in the order the messages were due.
    messages = list(Message.objects.select_related("workspace", "contact", "webhook_endpoint")
                    .filter(pk__in=claimed).order_by("due_at", "created_at", "id"))
    held = pauses.hold_paused(messages, now)
    outcomes.update({str(pk): "paused" for pk in held})
    messages = [message for message in messages if message.pk not in held]
    decisions = policy.decide_all(messages, now=now)
    ready, refused = [], []
    for message in messages:
        decision = decisions[message.pk]
        if decision.outcome == policy.SUPPRESSED:
            refused.append((message, decision.reason))
            outcomes[str(message.pk)] = "suppressed"
        elif decision.outcome == policy.DEFERRED and decision.until is not None:
            _put_back(message, decision.until, now)
            outcomes[str(message.pk)] = "deferred"
        elif _defer_for_rate_limit(message, now):
            outcomes[str(message.pk)] = "deferred"
        else:
            ready.append(message)
    _notify_finals(_suppress_all(refused, now))
    outcomes.update(_send_and_record(ready, task_id, now))
    return outcomes


def _claim(message_ids: list[str], now: datetime) -> list[Any]:
    """Move queued messages to sending with a lease and count the attempt; return the ids
    this call claimed (UPDATE ... RETURNING: one round trip, atomic per row)."""
    from uuid import UUID

    ids = [UUID(str(mid)) for mid in message_ids]
    lease_until = now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    table = Message._meta.db_table
    placeholders = ", ".join(["%s"] * len(ids))
    params: list[Any] = [MessageStatus.SENDING, lease_until, now]
    if connection.vendor == "sqlite":
        params += [mid.hex for mid in ids]  # Django stores UUIDs as 32-char hex there
    else:
        params += ids
    params.append(MessageStatus.QUEUED)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, lease_until = %s, updated_at = %s, "
            f"attempts = attempts + 1, status_reason = '' "
            f"WHERE id IN ({placeholders}) AND status = %s RETURNING id", params)
        return [row[0] for row in cursor.fetchall()]


@dataclass
class _Call:
    """One provider call of a batch: its message, attempt row, provider and request, and,
    once it has finished, its result (set at once when the request cannot be built)."""

    message: Message
    attempt: DeliveryAttempt
    provider: Any = None
    outbound: Outbound | None = None
    result: Receipt | ProviderError | None = None
    started: bool = False  # its started attempt is written: the call may be made

    @property
    def rendered(self) -> dict | None:
        return self.outbound.content if self.outbound is not None else None


_pool: tuple[int, ThreadPoolExecutor] | None = None


def _provider_pool() -> ThreadPoolExecutor:
    """Return this process's provider threads. They outlive a batch so that each keeps its
    HTTP session, and so its keep-alive connections, to every provider host (one new TCP
    connection per call otherwise). Made again in a forked child (Celery's prefork pool)."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(
            max_workers=max(1, settings.PROVIDER_CONCURRENCY), thread_name_prefix="provider"))
    return _pool[1]


def _prepare(message: Message, task_id: str, now: datetime) -> _Call:
    """Return the message's call: its provider and request, or a permanent error as its
    result when the request cannot be built (no call is made then)."""
    call = _Call(message, DeliveryAttempt(message=message, number=message.attempts,
                                          task_id=task_id or "", started_at=now))
    try:
        call.provider, config = provider_for(message.workspace, message.channel)
        if message.webhook_endpoint_id and message.webhook_endpoint is not None:
            # An event delivery is signed for its endpoint, not with the workspace's.
            config["secrets"] = events.endpoint_secrets(message.webhook_endpoint, now)
        call.outbound = _outbound(message, config)
    except (ValueError, KeyError) as exc:
        call.result = ProviderError(str(exc), permanent=True, code="invalid")
        return call
    call.attempt.provider = call.provider.name
    return call


def _send_and_record(messages: list[Message], task_id: str, now: datetime) -> dict[str, str]:
    """Call each message's provider, PROVIDER_CONCURRENCY at a time, and record each
    outcome as its call finishes; return {message id: outcome}.

    Each transaction records the answers that came in (within RECORD_WINDOW_SECONDS of each
    other) and writes the `started` attempts of the calls about to start, so a crash loses
    only the calls in flight, and the sweeper can tell a message that was never called
    (requeued as is) from one that may have been (flagged a possible duplicate).
    """
    calls = [_prepare(message, task_id, now) for message in messages]
    waiting = deque(call for call in calls if call.result is None)
    finished = [call for call in calls if call.result is not None]
    running: dict[Future, _Call] = {}
    limit = max(1, settings.PROVIDER_CONCURRENCY)
    outcomes: dict[str, str] = {}
    # Read once per batch, not once per transaction (see events.messages_emit).
    endpoints = events.subscribers({message.workspace_id for message in messages})
    while waiting or running or finished:
        starting = [waiting.popleft() for _ in range(min(len(waiting), limit - len(running)))]
        outcomes.update(_record_group(finished, starting, endpoints))
        finished = []
        for call in starting:
            if call.started and call.outbound is not None:
                running[_provider_pool().submit(_call, call.provider, call.outbound)] = call
        if not running:
            continue
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        more, _ = wait(set(running) - done, timeout=RECORD_WINDOW_SECONDS)
        for future in done | more:
            call = running.pop(future)
            call.result = future.result()
            finished.append(call)
    return outcomes


def _call(provider: Any, outbound: Outbound) -> Receipt | ProviderError:
    """Send through the provider, turning every failure into a ProviderError."""
    try:
        return provider.send(outbound)
    except ProviderError as exc:
        return exc
    except Exception as exc:  # a provider bug must not strand the message in `sending`
        logger.exception("provider %s raised unexpectedly", provider.name)
        return ProviderError(f"{type(exc).__name__}: {exc}", permanent=False,
                             outcome_unknown=True, code="exception")


def _defer_for_rate_limit(message: Message, now: datetime) -> bool:
    """Book a rate-limit slot; if it is in the future, put the message back on its timer."""
    if message.rate_slot_at is not None and message.rate_slot_at <= now + timedelta(
            milliseconds=50):
        return False  # this message already holds the slot it is due at
    rate, reservation = _rate_and_key(message)
    if rate is None:
        return False
    key = rate_key_for(message.channel)
    delay = ratelimit.reserve(reservation, rate)
    if delay <= 0.001:
        return False
    slot = now + timedelta(seconds=delay)
    _put_back(message, slot, now, rate_slot_at=slot)
    ratelimit.record_deferral(workspace_id=str(message.workspace_id),
                              channel=key, delay=delay)
    return True


def _rate_and_key(message: Message) -> tuple[ratelimit.Rate | None, str]:
    """Return the rate a message counts against and its Redis key: an event delivery's
    endpoint's own rate_limit when set (one counter per endpoint), else its channel's."""
    endpoint = message.webhook_endpoint if message.webhook_endpoint_id else None
    if endpoint is not None and endpoint.rate_limit:
        return (ratelimit.Rate.parse(endpoint.rate_limit),
                ratelimit.client_channel_key(str(message.workspace_id), rate_key_for(
                    message.channel), f"endpoint:{endpoint.pk}"))
    return (ratelimit.rate_for(message.workspace, message.channel),
            _reservation_key(message, rate_key_for(message.channel)))


def _put_back(message: Message, due: datetime, now: datetime, **fields: Any) -> None:
    """Return a claimed message to its timer, due at `due`. A deferral is not an attempt:
    give back the one the claim counted."""
    Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(
        status=MessageStatus.SCHEDULED, due_at=due, lease_until=None,
        attempts=F("attempts") - 1, updated_at=now, **fields)


def _suppress(message: Message, reason: str, now: datetime) -> bool:
    """Finish a claimed message as suppressed: no provider call, no attempt, no dead
    letter. Return whether this call finished it."""
    return bool(Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(
        status=MessageStatus.SUPPRESSED, suppressed_reason=reason, lease_until=None,
        due_at=None, attempts=F("attempts") - 1, updated_at=now))


def _suppress_all(refused: list[tuple[Message, str]], now: datetime) -> list[tuple[Any, str]]:
    """Suppress each (message, reason) and emit message.suppressed in one transaction;
    return the (id, source) pairs this call finished."""
    if not refused:
        return []
    with transaction.atomic():
        done = [message for message, reason in refused if _suppress(message, reason, now)]
        events.messages_emit(changes=[(m, events.MESSAGE_SUPPRESSED) for m in done])
    return [(message.pk, message.source) for message in done]


def _reservation_key(message: Message, key: str) -> str:
    """Return the Redis key the message books its slot under: its own rate key inside the
    channel's when it names a valid one (still in its workspace), else the channel's."""
    workspace_id = str(message.workspace_id)
    own = (message.metadata or {}).get(RATE_KEY_FIELD)
    if own is not None:
        try:
            return ratelimit.client_channel_key(workspace_id, key, own)
        except ValueError:
            logger.warning("message %s names an invalid rate key; using the channel's",
                           message.pk)
    return ratelimit.channel_key(workspace_id, key)


def _outbound(message: Message, config: dict[str, Any]) -> Outbound:
    return Outbound(
        message_id=str(message.id), workspace_id=str(message.workspace_id),
        channel=message.channel, to=message.to, content=render_content(message),
        config=config, contact_id=str(message.contact_id) if message.contact_id else None,
        metadata={k: v for k, v in (message.metadata or {}).items() if k != "_context"},
        attempt=message.attempts, headers=list_unsubscribe_headers(message),
    )


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """Return the full-jitter exponential delay before the next attempt (>= Retry-After)."""
    ceiling = min(settings.RETRY_CAP_SECONDS, settings.RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    delay = random.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _record_all(results: list[tuple[Message, DeliveryAttempt, Any, dict | None]]
                ) -> dict[str, str]:
    """Write each (message, attempt, result, rendered content) outcome in one transaction;
    notify after commit."""
    calls = []
    for message, attempt, result, rendered in results:
        call = _Call(message, attempt, result=result)
        if rendered is not None:
            call.outbound = Outbound(message_id=str(message.pk), workspace_id="", channel="",
                                     to="", content=rendered, config={})
        calls.append(call)
    return _record_group(calls, [])


def _record_group(finished: list[_Call], starting: list[_Call],
                  endpoints: dict[str, list[Any]] | None = None) -> dict[str, str]:
    """In one transaction: record the finished calls' outcomes (with their events) and write
    the started attempts of the calls about to start. Both are fenced on the claim (the row
    is still `sending` at the attempt's number; locked until commit), so nothing is written
    for a message the sweeper took back: such an outcome is `stale`, and so is such a start,
    whose call must not be made. Return {message id: outcome}.

    Round trips: the lock, one UPDATE for the sent, one INSERT for every attempt, the
    failures' own statements, the commit."""
    if not finished and not starting:
        return {}
    now = timezone.now()
    with transaction.atomic():
        ours = _lock_sending([c.message.pk for c in finished + starting])

        def current(call: _Call) -> bool:
            return ours.get(call.message.pk) == call.attempt.number

        recorded = _record_sent_all([c for c in finished if current(c)
                                     and isinstance(c.result, Receipt)], now)
        for call in finished:
            if not current(call):
                recorded.append((call, _record_stale(call)))
            elif isinstance(call.result, ProviderError):
                recorded.append((call, _record(call.message, call.attempt, call.result,
                                               call.rendered)))
        for call in starting:
            call.started = current(call)
            call.attempt.started_at = now
        _save_attempts([call.attempt for call, outcome in recorded if outcome != "stale"]
                       + [call.attempt for call in starting if call.started])
        _emit_outcomes([(call.message, outcome) for call, outcome in recorded], endpoints)
    outcomes = {str(call.message.pk): outcome for call, outcome in recorded}
    outcomes.update({str(c.message.pk): "stale" for c in starting if not c.started})
    return outcomes


def _emit_outcomes(recorded: list[tuple[Message, str]],
                   endpoints: dict[str, list[Any]] | None = None) -> None:
    """Emit the final outcomes' events and track endpoint health, in the caller's
    transaction; notify the finals after commit."""
    changes = [(message, FINAL_EVENTS[outcome]) for message, outcome in recorded
               if outcome in FINAL_EVENTS]
    events.messages_emit(changes=changes, endpoints=endpoints)
    events.deliveries_recorded(outcomes=recorded)
    finals = [(message.pk, message.source) for message, _ in changes]
    if finals:
        transaction.on_commit(lambda: _notify_finals(finals))


# The attempt columns an outcome fills in (the others were written when it started).
_ATTEMPT_OUTCOME_FIELDS = ["outcome", "status_code", "response", "error", "error_code",
                           "possible_duplicate", "finished_at"]


def _lock_sending(ids: list[Any]) -> dict[Any, int]:
    """Lock those of the messages still `sending` until commit; return {id: attempts}."""
    if connection.vendor != "postgresql":
        return dict(Message.objects.select_for_update().filter(
            pk__in=ids, status=MessageStatus.SENDING).values_list("pk", "attempts"))
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT id, attempts FROM "{Message._meta.db_table}" WHERE id = ANY(%s)'
                       " AND status = %s FOR UPDATE", [ids, MessageStatus.SENDING])
        return dict(cursor.fetchall())


def _save_attempts(attempts: list[DeliveryAttempt]) -> None:
    """Insert the attempts about to start and those that never started (no call was made),
    and fill in the outcomes of the started ones, in one INSERT ... ON CONFLICT (message,
    number)."""
    if not attempts:
        return
    if connection.vendor != "postgresql":
        for attempt in attempts:
            attempt.pk = None
        DeliveryAttempt.objects.bulk_create(
            attempts, update_conflicts=True, unique_fields=["message", "number"],
            update_fields=_ATTEMPT_OUTCOME_FIELDS)
        return
    meta = DeliveryAttempt._meta
    columns = [f for f in meta.concrete_fields if not f.primary_key]
    rows, params = _unnest(columns, attempts)
    names = ", ".join(f'"{column.column}"' for column in columns)
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in (
        _column(DeliveryAttempt, name) for name in _ATTEMPT_OUTCOME_FIELDS))
    conflict = ", ".join(f'"{_column(DeliveryAttempt, name)}"' for name in ("message", "number"))
    with connection.cursor() as cursor:
        cursor.execute(f'INSERT INTO "{meta.db_table}" ({names}) SELECT * FROM {rows} '
                       f'ON CONFLICT ({conflict}) DO UPDATE SET {updates}', params)


def _column(model: Any, name: str) -> str:
    """Return the database column of a model's field."""
    return str(cast(Field, model._meta.get_field(name)).column)


def _unnest(columns: list[Any], rows: list[Any]) -> tuple[str, list[Any]]:
    """Return `unnest(%s::type[], ...) AS v(column, ...)` and its arrays: the rows'
    values of the columns, one array per column, for one statement over all the rows."""
    arrays = [[column.get_db_prep_save(getattr(row, column.attname), connection)
               for row in rows] for column in columns]
    types = ", ".join(f"%s::{column.db_type(connection)}[]" for column in columns)
    names = ", ".join(f'"{column.column}"' for column in columns)
    return f"unnest({types}) AS v({names})", arrays


def _update_rows(model: Any, fields: list[str], rows: list[Any], **same: Any) -> None:
    """Write each row's own values of `fields`, and the values in `same` to all of them
    (rows already locked by the caller). On PostgreSQL one UPDATE ... FROM unnest(arrays):
    Django's bulk_update builds a CASE per field and row, and compiling those cost more
    CPU than the rest of a delivery batch."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        for row in rows:
            model.objects.filter(pk=row.pk).update(
                **{name: getattr(row, name) for name in fields}, **same)
        return
    meta = model._meta
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    values, arrays = _unnest(columns, rows)
    constants = [(meta.get_field(name), value) for name, value in same.items()]
    sets = ", ".join([f'"{column.column}" = v."{column.column}"' for column in columns[1:]]
                     + [f'"{field.column}" = %s' for field, _ in constants])
    params = [field.get_db_prep_save(value, connection) for field, value in constants]
    with connection.cursor() as cursor:
        cursor.execute(f'UPDATE "{meta.db_table}" AS t SET {sets} FROM {values} '
                       f'WHERE t."{meta.pk.column}" = v."{meta.pk.column}"', params + arrays)


def _record_sent_all(calls: list[_Call], now: datetime) -> list[tuple[_Call, str]]:
    """Mark the calls' messages sent (their rows locked and checked by the caller) in one
    UPDATE; fill in their attempts."""
    if not calls:
        return []
    for call in calls:
        receipt, message, attempt = call.result, call.message, call.attempt
        assert isinstance(receipt, Receipt)
        message.rendered, message.provider = call.rendered, attempt.provider
        message.provider_message_id = receipt.provider_message_id[:200]
        message.response = receipt.output or None
        attempt.outcome, attempt.status_code = "sent", receipt.status_code
        attempt.response, attempt.finished_at = _jsonable(receipt.response), now
    _update_rows(Message, ["rendered", "provider", "provider_message_id", "response"],
                 [call.message for call in calls], status=MessageStatus.SENT, sent_at=now,
                 lease_until=None, due_at=None, last_error="", error_code="", updated_at=now)
    for call in calls:
        callback = (call.message.content or {}).get("callback_url")
        if call.message.channel == AI and callback:
            assert isinstance(call.result, Receipt)
            _create_ai_callback(call.message, callback, call.result)
    return [(call, "sent") for call in calls]


def _record_stale(call: _Call) -> str:
    """The sweeper took the message back meanwhile (and closed this attempt as lost): say
    on the attempt what really happened; the message's rerun decides its outcome."""
    result = call.result
    assert result is not None
    done = "sent" if isinstance(result, Receipt) else f"failed {result.message}"
    DeliveryAttempt.objects.filter(message=call.message, number=call.attempt.number).update(
        error=f"finished after its lease expired: {done}".strip()[:2000],
        status_code=result.status_code)
    return "stale"


def _record(message: Message, attempt: DeliveryAttempt, error: ProviderError,
            rendered: dict | None = None) -> str:
    """Write one failed call's outcome (retrying or failed), fenced on (status=sending,
    attempts=this attempt's number) so a worker that outlived its lease changes nothing;
    fill in the attempt (saved by the caller). Runs inside the caller's transaction."""
    now = timezone.now()
    current = Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING,
                                     attempts=attempt.number)
    written = {"rendered": rendered, "provider": attempt.provider}
    outcome = _record_failure(message, current, error, now, written)
    if outcome == "stale":
        return _record_stale(_Call(message, attempt, result=error))
    attempt.outcome = "failed" if outcome == "failed" else "retry"
    attempt.status_code, attempt.error = error.status_code, error.message[:2000]
    attempt.error_code, attempt.response = error.code, _jsonable(error.response)
    attempt.possible_duplicate, attempt.finished_at = error.outcome_unknown, now
    return outcome


def _create_ai_callback(message: Message, url: str, receipt: Receipt) -> None:
    """Send the AI reply to the callback URL as a signed webhook, through this pipeline.

    The webhook is limited as a webhook: the AI message's own rate key and callback shape
    stay with it.
    """
    payload = _ai_callback_payload(message, receipt.output.get("response_text", ""))
    metadata = {k: v for k, v in (message.metadata or {}).items()
                if k not in (RATE_KEY_FIELD, CALLBACK_SHAPE_FIELD)}
    child = message_build(workspace=message.workspace, channel=WEBHOOK, to=url,
                          content={"url": url, "payload": payload}, contact=message.contact,
                          metadata=metadata, source=message.channel, parent=message)
    message_create_many(messages=[child])


def _ai_callback_payload(message: Message, text: str) -> dict[str, Any]:
    """Return the callback body: the older AI queue's shape, in its client's own ids, for a
    job it scheduled (only that endpoint can write the mark), today's shape otherwise."""
    metadata = message.metadata or {}
    if metadata.get(CALLBACK_SHAPE_FIELD) == AI_RESPONSE_SHAPE:
        return {"workspace_id": metadata.get("workspace_id"),
                "message_id": metadata.get("message_id"), "job_id": str(message.id),
                "response_text": text}
    return {"workspace_id": str(message.workspace_id), "message_id": str(message.id),
            "contact_id": str(message.contact_id) if message.contact_id else None,
            "response_text": text}


def _record_failure(message: Message, current, error: ProviderError, now: datetime,
                    written: dict[str, Any]) -> str:
    flags = dict(written)
    if error.outcome_unknown:
        flags["possible_duplicate"] = True
    if not error.permanent and message.attempts < message.max_attempts:
        due = now + timedelta(seconds=backoff_seconds(message.attempts, error.retry_after))
        changed = current.update(status=MessageStatus.RETRYING, due_at=due, lease_until=None,
                                 last_error=error.message[:2000], error_code=error.code,
                                 updated_at=now, **flags)
        return "retrying" if changed else "stale"
    if current.select_for_update().values_list("pk", flat=True).first() is None:
        return "stale"
    _fail(message, now, error.message, error.code, **flags)
    if error.suppress_address:
        _suppress_address(message, error, written.get("provider") or "provider")
    return "failed"


def _suppress_address(message: Message, error: ProviderError, provider: str) -> None:
    """Put the recipient the provider refuses for good on the workspace's list (in the
    failure's transaction), so the policy suppresses later messages before the provider."""
    list_name = policy.LIST_OF.get(message.channel)
    if list_name is None:
        return
    try:
        suppression_add(workspace=message.workspace, channel=list_name, address=message.to,
                        reason=Suppression.Reason.PROVIDER,
                        source=f"{provider} {error.code}".strip())
    except ValidationError:
        logger.warning("message %s: cannot suppress %r", message.pk, message.to)


def _fail(message: Message, now: datetime, error: str, code: str, **fields: Any) -> None:
    """Mark the message failed and file its dead letter (in the caller's transaction)."""
    Message.objects.filter(pk=message.pk).update(
        status=MessageStatus.FAILED, failed_at=now, lease_until=None, due_at=None,
        last_error=error[:2000], error_code=code, updated_at=now, **fields)
    letter = DeadLetter.objects.create(
        workspace_id=message.workspace_id, kind=DeadLetter.Kind.MESSAGE,
        source_id=str(message.pk), channel=message.channel, error=error[:2000],
        error_code=code, attempts=message.attempts,
        payload={"message_id": str(message.pk), "channel": message.channel, "to": message.to,
                 "content": message.content, "metadata": message.metadata},
    )
    events.dead_letter_emit(letter=letter, source=message.source)


def _notify_finals(finals: list[tuple[Any, str]]) -> None:
    """Notify each (message id, source) pair that its message is final."""
    for message_id, source in finals:
        _notify_final(message_id, source)


def _notify_final(message_id: Any, source: str) -> None:
    """Tell interested parts (flow steps) that a message reached sent or failed."""
    from messaging.signals import message_finished

    message_finished.send(sender=Message, message_id=message_id, source=source)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (dict, list, str, int, float, bool)):
        return value
    return str(value)
