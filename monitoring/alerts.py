"""Alert rules: measure a workspace's numbers, notify when a rule holds, resolve when it stops.

Each rule is one incident state machine, evaluated every minute by beat:

- ok -> firing: the value reaches the threshold (schedule_no_success: the successful runs in
  the window fall below it). An AlertEvent is recorded and, unless the rule notified less
  than `cooldown_seconds` ago, notifications are created.
- firing -> ok: the value drops back (or there is no longer anything to judge); the event
  is resolved and, if it had notified, a "resolved" notice goes to the same recipients.
- while firing nothing is repeated; a unique constraint keeps one open event per rule.

Notifications are Message rows (source "alert") created in the evaluating transaction and
published after commit, so they get the pipeline's retries and dead letters and are never
lost: email goes to each recipient through the workspace's email provider; webhook posts a
Standard-Webhooks-signed JSON body; Slack is a webhook whose body is {"text": ...}, as
incoming webhooks expect (https://api.slack.com/messaging/webhooks).
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import transaction
from django.db.models import Avg, Count, F, Q
from django.utils import timezone

from core.models import DeadLetter
from flows.models import Execution, FlowSchedule, ScheduleRun
from messaging.channels import EMAIL, WEBHOOK
from messaging.delivery import creation
from messaging.models import (
    FAILURE_STATUSES,
    SUCCESS_STATUSES,
    TIMER_STATUSES,
    Message,
    MessageStatus,
    WebhookEndpoint,
)
from messaging.providers.health import providers_down
from messaging.providers.ssrf import UnsafeURL, check_url_literal
from monitoring.models import AlertEvent, AlertRule
from monitoring.selectors import executions_overdue, outcome_filters, rate_limit_events_since

logger = logging.getLogger(__name__)

Type = AlertRule.Type
# For these types a value *below* the threshold is the problem.
LOWER_IS_WORSE = {Type.SCHEDULE_NO_SUCCESS, Type.EXECUTION_SUCCESS_RATE}
LABELS: dict[str, tuple[str, str]] = {
    Type.FAILURE_RATE: ("failure rate", " %"),
    Type.DEAD_LETTERS: ("dead letters", ""),
    Type.QUEUE_BACKLOG: ("messages waiting", ""),
    Type.AVG_EXECUTION_TIME: ("average execution time", " s"),
    Type.RATE_LIMIT_EVENTS: ("rate-limit deferrals", ""),
    Type.SCHEDULE_NO_SUCCESS: ("successful schedule runs", ""),
    Type.ENDPOINT_DISABLED: ("webhook endpoints disabled after failing", ""),
    Type.PROVIDER_DOWN: ("providers down", ""),
    Type.EXECUTIONS_STUCK: ("executions stuck past their due time", ""),
    Type.EXECUTION_SUCCESS_RATE: ("execution success rate", " %"),
}
MAX_RECIPIENTS = 20
MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 31 * 24 * 3600


# --- measuring ------------------------------------------------------------------------------

def _failure_rate(rule: AlertRule, since: datetime) -> float | None:
    """Return the % of outcomes in the window that failed (None under min_samples).

    With a flow: its executions (failed vs completed). Without: the workspace's messages
    (failed or undelivered vs sent), alert notifications excluded so a failing alert
    channel cannot feed its own alert.
    """
    if rule.flow_id:
        counts = Execution.objects.entered().filter(flow_id=rule.flow_id,
                                                    completed_at__gte=since) \
            .aggregate(bad=Count("pk", filter=Q(status=Execution.Status.FAILED)),
                       good=Count("pk", filter=Q(status=Execution.Status.COMPLETED)))
    else:
        messages = Message.objects.filter(workspace_id=rule.workspace_id).exclude(
            source="alert")
        if rule.message_channel:
            messages = messages.filter(channel=rule.message_channel)
        succeeded, failed = outcome_filters(since)
        counts = messages.aggregate(bad=Count("pk", filter=failed),
                                    good=Count("pk", filter=succeeded))
    total = counts["bad"] + counts["good"]
    if total == 0 or total < rule.min_samples:
        return None
    return round(100.0 * counts["bad"] / total, 2)


def _dead_letters(rule: AlertRule, since: datetime) -> float:
    # Spelled out because NOT(has_key) on a missing "metadata" is SQL NULL, which would
    # drop every step entry (they carry no metadata) from the count.
    not_an_alert = ~Q(payload__has_key="metadata") | ~Q(
        payload__metadata__has_key="alert_event_id")
    letters = DeadLetter.objects.filter(not_an_alert, workspace_id=rule.workspace_id,
                                        created_at__gte=since)
    if rule.flow_id:
        letters = letters.filter(flow_id=str(rule.flow_id))
    if rule.message_channel:
        letters = letters.filter(channel=rule.message_channel)
    return float(letters.count())


def _queue_backlog(rule: AlertRule, now: datetime) -> float:
    """Return the messages that should be sending now: queued, or timers already due."""
    waiting = Message.objects.filter(workspace_id=rule.workspace_id).filter(
        Q(status=MessageStatus.QUEUED) | Q(status__in=TIMER_STATUSES, due_at__lte=now))
    if rule.message_channel:
        waiting = waiting.filter(channel=rule.message_channel)
    return float(waiting.count())


def _avg_execution_time(rule: AlertRule, since: datetime) -> float | None:
    executions = Execution.objects.entered().filter(
        workspace_id=rule.workspace_id, completed_at__gte=since,
        status__in=[Execution.Status.COMPLETED, Execution.Status.FAILED])
    if rule.flow_id:
        executions = executions.filter(flow_id=rule.flow_id)
    average = executions.aggregate(avg=Avg(F("completed_at") - F("started_at")))["avg"]
    return None if average is None else round(average.total_seconds(), 3)


def _execution_success_rate(rule: AlertRule, since: datetime) -> float | None:
    """Return the % of executions finished in the window that completed (None under
    min_samples). Cancelled ones are an operator's choice, not a failure: left out; so
    are parallel branches (their execution's outcome counts, once)."""
    executions = Execution.objects.entered().filter(workspace_id=rule.workspace_id,
                                                    completed_at__gte=since)
    if rule.flow_id:
        executions = executions.filter(flow_id=rule.flow_id)
    counts = executions.aggregate(
        good=Count("pk", filter=Q(status=Execution.Status.COMPLETED)),
        bad=Count("pk", filter=Q(status=Execution.Status.FAILED)))
    total = counts["good"] + counts["bad"]
    if total == 0 or total < rule.min_samples:
        return None
    return round(100.0 * counts["good"] / total, 2)


def _executions_stuck(rule: AlertRule, now: datetime) -> float:
    """Return the executions overdue by more than the window (monitoring.selectors)."""
    return float(executions_overdue(workspace_id=rule.workspace_id, flow_id=rule.flow_id,
                                    before=now - timedelta(seconds=rule.window_seconds),
                                    now=now).count())


def _schedule_successes(rule: AlertRule, since: datetime) -> float | None:
    if not rule.schedule_id:
        return None
    runs = ScheduleRun.objects.filter(schedule__pk=rule.schedule_id, occurrence_at__gte=since,
                                      status=ScheduleRun.Status.SUCCEEDED)
    return float(runs.count())


def _endpoints_disabled(rule: AlertRule, since: datetime) -> float:
    """Return the endpoints the service disabled (a reason says why; a customer's own
    switch-off has none) in the window that are still disabled."""
    return float(WebhookEndpoint.objects.filter(
        workspace_id=rule.workspace_id, enabled=False, disabled_at__gte=since).exclude(
        disabled_reason="").count())


def rule_measure(*, rule: AlertRule, now: datetime | None = None) -> float | None:
    """Return the rule's current value (None: nothing to judge, e.g. no traffic)."""
    now = now or timezone.now()
    since = now - timedelta(seconds=rule.window_seconds)
    if rule.type == Type.FAILURE_RATE:
        return _failure_rate(rule, since)
    if rule.type == Type.DEAD_LETTERS:
        return _dead_letters(rule, since)
    if rule.type == Type.QUEUE_BACKLOG:
        return _queue_backlog(rule, now)
    if rule.type == Type.AVG_EXECUTION_TIME:
        return _avg_execution_time(rule, since)
    if rule.type == Type.RATE_LIMIT_EVENTS:
        return float(rate_limit_events_since(workspace=rule.workspace, since=since,
                                             channel=rule.message_channel))
    if rule.type == Type.SCHEDULE_NO_SUCCESS:
        return _schedule_successes(rule, since)
    if rule.type == Type.ENDPOINT_DISABLED:
        return _endpoints_disabled(rule, since)
    if rule.type == Type.PROVIDER_DOWN:
        return float(providers_down(workspace=rule.workspace, since=since,
                                    channel=rule.message_channel))
    if rule.type == Type.EXECUTIONS_STUCK:
        return _executions_stuck(rule, now)
    if rule.type == Type.EXECUTION_SUCCESS_RATE:
        return _execution_success_rate(rule, since)
    raise ValueError(f"unknown alert type {rule.type!r}")


def rule_breached(*, rule: AlertRule, value: float | None) -> bool:
    """Return whether the value is on the wrong side of the threshold."""
    if value is None:
        return False
    if rule.type in LOWER_IS_WORSE:
        return value < rule.threshold
    return value >= rule.threshold


# --- evaluating -----------------------------------------------------------------------------

def alerts_evaluate(*, now: datetime | None = None) -> dict[str, int]:
    """Evaluate every enabled rule once; return how many ended in each outcome."""
    now = now or timezone.now()
    totals: dict[str, int] = {}
    for rule_id in AlertRule.objects.filter(enabled=True).values_list("pk", flat=True):
        try:
            outcome = alert_rule_evaluate(rule_id=rule_id, now=now)
        except Exception:  # one broken rule must not stop the others from being evaluated
            logger.exception("alert rule %s could not be evaluated", rule_id)
            outcome = "error"
        totals[outcome] = totals.get(outcome, 0) + 1
    return totals


def alert_rule_evaluate(*, rule_id: int, now: datetime | None = None) -> str:
    """Evaluate one rule: return ok, firing, triggered, suppressed, resolved or skipped.

    The rule row is locked (SKIP LOCKED), so two evaluators never handle it at once.
    """
    now = now or timezone.now()
    with transaction.atomic():
        rule = (AlertRule.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("workspace").filter(pk=rule_id, enabled=True).first())
        if rule is None:
            return "skipped"
        value = rule_measure(rule=rule, now=now)
        breached = rule_breached(rule=rule, value=value)
        event = rule.events.filter(resolved_at__isnull=True).first()
        fields: dict[str, Any] = {"last_value": value, "last_evaluated_at": now}
        if breached and event is None:
            outcome = _trigger(rule, value, now)
            if outcome == "triggered":
                fields["last_notified_at"] = now
        elif not breached and event is not None:
            _resolve(rule, event, value, now)
            outcome = "resolved"
        else:
            outcome = "firing" if breached else "ok"
        AlertRule.objects.filter(pk=rule.pk).update(**fields)
    return outcome


def _cooling_down(rule: AlertRule, now: datetime) -> bool:
    return rule.last_notified_at is not None and (
        now - rule.last_notified_at < timedelta(seconds=rule.cooldown_seconds))


def _muted(rule: AlertRule, now: datetime) -> bool:
    return rule.muted_until is not None and now < rule.muted_until


def _trigger(rule: AlertRule, value: float | None, now: datetime) -> str:
    # Muted or cooling down: the incident is recorded, nobody is paged (nor told it ended).
    notify = not _cooling_down(rule, now) and not _muted(rule, now)
    event = AlertEvent.objects.create(rule=rule, workspace_id=rule.workspace_id,
                                      value=value if value is not None else 0.0,
                                      threshold=rule.threshold, triggered_at=now,
                                      summary=summary(rule=rule, value=value),
                                      notified=notify)
    if not notify:
        logger.info("alert %s breached while muted or cooling down; not notifying", rule.pk)
        return "suppressed"
    messages = notifications(rule=rule, event=event, resolved=False)
    creation.message_create_many(messages=messages)
    AlertEvent.objects.filter(pk=event.pk).update(message_ids=[str(m.pk) for m in messages])
    logger.warning("alert %s triggered: %s", rule.pk, event.summary)
    return "triggered"


def _resolve(rule: AlertRule, event: AlertEvent, value: float | None, now: datetime) -> None:
    event.resolved_at, event.resolved_value = now, value
    fields = ["resolved_at", "resolved_value"]
    if event.notified:
        messages = notifications(rule=rule, event=event, resolved=True)
        creation.message_create_many(messages=messages)
        event.resolve_message_ids = [str(m.pk) for m in messages]
        fields.append("resolve_message_ids")
    event.save(update_fields=fields)


# --- notifying ------------------------------------------------------------------------------

def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{text}{unit}"


def summary(*, rule: AlertRule, value: float | None, resolved: bool = False) -> str:
    """Return one line saying what the rule measured against its threshold."""
    label, unit = LABELS.get(rule.type, (rule.type, ""))
    comparison = "<" if rule.type in LOWER_IS_WORSE else "≥"
    window = "" if rule.type == Type.QUEUE_BACKLOG else \
        f" over the last {_duration(rule.window_seconds)}"
    state = "resolved" if resolved else "firing"
    return (f"[{state}] {rule.name}: {label} {_format(value, unit)}{window} "
            f"(alert when {comparison} {_format(rule.threshold, unit)})")


def _duration(seconds: int) -> str:
    for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {name}"
    return f"{seconds} s"


def payload(*, rule: AlertRule, event: AlertEvent, resolved: bool) -> dict[str, Any]:
    """Return the JSON body of a webhook notification."""
    return {
        "type": "alert.resolved" if resolved else "alert.triggered",
        "workspace_id": str(rule.workspace_id),
        "summary": summary(rule=rule, value=event.resolved_value if resolved else event.value,
                           resolved=resolved),
        "rule": _rule_json(rule),
        "event": {"id": event.pk, "value": event.value,
                  "triggered_at": event.triggered_at.isoformat(),
                  "resolved_at": event.resolved_at.isoformat() if event.resolved_at else None,
                  "resolved_value": event.resolved_value},
    }


def _rule_json(rule: AlertRule) -> dict[str, Any]:
    return {"id": rule.pk, "name": rule.name, "type": rule.type, "threshold": rule.threshold,
            "window_seconds": rule.window_seconds,
            "flow_id": str(rule.flow_id) if rule.flow_id else None,
            "message_channel": rule.message_channel or None}


def notifications(*, rule: AlertRule, event: AlertEvent, resolved: bool) -> list[Message]:
    """Return one unsaved Message per recipient carrying the alert on the rule's channel."""
    body = payload(rule=rule, event=event, resolved=resolved)
    return _messages(rule, body, {"alert_rule_id": rule.pk, "alert_event_id": event.pk})


def alert_rule_send_test(*, rule: AlertRule) -> list[Message]:
    """Send a test notification to the rule's recipients, exactly as an alert travels
    (same channel, pipeline, retries and dead letters); no incident is recorded."""
    now = timezone.now()
    body = {"type": "alert.test", "workspace_id": str(rule.workspace_id),
            "summary": f"[test] {rule.name}: a test notification; nothing is wrong.",
            "rule": _rule_json(rule),
            "event": {"id": None, "value": None, "triggered_at": now.isoformat(),
                      "resolved_at": None, "resolved_value": None}}
    # alert_event_id (None) marks it as an alert's own message, so a failing test does not
    # count toward the workspace's dead-letter and failure-rate alerts.
    messages = _messages(rule, body, {"alert_rule_id": rule.pk, "alert_event_id": None,
                                      "alert_test": True})
    return creation.message_create_many(messages=messages)


def alert_rule_mute(*, rule: AlertRule, until: datetime | None) -> AlertRule:
    """Mute the rule's notifications until a time (None: unmute); it is still evaluated."""
    rule.muted_until = until
    rule.save(update_fields=["muted_until", "updated_at"])
    return rule


def _messages(rule: AlertRule, body: dict[str, Any], metadata: dict[str, Any]) -> list[Message]:
    common: dict[str, Any] = {"workspace": rule.workspace, "source": "alert",
                              "metadata": metadata, "priority": "high"}
    messages = []
    for recipient in rule.recipients:
        if rule.channel == AlertRule.Channel.EMAIL:
            content = {"subject": body["summary"], "text": _email_text(body)}
            messages.append(creation.message_build(channel=EMAIL, to=recipient,
                                                   content=content, **common))
            continue
        data = {"text": body["summary"]} if rule.channel == AlertRule.Channel.SLACK else body
        messages.append(creation.message_build(channel=WEBHOOK, to=recipient,
                                               content={"url": recipient, "payload": data},
                                               **common))
    return messages


def _email_text(body: dict[str, Any]) -> str:
    rule, event = body["rule"], body["event"]
    lines = [body["summary"], "", f"Rule: {rule['name']} (#{rule['id']}, {rule['type']})",
             f"Triggered at: {event['triggered_at']}"]
    if event["resolved_at"]:
        lines.append(f"Resolved at: {event['resolved_at']}")
    return "\n".join(lines) + "\n"


# --- validating -----------------------------------------------------------------------------

def alert_rule_validate(*, rule: AlertRule) -> None:
    """Raise ValidationError (per field) unless the rule can be evaluated and delivered."""
    errors: dict[str, list[str]] = {}
    errors.update(_recipient_errors(rule))
    if rule.threshold is None or rule.threshold < 0:
        errors.setdefault("threshold", []).append("Must be zero or more.")
    elif rule.type in (Type.FAILURE_RATE, Type.EXECUTION_SUCCESS_RATE) and rule.threshold > 100:
        errors.setdefault("threshold", []).append("A rate is a percentage (0-100).")
    if not MIN_WINDOW_SECONDS <= (rule.window_seconds or 0) <= MAX_WINDOW_SECONDS:
        errors["window_seconds"] = [f"Must be between {MIN_WINDOW_SECONDS} and "
                                    f"{MAX_WINDOW_SECONDS} seconds."]
    if rule.flow_id and rule.flow is not None and rule.flow.workspace_id != rule.workspace_id:
        errors["flow"] = ["Unknown flow."]
    if rule.type == Type.SCHEDULE_NO_SUCCESS:
        problem = _schedule_problem(rule)
        if problem:
            errors["schedule_id"] = [problem]
    if errors:
        raise ValidationError(errors)


def _recipient_errors(rule: AlertRule) -> dict[str, list[str]]:
    recipients = rule.recipients
    if not isinstance(recipients, list) or not recipients or len(recipients) > MAX_RECIPIENTS:
        return {"recipients": [f"Give 1 to {MAX_RECIPIENTS} recipients."]}
    problems = []
    for recipient in recipients:
        if not isinstance(recipient, str):
            problems.append(f"{recipient!r} is not text.")
        elif rule.channel == AlertRule.Channel.EMAIL:
            try:
                EmailValidator()(recipient)
            except ValidationError:
                problems.append(f"{recipient} is not an email address.")
        else:
            problems.extend(_url_problems(recipient))
    return {"recipients": problems} if problems else {}


def _url_problems(url: str) -> list[str]:
    if not url.lower().startswith(("https://", "http://")):
        return [f"{url} must be an http(s) URL."]
    try:
        check_url_literal(url)
    except UnsafeURL as exc:
        return [f"{url}: {exc}"]
    return []


def _schedule_problem(rule: AlertRule) -> str:
    if not rule.schedule_id:
        return "Required for a schedule_no_success rule."
    # Parsed here rather than left to the lookup, which raises on anything not a UUID.
    try:
        schedule_pk = uuid.UUID(str(rule.schedule_id))
    except ValueError:
        return "Not a schedule id (a UUID)."
    exists = FlowSchedule.objects.filter(pk=schedule_pk,
                                         workspace_id=rule.workspace_id).exists()
    return "" if exists else "Unknown schedule."


# --- reading --------------------------------------------------------------------------------

def alert_event_delivery(*, events: list[AlertEvent]) -> dict[int, dict[str, Any]]:
    """Return, per event id, how its notifications fared: counts by outcome and `delivered`
    (every trigger notification sent), read from the messages in one query."""
    wanted = {message_id for event in events for message_id in event.message_ids}
    statuses = {str(pk): status for pk, status in
                Message.objects.filter(pk__in=wanted).values_list("pk", "status")}
    report: dict[int, dict[str, Any]] = {}
    for event in events:
        counts = {"sent": 0, "failed": 0, "pending": 0}
        for message_id in event.message_ids:
            found = statuses.get(message_id)
            if found in SUCCESS_STATUSES:
                counts["sent"] += 1
            elif found in FAILURE_STATUSES or found in (MessageStatus.CANCELLED, None):
                counts["failed"] += 1
            else:
                counts["pending"] += 1
        report[event.pk] = {**counts, "delivered": bool(event.message_ids) and
                            counts["sent"] == len(event.message_ids)}
    return report
