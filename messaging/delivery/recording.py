"""Recording provider answers: sent, retrying (with backoff) or failed (with a dead letter),
fenced on the claim so a worker that outlived its lease changes nothing."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.models import DeadLetter
from messaging.channels import AI
from messaging.delivery.ai_callbacks import ai_callback_create
from messaging.delivery.sql import column, unnest, update_rows
from messaging.events.endpoints import deliveries_recorded
from messaging.events.outbox import dead_letter_emit, messages_emit
from messaging.models import (
    DeliveryAttempt,
    Message,
    MessageStatus,
    Suppression,
    TimelineKind,
)
from messaging.providers.base import Outbound, ProviderError, Receipt
from messaging.recipients import policy
from messaging.recipients.suppressions import suppression_add
from messaging.timeline import Entry, entries_write, entry, insert_sql
from messaging.timeline import enabled as timeline_enabled
from messaging.transitions import event_of

logger = logging.getLogger(__name__)


# The event a delivery outcome emits: the one its status's move emits (messaging.transitions).
FINAL_EVENTS: dict[str, str] = {status.value: event_of(status) for status in (
    MessageStatus.SENT, MessageStatus.FAILED)}


@dataclass
class Call:
    """One provider call of a batch: its message, attempt row, provider and request, and,
    once it has finished, its result (set at once when the request cannot be built)."""

    message: Message
    attempt: DeliveryAttempt
    provider: Any = None
    outbound: Outbound | None = None
    result: Receipt | ProviderError | None = None
    started: bool = False  # its started attempt is written: the call may be made
    latency: float | None = None  # how long the provider took to answer (s)
    cap_counted: bool = False  # the recipient's frequency cap counted it (its timeline says)
    chain: Any = None  # its providers in failover order (messaging.delivery.failover.Chain)

    @property
    def rendered(self) -> dict | None:
        return self.outbound.content if self.outbound is not None else None


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """Return the full-jitter exponential delay before the next attempt (>= Retry-After)."""
    ceiling = min(settings.RETRY_CAP_SECONDS, settings.RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    delay = random.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def record_all(results: list[tuple[Message, DeliveryAttempt, Any, dict | None]]
                ) -> dict[str, str]:
    """Write each (message, attempt, result, rendered content) outcome in one transaction;
    notify after commit."""
    calls = []
    for message, attempt, result, rendered in results:
        call = Call(message, attempt, result=result)
        if rendered is not None:
            call.outbound = Outbound(message_id=str(message.pk), workspace_id="", channel="",
                                     to="", content=rendered, config={})
        calls.append(call)
    return record_group(calls, [])


def record_group(finished: list[Call], starting: list[Call],
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

        def current(call: Call) -> bool:
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
                       + [call.attempt for call in starting if call.started],
                       [_call_entry(call, outcome) for call, outcome in recorded
                        if outcome != "stale"] if timeline_enabled() else [])
        _emit_outcomes([(call.message, outcome) for call, outcome in recorded], endpoints)
    outcomes = {str(call.message.pk): outcome for call, outcome in recorded}
    outcomes.update({str(c.message.pk): "stale" for c in starting if not c.started})
    return outcomes


def _call_entry(call: Call, outcome: str) -> Entry:
    """Return the timeline entry of one recorded provider call (or of a request that could
    not be built: no provider, no latency)."""
    attempt, result = call.attempt, call.result
    error = result if isinstance(result, ProviderError) else None
    return entry(message_id=call.message.pk, kind=TimelineKind.PROVIDER_CALL,
                 at=attempt.finished_at or timezone.now(), attempt=attempt.number,
                 provider=attempt.provider, status_code=attempt.status_code,
                 latency_ms=None if call.latency is None else round(call.latency * 1000, 1),
                 outcome=outcome, error=error.message[:500] if error else "",
                 error_code=error.code if error else "",
                 possible_duplicate=True if attempt.possible_duplicate else None,
                 frequency_cap="counted" if call.cap_counted else None)


def _emit_outcomes(recorded: list[tuple[Message, str]],
                   endpoints: dict[str, list[Any]] | None = None) -> None:
    """Emit the final outcomes' events and track endpoint health, in the caller's
    transaction; notify the finals after commit."""
    changes = [(message, FINAL_EVENTS[outcome]) for message, outcome in recorded
               if outcome in FINAL_EVENTS]
    messages_emit(changes=changes, endpoints=endpoints)
    deliveries_recorded(outcomes=recorded)
    finals = [(message.pk, message.source) for message, _ in changes]
    if finals:
        transaction.on_commit(lambda: notify_finals(finals))


# The attempt columns an outcome fills in (the others were written when it started).
_ATTEMPT_OUTCOME_FIELDS = ["outcome", "status_code", "response", "error", "error_code",
                           "possible_duplicate", "finished_at", "provider", "provider_calls"]


def _lock_sending(ids: list[Any]) -> dict[Any, int]:
    """Lock those of the messages still `sending` until commit; return {id: attempts}."""
    if connection.vendor != "postgresql":
        return dict(Message.objects.select_for_update().filter(
            pk__in=ids, status=MessageStatus.SENDING).values_list("pk", "attempts"))
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT id, attempts FROM "{Message._meta.db_table}" WHERE id = ANY(%s)'
                       " AND status = %s FOR UPDATE", [ids, MessageStatus.SENDING])
        return dict(cursor.fetchall())


def _save_attempts(attempts: list[DeliveryAttempt],
                   entries: list[Entry] | None = None) -> None:
    """Insert the attempts about to start and those that never started (no call was made),
    and fill in the outcomes of the started ones, in one INSERT ... ON CONFLICT (message,
    number); with the finished calls' timeline entries in the same statement on PostgreSQL
    (a data-modifying WITH: no round trip of their own)."""
    entries = entries or []
    if not attempts:
        entries_write(entries=entries)
        return
    if connection.vendor != "postgresql":
        entries_write(entries=entries)
        for attempt in attempts:
            attempt.pk = None
        DeliveryAttempt.objects.bulk_create(
            attempts, update_conflicts=True, unique_fields=["message", "number"],
            update_fields=_ATTEMPT_OUTCOME_FIELDS)
        return
    meta = DeliveryAttempt._meta
    columns = [f for f in meta.concrete_fields if not f.primary_key]
    rows, params = unnest(columns, attempts)
    names = ", ".join(f'"{column.column}"' for column in columns)
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in (
        column(DeliveryAttempt, name) for name in _ATTEMPT_OUTCOME_FIELDS))
    conflict = ", ".join(f'"{column(DeliveryAttempt, name)}"' for name in ("message", "number"))
    with_timeline = ""
    timeline_params: list[Any] = []
    if entries:
        sql, timeline_params = insert_sql(entries)
        with_timeline = f"WITH timeline AS ({sql}) "
    with connection.cursor() as cursor:
        cursor.execute(f'{with_timeline}INSERT INTO "{meta.db_table}" ({names}) SELECT * '
                       f'FROM {rows} ON CONFLICT ({conflict}) DO UPDATE SET {updates}',
                       timeline_params + params)


def _record_sent_all(calls: list[Call], now: datetime) -> list[tuple[Call, str]]:
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
    update_rows(Message, ["rendered", "provider", "provider_message_id", "response"],
                 [call.message for call in calls], status=MessageStatus.SENT, sent_at=now,
                 lease_until=None, due_at=None, last_error="", error_code="", updated_at=now)
    for call in calls:
        callback = (call.message.content or {}).get("callback_url")
        if call.message.channel == AI and callback:
            assert isinstance(call.result, Receipt)
            ai_callback_create(call.message, callback, call.result)
    return [(call, "sent") for call in calls]


def _record_stale(call: Call) -> str:
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
        return _record_stale(Call(message, attempt, result=error))
    attempt.outcome = "failed" if outcome == "failed" else "retry"
    attempt.status_code, attempt.error = error.status_code, error.message[:2000]
    attempt.error_code, attempt.response = error.code, _jsonable(error.response)
    attempt.possible_duplicate, attempt.finished_at = error.outcome_unknown, now
    return outcome


def _record_failure(message: Message, current: QuerySet[Message], error: ProviderError,
                    now: datetime, written: dict[str, Any]) -> str:
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
    fail(message, now, error.message, error.code, **flags)
    if error.suppress_address:
        _suppress_address(message, error, written.get("provider") or "provider")
    return "failed"


def _suppress_address(message: Message, error: ProviderError, provider: str) -> None:
    """Put the recipient the provider refuses for good on the workspace's list (in the
    failure's transaction), so the policy suppresses later messages before the provider."""
    list_name = policy.list_of(message.channel)
    if list_name is None:
        return
    try:
        suppression_add(workspace=message.workspace, channel=list_name, address=message.to,
                        reason=Suppression.Reason.PROVIDER,
                        source=f"{provider} {error.code}".strip())
    except ValidationError:
        logger.warning("message %s: cannot suppress %r", message.pk, message.to)


def fail(message: Message, now: datetime, error: str, code: str, **fields: Any) -> None:
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
    dead_letter_emit(letter=letter, source=message.source)


def notify_finals(finals: list[tuple[Any, str]]) -> None:
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
