"""Operator actions behind the dashboard's buttons: thin adapters onto the owning services.

The dashboard never changes state by itself: each action calls the service that owns the
rows (flows.operations, flows.schedules, monitoring.services, messaging.ratelimit) and turns
its answer or its refusal into one line for the operator.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from django.db.models import QuerySet
from django.utils import timezone

from core.audit import Actor
from core.models import DeadLetter, Workspace
from flows import operations, schedules
from flows.models import Execution, FlowSchedule, Step
from messaging import ratelimit
from messaging.delivery import pauses
from monitoring import alerts, services
from monitoring.dashboard.selectors.common import workspace_tz
from monitoring.models import AlertRule

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    text: str


def execution_cancel(*, execution: Execution, actor: Actor) -> Outcome:
    """Cancel a running or waiting execution through the flow operations."""
    before = execution.status
    execution = operations.execution_cancel(execution=execution, actor=actor)
    if execution.status == Execution.Status.CANCELLED and before != execution.status:
        return Outcome(True, "Execution cancelled.")
    return Outcome(False, f"An execution that is '{execution.status}' cannot be cancelled.")


def step_retry(*, step: Step, actor: Actor) -> Outcome:
    """Run a failed step again; through its dead letter when it has one, so that is closed."""
    letter = DeadLetter.objects.filter(kind=DeadLetter.Kind.STEP, source_id=str(step.pk),
                                       status=DeadLetter.Status.OPEN).order_by("-pk").first()
    if letter is not None:
        # The replay service retries the step and marks the letter (and a superseded message
        # letter) replayed; retrying behind its back would leave them open.
        return dead_letter_retry(letter=letter, actor=actor)
    try:
        operations.step_retry(step=step)
    except operations.NotRetryable as exc:
        return Outcome(False, str(exc))
    return Outcome(True, f"Step {step.node_id} queued to run again.")


def rate_limits_reset(*, workspace: Workspace) -> Outcome:
    """Clear the workspace's deferral counters, events and reservations in Redis."""
    try:
        ratelimit.reset(str(workspace.pk))
    except redis.RedisError as exc:
        logger.warning("rate-limit reset failed for %s", workspace.pk, exc_info=True)
        return Outcome(False, f"Redis is unavailable: {exc}")
    return Outcome(True, "Rate-limit counters and events reset.")


def dead_letter_retry(*, letter: DeadLetter, actor: Actor) -> Outcome:
    """Replay a dead letter once through monitoring.services (a second replay is refused)."""
    outcome = services.dead_letter_replay(letter_id=letter.pk, actor=actor)
    if outcome.replayed:
        return Outcome(True, f"Replayed: {outcome.reason}")
    return Outcome(False, f"Not replayed: {outcome.reason}")


def dead_letter_discard(*, letter: DeadLetter, actor: Actor) -> Outcome:
    """Discard an open dead letter through monitoring.services."""
    if services.dead_letter_discard(letter_id=letter.pk, actor=actor):
        return Outcome(True, "Dead letter discarded.")
    letter.refresh_from_db(fields=["status"])
    return Outcome(False, f"Not discarded: the entry is {letter.status}, not open.")


def dead_letters_retry(*, queryset: QuerySet[DeadLetter], actor: Actor) -> Outcome:
    """Replay every open dead letter of the (filtered) queryset, up to the bulk limit."""
    report = services.dead_letters_replay(queryset=queryset.filter(status=DeadLetter.Status.OPEN),
                                          actor=actor, limit=services.BULK_REPLAY_LIMIT)
    text = f"Replayed {report.replayed} of {report.matched}; {report.refused} refused"
    if report.remaining:
        text += f"; {report.remaining} left (press again)"
    if report.refusals:
        text += f". First refusal: {report.refusals[0]['reason']}"
    return Outcome(report.refused == 0, text + ".")


def schedule_save(*, schedule: FlowSchedule | None, workspace: Workspace,
                  values: dict[str, Any]) -> Outcome:
    """Create a schedule, or change one, through the schedules service (beat follows)."""
    try:
        if schedule is None:
            schedules.schedule_create(workspace=workspace, **values)
            return Outcome(True, "Schedule created.")
        schedules.schedule_update(schedule=schedule, **values)
    except ValueError as exc:  # CronError: checked by the form; a race may still refuse it
        return Outcome(False, f"Not saved: {exc}")
    return Outcome(True, "Schedule saved.")


