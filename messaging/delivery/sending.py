"""Sending a batch: claim, the gates before a provider call (pause, recipients' rules, rate
limit), the provider calls on a thread pool, and their outcomes handed to recording.

The Message row is the truth; the broker only wakes workers (README.md, "Delivery"). Every
step that changes a message's status is a conditional UPDATE, so a duplicated or late task
does nothing, and a provider is never called inside an open transaction.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from core import logcontext, tracing
from core.models import Workspace
from messaging import ratelimit
from messaging.channels import rate_key_for
from messaging.delivery import failover, pauses
from messaging.delivery.recording import Call, notify_finals, record_group
from messaging.delivery.templating import render_content
from messaging.events.endpoints import endpoint_secrets
from messaging.events.outbox import messages_emit, subscribers
from messaging.events.types import MESSAGE_SUPPRESSED
from messaging.models import (
    DeliveryAttempt,
    Message,
    MessageStatus,
    TimelineKind,
    WaitReason,
)
from messaging.providers.base import Outbound, ProviderError, Receipt
from messaging.providers.registry import providers_for
from messaging.publishing import PUBLISH_BATCH, lane_task_started, publish_lane_more
from messaging.ratelimit import RATE_KEY_FIELD
from messaging.recipients import policy
from messaging.recipients.unsubscribe import list_unsubscribe_headers
from messaging.timeline import Entry, counted_write, entries_write, entry

logger = logging.getLogger(__name__)

# The advisory lock space of delivery claims (pg_advisory_xact_lock(CLAIM_LOCK, lane hash)).
CLAIM_LOCK = 2023


# Provider answers that arrive within this long of the first one waited for are recorded in
# one transaction: a crash loses at most the calls in flight and this window's answers,
# and a fast provider's wave of PROVIDER_CONCURRENCY calls costs one commit, not one each.
RECORD_WINDOW_SECONDS = 0.02


def messages_deliver(*, message_ids: list[str], lane: str = "",
                     task_id: str = "") -> dict[str, str]:
    """Claim the messages, respect rate limits, call providers, record the outcomes.

    With a lane, claim that lane's next CLAIM_BATCH rows instead of the ids given, the
    workspaces taking turns (_claim_next); the ids only say how many were published.
    A full claim publishes one more task for the lane (messaging.publishing.WAITING_KEY).
    Return {message id: skipped (not ours) | paused | deferred | suppressed | sent | retrying
    | failed | stale}. A paused queue holds its messages first (messaging.delivery.pauses), then the
    recipients' rules (messaging.recipients.policy) decide, then the rate limit.
    Round trips per batch: one claim, one read, then one transaction per wave of concurrent
    provider calls (see _send_and_record); the calls run outside any transaction.
    """
    now = timezone.now()
    if lane and connection.vendor == "postgresql":
        lane_task_started(lane)  # before the claim: what is queued after it needs a task
        limit = max(CLAIM_BATCH, len(message_ids))
        picked, claimed = _claim_next(lane, limit, now)
        # Full by the rows picked, not the rows claimed: a row cancelled under the claim
        # leaves it short while rows may be left whose publishes joined this task
        # (messaging.publishing).
        if picked >= limit:
            publish_lane_more(lane)
    else:
        claimed = _claim(message_ids, now)
    outcomes = {str(mid): "skipped" for mid in message_ids}
    if not claimed:
        return outcomes
    # In due order, so rate-limit slots are booked in the order the messages were due.
    messages = list(Message.objects.select_related("workspace", "contact", "webhook_endpoint")
                    .filter(pk__in=claimed).order_by("due_at", "created_at", "id"))
    claimed_messages = list(messages)
    held = pauses.hold_paused(messages, now)
    outcomes.update({str(pk): "paused" for pk in held})
    messages = [message for message in messages if message.pk not in held]
    decisions = policy.decide_all(messages, now=now)
    ready, refused, deferred = [], [], []
    for message in messages:
        decision = decisions[message.pk]
        if decision.outcome == policy.SUPPRESSED:
            refused.append((message, decision))
            outcomes[str(message.pk)] = "suppressed"
        elif decision.outcome == policy.DEFERRED and decision.until is not None:
            deferred.append(Deferral(message, decision.until, {"status_reason": decision.check},
                                     entry(message_id=message.pk, kind=TimelineKind.DEFERRED,
                                           at=now, until=decision.until, check=decision.check,
                                           reason=decision.reason)))
            outcomes[str(message.pk)] = "deferred"
        elif (deferral := _defer_for_rate_limit(message, now)) is not None:
            if decision.check == "frequency_cap":  # counted against its cap all the same
                deferral.entry.detail["frequency_cap"] = "counted"
            deferred.append(deferral)
            outcomes[str(message.pk)] = "deferred"
        else:
            ready.append(message)
    _put_back_all(deferred, now)
    notify_finals(_suppress_all(refused, now))
    counted = {m.pk for m in ready if decisions[m.pk].check == "frequency_cap"}
    outcomes.update(_send_and_record(ready, task_id, now, counted))
    _log_outcomes(claimed_messages, outcomes)
    return outcomes


def _log_outcomes(messages: list[Message], outcomes: dict[str, str]) -> None:
    """Log one line per claimed message with its outcome, carrying its ids (the request
    that created it included: README.md, "Following a message through the logs")."""
    if not logger.isEnabledFor(logging.INFO):
        return
    for message in messages:
        with logcontext.bind(message_id=message.pk, workspace_id=message.workspace_id,
                             request_id=message.request_id):
            logger.info("%s message %s", message.channel, outcomes[str(message.pk)])


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


# A lane task claims up to this many rows: what it was published with (PUBLISH_BATCH) or
# fewer; each published task claims at least as many rows as it names, so every queued
# row has a claim coming (the sweeper republishes any that lost theirs).
CLAIM_BATCH = PUBLISH_BATCH
# A workspace's share of its lane against the others with queued rows: its settings'
# delivery_weight (core.workspace_settings), 1 when unset.
_WEIGHT = ("GREATEST(COALESCE(CASE WHEN jsonb_typeof(w.settings -> 'delivery_weight') = "
           "'number' THEN (w.settings ->> 'delivery_weight')::float END, 1), 1)")


def _claim_next(lane: str, limit: int, now: datetime) -> tuple[int, list[Any]]:
    """Claim up to `limit` due queued messages of a lane, the workspaces with queued rows
    taking turns (weighted fair queueing: a workspace's n-th oldest row ranks
    (n - 1) / its weight), each one's oldest first; return how many rows it picked and the
    ids it claimed (fewer when a picked row stopped being queued before its update: one
    cancelled meanwhile).

    One statement: a skip scan of the claim index finds the workspaces with queued rows in
    the lane, each gives its oldest `limit` (an index range), the best `limit` of those are
    claimed. Every ORDER BY is the index's own column order: ordered by workspace alone,
    the planner may walk the workspace foreign key's index through every sent row instead
    (100 ms against 0.4 ms with a 7,000-row backlog). Claims of a lane take turns on an
    advisory lock for that statement's few milliseconds, so two never pick the same rows
    and come back short (a short claim would leave rows without a task until the sweeper).
    Rows not yet due (a countdown task's) wait for their own task."""
    table = Message._meta.db_table
    workspaces = Workspace._meta.db_table
    due = now + timedelta(milliseconds=50)  # publishing rounds countdowns up to 50 ms
    params: dict[str, Any] = {
        "lane": lane, "queued": MessageStatus.QUEUED, "limit": limit, "due": due,
        "sending": MessageStatus.SENDING, "now": now,
        "lease": now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [CLAIM_LOCK, lane])
        cursor.execute(f"""
            WITH RECURSIVE owners(workspace_id) AS (
                (SELECT workspace_id FROM {table} WHERE status = %(queued)s
                 AND lane = %(lane)s ORDER BY workspace_id, created_at, id LIMIT 1)
              UNION ALL
                SELECT (SELECT m.workspace_id FROM {table} m WHERE m.status = %(queued)s
                        AND m.lane = %(lane)s AND m.workspace_id > o.workspace_id
                        ORDER BY m.workspace_id, m.created_at, m.id LIMIT 1)
                FROM owners o WHERE o.workspace_id IS NOT NULL
            ), picks AS (
                SELECT p.id, p.created_at, (p.turn - 1) / {_WEIGHT} AS rank
                FROM owners o JOIN {workspaces} w ON w.id = o.workspace_id
                CROSS JOIN LATERAL (
                    SELECT m.id, m.created_at,
                           row_number() OVER (ORDER BY m.created_at, m.id) AS turn
                    FROM {table} m WHERE m.status = %(queued)s AND m.lane = %(lane)s
                    AND m.workspace_id = o.workspace_id
                    AND (m.due_at IS NULL OR m.due_at <= %(due)s)
                    ORDER BY m.created_at, m.id LIMIT %(limit)s) p
            ), chosen AS (
                SELECT id FROM picks ORDER BY rank, created_at LIMIT %(limit)s
            ), claimed AS (
                UPDATE {table} AS t SET status = %(sending)s, lease_until = %(lease)s,
                    updated_at = %(now)s, attempts = t.attempts + 1, status_reason = ''
                FROM chosen c WHERE t.id = c.id AND t.status = %(queued)s RETURNING t.id
            )
            SELECT (SELECT count(*) FROM chosen), ARRAY(SELECT id FROM claimed)""", params)
        picked, claimed = cursor.fetchone()
        return picked, list(claimed)


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


def _prepare(message: Message, task_id: str, now: datetime) -> Call:
    """Return the message's call: its providers in failover order and their requests, or a
    permanent error as its result when the request cannot be built (no call is made then)."""
    call = Call(message, DeliveryAttempt(message=message, number=message.attempts,
                                          task_id=task_id or "", started_at=now))
    try:
        content = render_content(message)
        links = []
        for choice in providers_for(message.workspace, message.channel):
            config = dict(choice.config)
            if message.webhook_endpoint_id and message.webhook_endpoint is not None:
                # An event delivery is signed for its endpoint, not with the workspace's.
                config["secrets"] = endpoint_secrets(message.webhook_endpoint, now)
            links.append(failover.Link(choice, _outbound(
                message, config, content, choice.idempotency_key(str(message.id)))))
    except (ValueError, KeyError) as exc:
        call.result = ProviderError(str(exc), permanent=True, code="invalid")
        return call
    call.chain = failover.Chain(links, workspace_id=str(message.workspace_id),
                                allow_unknown=failover.allows_unknown(message.workspace.settings))
    if message.possible_duplicate and len(links) > 1:
        # A provider past the first may have it: never go back before that one.
        call.chain.floor = call.chain.marked = min(failover.floor_of(str(message.id)),
                                                   len(links) - 1)
    _start_at(call, call.chain.floor)
    return call


def _start_at(call: Call, index: int) -> None:
    """Point the call at the provider its attempt starts with."""
    call.chain.start = index
    call.provider, call.outbound = call.chain.first.choice.provider, call.chain.first.outbound
    call.attempt.provider = call.chain.first.choice.name


def _gate_breakers(calls: list[Call], now: datetime) -> tuple[list[Call], dict[str, str]]:
    """Start each call at its first provider whose breaker lets it through; put back on its
    timer (a deferral, not an attempt) each message whose every provider's is open. Return
    the calls to make and the deferred messages' outcomes."""
    closed: set[str] = set()
    kept, outcomes = [], {}
    deferred: list[Deferral] = []
    for call in calls:
        if call.result is not None or call.chain is None:
            kept.append(call)
            continue
        wait = failover.first_allowed(call.chain, closed)
        if wait is None:
            _start_at(call, call.chain.start)
            kept.append(call)
            continue
        until = now + timedelta(seconds=wait)
        deferred.append(Deferral(call.message, until,
                                 {"status_reason": WaitReason.PROVIDER_DOWN},
                                 entry(message_id=call.message.pk, kind=TimelineKind.DEFERRED,
                                       at=now, until=until, check=WaitReason.PROVIDER_DOWN)))
        outcomes[str(call.message.pk)] = "deferred"
    _put_back_all(deferred, now)
    return kept, outcomes


def _send_and_record(messages: list[Message], task_id: str, now: datetime,
                     cap_counted: set[Any] | frozenset[Any] = frozenset()) -> dict[str, str]:
    """Call each message's provider, PROVIDER_CONCURRENCY at a time, and record each
    outcome as its call finishes; return {message id: outcome}.

    Each transaction records the answers that came in (within RECORD_WINDOW_SECONDS of each
    other) and writes the `started` attempts of the calls about to start, so a crash loses
    only the calls in flight, and the sweeper can tell a message that was never called
    (requeued as is) from one that may have been (flagged a possible duplicate).
    """
    calls, outcomes = _gate_breakers([_prepare(message, task_id, now) for message in messages],
                                     now)
    for call in calls:
        call.cap_counted = call.message.pk in cap_counted
    waiting = deque(call for call in calls if call.result is None)
    finished = [call for call in calls if call.result is not None]
    running: dict[Future, Call] = {}
    limit = max(1, settings.PROVIDER_CONCURRENCY)
    # Read once per batch, not once per transaction (see messages_emit).
    endpoints = subscribers({message.workspace_id for message in messages})
    while waiting or running or finished:
        starting = [waiting.popleft() for _ in range(min(len(waiting), limit - len(running)))]
        outcomes.update(record_group(finished, starting, endpoints))
        finished = []
        for call in starting:
            if call.started and call.chain is not None:
                # The provider's own lines carry the message's ids (another thread).
                running[_provider_pool().submit(
                    tracing.carried(logcontext.run_bound), _timed_send, call.chain,
                    message_id=call.message.pk, workspace_id=call.message.workspace_id,
                    request_id=call.message.request_id, task_id=task_id)] = call
        if not running:
            continue
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        more, _ = wait(set(running) - done, timeout=RECORD_WINDOW_SECONDS)
        for future in done | more:
            call = running.pop(future)
            call.result, call.latency = future.result()
            call.attempt.provider = call.chain.used or call.attempt.provider
            call.attempt.provider_calls = call.chain.calls
            finished.append(call)
        failover.count([call.chain for call in finished if call.chain is not None])
    return outcomes


def _timed_send(chain: failover.Chain) -> tuple[Receipt | ProviderError, float]:
    """Send through the chain's providers in failover order; return the last result and how
    long the calls took (s)."""
    started = time.monotonic()
    result = failover.send(chain, _call)
    return result, time.monotonic() - started


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


@dataclass
class Deferral:
    """A claimed message going back on its timer, due at `due`, with the fields to write
    and its timeline entry."""

    message: Message
    due: datetime
    fields: dict[str, Any]
    entry: Entry


def _defer_for_rate_limit(message: Message, now: datetime) -> Deferral | None:
    """Book a rate-limit slot; if it is in the future, return the message's deferral to it."""
    if message.rate_slot_at is not None and message.rate_slot_at <= now + timedelta(
            milliseconds=50):
        return None  # this message already holds the slot it is due at
    rate, reservation = _rate_and_key(message)
    if rate is None:
        return None
    key = rate_key_for(message.channel)
    delay = ratelimit.reserve(reservation, rate)
    if delay <= 0.001:
        return None
    slot = now + timedelta(seconds=delay)
    ratelimit.record_deferral(workspace_id=str(message.workspace_id),
                              channel=key, delay=delay)
    fields = {"rate_slot_at": slot, "status_reason": WaitReason.RATE_LIMIT}
    return Deferral(message, slot, fields,
                    entry(message_id=message.pk, kind=TimelineKind.RATE_LIMITED, at=now,
                          until=slot, rate=f"{rate.count}/{rate.period:g}s", key=key))


def _put_back_all(deferred: list[Deferral], now: datetime) -> None:
    """Put the deferred messages back on their timers and write their timeline entries, in
    one transaction (rate-limit deferrals counted on the message's latest entry when it
    is one already)."""
    if not deferred:
        return
    with transaction.atomic():
        entries = [d.entry for d in deferred if _put_back(d.message, d.due, now, **d.fields)]
        entries_write(entries=[e for e in entries if e.kind != TimelineKind.RATE_LIMITED])
        counted_write(entries=[e for e in entries if e.kind == TimelineKind.RATE_LIMITED])


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


def _put_back(message: Message, due: datetime, now: datetime, **fields: Any) -> bool:
    """Return a claimed message to its timer, due at `due`; return whether it was still
    ours. A deferral is not an attempt: give back the one the claim counted."""
    return bool(Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(
        status=MessageStatus.SCHEDULED, due_at=due, lease_until=None,
        attempts=F("attempts") - 1, updated_at=now, **fields))


def _suppress(message: Message, reason: str, now: datetime) -> bool:
    """Finish a claimed message as suppressed: no provider call, no attempt, no dead
    letter. Return whether this call finished it."""
    return bool(Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(
        status=MessageStatus.SUPPRESSED, suppressed_reason=reason, lease_until=None,
        due_at=None, attempts=F("attempts") - 1, updated_at=now))


def _suppress_all(refused: list[tuple[Message, policy.Decision]],
                  now: datetime) -> list[tuple[Any, str]]:
    """Suppress each (message, the policy's decision), write why on its timeline and emit
    message.suppressed, in one transaction; return the (id, source) pairs it finished."""
    if not refused:
        return []
    with transaction.atomic():
        done = [(message, decision) for message, decision in refused
                if _suppress(message, decision.reason, now)]
        entries_write(entries=[entry(message_id=m.pk, kind=TimelineKind.SUPPRESSED, at=now,
                                     reason=d.reason, check=d.check) for m, d in done])
        messages_emit(changes=[(m, MESSAGE_SUPPRESSED) for m, _ in done])
    return [(message.pk, message.source) for message, _ in done]


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


def _outbound(message: Message, config: dict[str, Any], content: dict[str, Any],
              idempotency_key: str) -> Outbound:
    return Outbound(
        message_id=str(message.id), workspace_id=str(message.workspace_id),
        channel=message.channel, to=message.to, content=content,
        idempotency_key=idempotency_key,
        config=config, contact_id=str(message.contact_id) if message.contact_id else None,
        # A row written during a rolling deploy may still hold its flow context here.
        metadata={k: v for k, v in (message.metadata or {}).items() if k != "_context"},
        attempt=message.attempts, headers=list_unsubscribe_headers(message),
    )
