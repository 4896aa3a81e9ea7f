"""The delivery pipeline: create, publish, claim, send, record, retry, dead-letter, sweep.

The Message row is the truth; the broker only wakes workers (README.md, "Delivery"). Every step that
changes a message's status is a conditional UPDATE, so a duplicated or late task does
nothing, and a provider is never called inside an open transaction.
"""
from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Q
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

    - `sending` past its lease: the worker died mid-call. The attempt is closed as `lost`
      and flagged a possible duplicate (the provider may have acted); the message is queued
      again, or fails if it has no attempts left.
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
            _close_lost_attempt(message, now)
            if message.attempts >= message.max_attempts:
                # The provider may have acted on the lost call: flag it like any unknown.
                _fail(message, now, "worker lost during the last attempt", "lost",
                      possible_duplicate=True)
                failed.append((message.pk, message.source))
                continue
            Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING).update(
                status=MessageStatus.QUEUED, lease_until=None, enqueued_at=now,
                possible_duplicate=True, due_at=now, updated_at=now)
        requeue = [m for m in expired if m.attempts < m.max_attempts]
        lost = [m for m in expired if m.attempts >= m.max_attempts]
        events.messages_emit(changes=[(m, events.MESSAGE_FAILED) for m in lost])
        events.deliveries_recorded(outcomes=[(m, "failed") for m in lost], now=now)
        transaction.on_commit(lambda: publish(requeue, now=now))
        transaction.on_commit(lambda: _notify_finals(failed))
    if expired:
        logger.warning("sweeper recovered %d messages from expired leases", len(expired))
    return len(expired)


def _close_lost_attempt(message: Message, now: datetime) -> None:
    """Record the attempt whose worker vanished: the provider may or may not have acted."""
    lost = {"finished_at": now, "outcome": "lost", "possible_duplicate": True,
            "error": "worker lost during the provider call (lease expired)"}
    if not DeliveryAttempt.objects.filter(message=message, number=message.attempts).update(
            **lost):
        started = (message.lease_until or now) - timedelta(
            seconds=settings.DELIVERY_LEASE_SECONDS)
        DeliveryAttempt.objects.create(message=message, number=message.attempts,
                                       provider=message.provider, started_at=started, **lost)


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
    Round trips per batch: one claim, one read, one transaction for all outcomes; provider
    calls run concurrently outside any transaction.
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
    results = _send_all(ready, task_id, now)
    outcomes.update(_record_all(results))
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


def _send_all(messages: list[Message], task_id: str,
              now: datetime) -> list[tuple[Message, DeliveryAttempt, Any, dict | None]]:
    """Call each message's provider, concurrently; return (message, attempt, result,
    rendered content) for each."""
    results: list[tuple[Message, DeliveryAttempt, Any, dict | None]] = []
    calls: list[tuple[Any, Outbound]] = []
    for message in messages:
        attempt = DeliveryAttempt(message=message, number=message.attempts,
                                  task_id=task_id or "", started_at=now)
        try:
            provider, config = provider_for(message.workspace, message.channel)
            if message.webhook_endpoint_id and message.webhook_endpoint is not None:
                # An event delivery is signed for its endpoint, not with the workspace's.
                config["secrets"] = events.endpoint_secrets(message.webhook_endpoint, now)
            outbound = _outbound(message, config)
        except (ValueError, KeyError) as exc:
            results.append((message, attempt, ProviderError(str(exc), permanent=True,
                                                            code="invalid"), None))
            continue
        attempt.provider = provider.name
        calls.append((provider, outbound))
        results.append((message, attempt, len(calls) - 1, outbound.content))
    if len(calls) > 1:
        workers = min(len(calls), settings.PROVIDER_CONCURRENCY)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provider") as pool:
            answers = list(pool.map(lambda call: _call(*call), calls))
    else:
        answers = [_call(*call) for call in calls]
    return [(message, attempt, answers[result] if isinstance(result, int) else result,
             rendered) for message, attempt, result, rendered in results]


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
    """Write every outcome and its attempt in one transaction; notify after commit."""
    outcomes: dict[str, str] = {}
    finals: list[tuple[Any, str]] = []
    with transaction.atomic():
        attempts, changes, recorded = [], [], []
        for message, attempt, result, rendered in results:
            outcome = _record(message, attempt, result, rendered)
            outcomes[str(message.pk)] = outcome
            recorded.append((message, outcome))
            if outcome != "stale":
                attempts.append(attempt)
            if outcome in ("sent", "failed"):
                finals.append((message.pk, message.source))
                changes.append((message, FINAL_EVENTS[outcome]))
        DeliveryAttempt.objects.bulk_create(attempts)
        events.messages_emit(changes=changes)
        events.deliveries_recorded(outcomes=recorded)
        if finals:
            transaction.on_commit(lambda: _notify_finals(finals))
    return outcomes


def _record(message: Message, attempt: DeliveryAttempt, result: Receipt | ProviderError,
            rendered: dict | None = None) -> str:
    """Write one outcome, fenced on (status=sending, attempts=this attempt's number) so a
    worker that outlived its lease changes nothing; fill in the attempt (saved by the
    caller). Runs inside the caller's transaction."""
    now = timezone.now()
    if isinstance(result, Receipt):
        attempt_fields = {"outcome": "sent", "status_code": result.status_code,
                          "response": _jsonable(result.response)}
    else:
        attempt_fields = {"status_code": result.status_code, "error": result.message[:2000],
                          "error_code": result.code, "response": _jsonable(result.response),
                          "possible_duplicate": result.outcome_unknown}
    current = Message.objects.filter(pk=message.pk, status=MessageStatus.SENDING,
                                     attempts=attempt.number)
    written = {"rendered": rendered, "provider": attempt.provider}
    if isinstance(result, Receipt):
        outcome = _record_success(message, current, result, now, written)
    else:
        outcome = _record_failure(message, current, result, now, written)
        attempt_fields["outcome"] = "failed" if outcome == "failed" else "retry"
    if outcome == "stale":
        # The sweeper closed this attempt as lost; say what really happened.
        DeliveryAttempt.objects.filter(message=message, number=attempt.number).update(
            error=f"finished after its lease expired: {attempt_fields.get('outcome', '')}"
                  f" {attempt_fields.get('error', '')}".strip()[:2000],
            status_code=attempt_fields.get("status_code"))
        return outcome
    for field, value in attempt_fields.items():
        setattr(attempt, field, value)
    attempt.finished_at = now
    return outcome


def _record_success(message: Message, current, receipt: Receipt, now: datetime,
                    written: dict[str, Any]) -> str:
    changed = current.update(
        status=MessageStatus.SENT, sent_at=now, lease_until=None, due_at=None, **written,
        provider_message_id=receipt.provider_message_id[:200],
        response=receipt.output or None, last_error="", error_code="", updated_at=now)
    if not changed:
        return "stale"  # the sweeper took the message back meanwhile; its rerun decides
    callback = (message.content or {}).get("callback_url")
    if message.channel == AI and callback:
        _create_ai_callback(message, callback, receipt)
    return "sent"


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
