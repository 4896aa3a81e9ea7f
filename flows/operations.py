"""What an operator does to an execution: cancel, pause or resume it, retry its failed step.

Kept apart from the engine, which only advances executions: these are services the API,
the admin and the dashboard call, and they reach the engine only through the queue.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.audit import COMMAND, Actor, as_actor, audit
from flows.journeys import waiting_steps_end
from flows.models import Execution, Step
from flows.publishing import schedule_advance
from messaging.models import FINAL_STATUSES, Message, MessageStatus
from messaging.signals import message_finished

ExecStatus = Execution.Status
StepStatus = Step.Status
ACTIVE = (ExecStatus.RUNNING, ExecStatus.WAITING)
# A message in one of these will not change again: its step can complete.
FINISHED_MESSAGE = [status for status in FINAL_STATUSES if status != MessageStatus.CANCELLED]


class NotRetryable(Exception):
    """Only a failed step of a failed execution can be retried."""


class NotPausable(Exception):
    """Only a running or waiting execution can be paused or resumed (the text says why)."""


def execution_cancel(*, execution: Execution, actor: Actor | str | None = None) -> Execution:
    """Cancel a running or waiting execution, every branch of it (a branch's cancel is its
    root's) and the messages their steps still wait for. Branches are changed before the
    root: a branch ending locks its parent after itself, so the same order never waits in
    a circle."""
    now = timezone.now()
    root = execution.root_id or execution.pk
    with transaction.atomic():
        fields = {"status": ExecStatus.CANCELLED, "completed_at": now, "wake_at": None,
                  "waiting_event": "", "paused_at": None, "updated_at": now}
        Execution.objects.filter(root_id=root, status__in=ACTIVE).update(**fields)
        changed = Execution.objects.filter(pk=root, status__in=ACTIVE).update(**fields)
        if changed:
            branches = Execution.objects.filter(root_id=root).values_list("pk", flat=True)
            waiting_steps_end(execution_ids=[root, *branches], now=now, reason=(
                f"execution {execution.pk} cancelled by {as_actor(actor or COMMAND).label}"))
            audit(actor=actor or COMMAND, action="execution.cancel",
                  workspace=execution.workspace_id, target_type="execution",
                  target_id=root, detail={"flow_id": str(execution.flow_id)})
    execution.refresh_from_db()
    return execution


def execution_pause(*, execution: Execution, actor: Actor) -> Execution:
    """Pause a running or waiting execution: it is not advanced and its timers wait until
    it is resumed. Pausing a paused execution changes nothing."""
    now = timezone.now()
    with transaction.atomic():
        Execution.objects.filter(root_id=execution.root_id or execution.pk, status__in=ACTIVE,
                                 paused_at__isnull=True).update(
            paused_at=now, paused_by=actor.name[:150], updated_at=now)
        changed = Execution.objects.filter(pk=execution.root_id or execution.pk,
                                           status__in=ACTIVE, paused_at__isnull=True).update(
            paused_at=now, paused_by=actor.name[:150], updated_at=now)
        execution.refresh_from_db()
        if execution.status not in ACTIVE:
            raise NotPausable(f"A {execution.status} execution cannot be paused.")
        if changed:
            audit(actor=actor, action="execution.pause", workspace=execution.workspace_id,
                  target_type="execution", target_id=execution.pk,
                  detail={"status": execution.status, "node": execution.current_node})
    return execution


def execution_resume(*, execution: Execution, actor: Actor) -> Execution:
    """Resume a paused execution where it stopped: a running one is advanced again, a
    waiting one's fired timer goes on the next dispatcher pass, and a step whose message
    finished meanwhile completes now. Resuming one that is not paused changes nothing."""
    with transaction.atomic():
        for branch in Execution.objects.select_for_update().filter(
                root_id=execution.root_id or execution.pk, status__in=ACTIVE,
                paused_at__isnull=False).order_by("pk"):
            _unpause(branch)
        locked = Execution.objects.select_for_update().get(pk=execution.root_id or execution.pk)
        if locked.status not in ACTIVE:
            raise NotPausable(f"A {locked.status} execution cannot be resumed.")
        if locked.paused_at is not None:
            paused_for = timezone.now() - locked.paused_at
            _unpause(locked)
            audit(actor=actor, action="execution.resume", workspace=locked.workspace_id,
                  target_type="execution", target_id=locked.pk,
                  detail={"status": locked.status, "node": locked.current_node,
                          "paused_seconds": round(paused_for.total_seconds())})
    execution.refresh_from_db()
    return execution


def _unpause(locked: Execution) -> None:
    """Clear a locked execution's pause and set it going again."""
    Execution.objects.filter(pk=locked.pk).update(
        paused_at=None, paused_by="", updated_at=timezone.now(),
        enqueued_at=timezone.now() if locked.status == ExecStatus.RUNNING
        else locked.enqueued_at)
    _continue(locked)


def _continue(execution: Execution) -> None:
    """Set a just-resumed execution going again (after commit)."""
    if execution.status == ExecStatus.RUNNING:
        schedule_advance(execution.pk)
        return
    step = Step.objects.filter(execution=execution, node_id=execution.current_node,
                               visit=execution.current_visit, status=StepStatus.WAITING,
                               message__status__in=FINISHED_MESSAGE).first()
    if step is not None:
        # The message finished while paused and its notice was turned away: repeat it.
        message_id = step.message_id
        transaction.on_commit(lambda: message_finished.send(
            sender=Message, message_id=message_id, source="flow"))


def step_retry(*, step: Step) -> Step:
    """Run a failed step again: its execution resumes at that node.

    A failed branch failed the execution it forked from once its other branches had ended
    (and that one its own parent, up to the root): in the same transaction they wait at
    their forks again, so the branch's end moves them on. A branch whose parent has left
    that fork (cancelled, exited, or failed before this was kept) cannot run again."""
    with transaction.atomic():
        execution = Execution.objects.select_for_update().get(pk=step.execution_id)
        if step.status != StepStatus.FAILED or execution.status != ExecStatus.FAILED:
            raise NotRetryable("Only a failed step of a failed execution can be retried.")
        now = timezone.now()
        waiting = _forks_reopen(branch=execution, now=now)
        Step.objects.filter(pk=step.pk).update(status=StepStatus.PENDING,
                                               retry_count=F("retry_count") + 1,
                                               completed_at=None)
        # A branch of a paused family is paused with it (its resume advances it).
        Execution.objects.filter(pk=execution.pk).update(
            status=ExecStatus.RUNNING, current_node=step.node_id, current_visit=step.visit,
            error="", completed_at=None, updated_at=now, enqueued_at=now,
            paused_at=waiting.paused_at if waiting else None,
            paused_by=waiting.paused_by if waiting else "")
        schedule_advance(execution.pk)
    step.refresh_from_db()
    return step


def _forks_reopen(*, branch: Execution, now: datetime) -> Execution | None:
    """Put the executions above a failed branch back to waiting at the forks that started
    it and them, up to the first still waiting there (returned; None when the root was
    reopened or the execution is no branch). Each is locked after the one below it, as a
    branch ending locks its parent. NotRetryable when one is no longer at that fork."""
    reopened: list[Any] = []
    child = branch
    while child.parent_id is not None:
        parent = Execution.objects.select_for_update().get(pk=child.parent_id)
        if (parent.status not in (ExecStatus.WAITING, ExecStatus.FAILED)
                or (parent.current_node, parent.current_visit) != (child.fork_node,
                                                                    child.fork_visit)):
            raise NotRetryable(
                f"The execution this branch forked from ({parent.pk}) is {parent.status} "
                f"and no longer waits at the fork {child.fork_node or '(unknown)'}: the "
                "branch cannot run again.")
        if parent.status == ExecStatus.WAITING:
            break
        reopened.append(parent.pk)
        child = parent
    else:
        parent = None
    Execution.objects.filter(pk__in=reopened).update(
        status=ExecStatus.WAITING, error="", completed_at=None, updated_at=now)
    return parent
