"""What an operator does to an execution: cancel it, retry its failed step.

Kept apart from the engine, which only advances executions: these are services the API,
the admin and the dashboard call, and they reach the engine only through the queue.
"""
from __future__ import annotations

import contextlib

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from flows.models import Execution, Step
from flows.publishing import schedule_advance
from messaging.pipeline import NotCancellable, message_cancel

ExecStatus = Execution.Status
StepStatus = Step.Status


class NotRetryable(Exception):
    """Only a failed step of a failed execution can be retried."""


def execution_cancel(*, execution: Execution) -> Execution:
    """Cancel a running or waiting execution and the messages its steps still wait for."""
    now = timezone.now()
    changed = Execution.objects.filter(
        pk=execution.pk, status__in=[ExecStatus.RUNNING, ExecStatus.WAITING]).update(
        status=ExecStatus.CANCELLED, completed_at=now, wake_at=None, waiting_event="",
        updated_at=now)
    if changed:
        for step in execution.steps.filter(status=StepStatus.WAITING).select_related("message"):
            Step.objects.filter(pk=step.pk).update(status=StepStatus.SKIPPED, completed_at=now)
            if step.message is not None:
                with contextlib.suppress(NotCancellable):  # already with the provider
                    message_cancel(message=step.message)
    execution.refresh_from_db()
    return execution


def step_retry(*, step: Step) -> Step:
    """Run a failed step again: its execution resumes at that node."""
    with transaction.atomic():
        execution = Execution.objects.select_for_update().get(pk=step.execution_id)
        if step.status != StepStatus.FAILED or execution.status != ExecStatus.FAILED:
            raise NotRetryable("Only a failed step of a failed execution can be retried.")
        Step.objects.filter(pk=step.pk).update(status=StepStatus.PENDING,
                                               retry_count=F("retry_count") + 1,
                                               completed_at=None)
        Execution.objects.filter(pk=execution.pk).update(
            status=ExecStatus.RUNNING, current_node=step.node_id, current_visit=step.visit,
            error="", completed_at=None, updated_at=timezone.now(), enqueued_at=timezone.now())
        schedule_advance(execution.pk)
    step.refresh_from_db()
    return step