def schedule_delete(*, schedule: FlowSchedule) -> Outcome:
    """Delete a schedule with its beat task and runs."""
    schedules.schedule_delete(schedule=schedule)
    return Outcome(True, "Schedule deleted.")


def schedule_toggle(*, schedule: FlowSchedule, enabled: bool) -> Outcome:
    """Enable or disable a flow schedule through the schedules service, so beat follows."""
    try:
        schedules.schedule_update(schedule=schedule, enabled=enabled)
    except ValueError as exc:  # CronError: a stored expression no longer parses
        return Outcome(False, f"Not changed: {exc}")
    return Outcome(True, f"Schedule {'enabled' if enabled else 'disabled'}.")


def queue_pause(*, queue: str, workspace: Workspace | None, actor: Actor,
                reason: str = "") -> Outcome:
    """Pause a channel queue for the workspace (or for all: workspace=None)."""
    scope = "every workspace" if workspace is None else workspace.name
    try:
        _, changed = pauses.queue_pause(queue=queue, workspace=workspace, actor=actor,
                                        reason=reason)
    except pauses.UnknownQueue as exc:
        return Outcome(False, str(exc))
    if not changed:
        return Outcome(False, f"{queue} was already paused for {scope}.")
    return Outcome(True, f"{queue} paused for {scope}: its messages wait until resumed.")


def queue_resume(*, queue: str, workspace: Workspace | None, actor: Actor) -> Outcome:
    """Resume a paused channel queue; its held messages go out in order."""
    scope = "every workspace" if workspace is None else workspace.name
    try:
        released = pauses.queue_resume(queue=queue, workspace=workspace, actor=actor)
    except pauses.UnknownQueue as exc:
        return Outcome(False, str(exc))
    if released is None:
        return Outcome(False, f"{queue} was not paused for {scope}.")
    return Outcome(True, f"{queue} resumed for {scope}; {released} waiting message(s) "
                         f"released in order.")


def queue_retry_failed(*, queue: str, workspace: Workspace, actor: Actor) -> Outcome:
    """Replay the open dead letters of the queue's failed messages in the workspace."""
    report = services.queue_retry_failed(queue=queue, workspace=workspace, actor=actor)
    if not report.matched:
        return Outcome(False, f"{queue} has no failed message to retry.")
    text = f"{report.replayed} failed {queue} message(s) queued again"
    if report.refused:
        text += f", {report.refused} refused"
    if report.remaining:
        text += f", {report.remaining} left for another retry"
    return Outcome(report.refused == 0, text + ".")


def queue_clean(*, queue: str, workspace: Workspace, older_than: str, actor: Actor) -> Outcome:
    """Delete the workspace's completed messages of the queue older than the age given."""
    try:
        age = services.parse_age(older_than)
    except ValueError as exc:
        return Outcome(False, f"Not cleaned: {exc}")
    deleted = services.queue_clean_completed(queue=queue, workspace=workspace, older_than=age,
                                             actor=actor)
    return Outcome(True, f"{deleted} completed {queue} message(s) older than {older_than} "
                         f"deleted.")


def execution_pause(*, execution: Execution, actor: Actor, resume: bool = False) -> Outcome:
    """Pause (or resume) an execution through the flow operations."""
    operation = operations.execution_resume if resume else operations.execution_pause
    try:
        operation(execution=execution, actor=actor)
    except operations.NotPausable as exc:
        return Outcome(False, str(exc))
    return Outcome(True, "Execution resumed." if resume else "Execution paused.")


def alert_rule_mute(*, rule: AlertRule, hours: int) -> Outcome:
    """Mute the rule's notifications for some hours (0: unmute)."""
    until = timezone.now() + timedelta(hours=hours) if hours else None
    alerts.alert_rule_mute(rule=rule, until=until)
    if until is None:
        return Outcome(True, f"{rule.name} is no longer muted.")
    local = until.astimezone(workspace_tz(rule.workspace))
    return Outcome(True, f"{rule.name} is muted until {local:%Y-%m-%d %H:%M %Z}.")


def alert_rule_test(*, rule: AlertRule) -> Outcome:
    """Send a test notification to the rule's recipients through the pipeline."""
    messages = alerts.alert_rule_send_test(rule=rule)
    return Outcome(True, f"Test notification queued for {len(messages)} recipient"
                         f"{'' if len(messages) == 1 else 's'} ({rule.channel}); its delivery "
                         "shows in Messages.")
