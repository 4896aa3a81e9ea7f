"""Reads behind the executions list and an execution's detail page."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, QuerySet

from core.models import DeadLetter, Workspace
from flows import timeline as flows_timeline
from flows.models import Execution, Step
from flows.timeline import Entry
from messaging.models import Message
from monitoring.dashboard.selectors.common import contact_filter, format_seconds, pretty_json


def executions_list(workspace: Workspace, *, flow: Any = None, status: str = "",
                    contact: str = "") -> QuerySet[Execution]:
    """Return the executions contacts entered in the workspace (an execution's parallel
    branches are listed on its page: execution_branches), newest first, with what the list
    shows joined in (their step counts come per page: executions_count_steps)."""
    queryset = (Execution.objects.entered().filter(workspace=workspace)
                .select_related("flow", "contact", "version").order_by("-started_at", "-id"))
    if flow is not None:
        queryset = queryset.filter(flow=flow)
    if status:
        queryset = queryset.filter(status=status)
    if contact:
        queryset = queryset.filter(contact_filter(contact))
    return queryset


def execution_branches(execution: Execution) -> list[Execution]:
    """Return the parallel branches the execution started, oldest first (the list shows the
    executions contacts entered: a branch is found on the page of the one that forked)."""
    return list(Execution.objects.filter(parent=execution).order_by("started_at", "id"))


def executions_count_steps(executions: list[Execution]) -> list[Execution]:
    """Set `step_count` on each of a page's executions: one grouped query over their steps,
    not a count joined into the list's query (that one would group every execution's steps
    before the page is cut)."""
    counts = dict(Step.objects.filter(execution__in=executions).values("execution")
                  .annotate(n=Count("id")).values_list("execution", "n").order_by())
    for execution in executions:
        execution.step_count = counts.get(execution.pk, 0)  # type: ignore[attr-defined]
    return executions


@dataclass
class TimelineStep:
    """One entry of the page's timeline; the step's fields when the entry is a step."""

    entry: Entry
    step: Step | None
    input: str
    output: str
    duration: str
    can_retry: bool
    dead_letter: DeadLetter | None
    message: Message | None


def execution_timeline(execution: Execution) -> list[TimelineStep]:
    """Return the execution's timeline (flows.timeline) with its JSON ready to show."""
    entries = flows_timeline.execution_timeline(execution=execution)
    steps = [entry.step for entry in entries if entry.step is not None]
    letters = {letter.source_id: letter for letter in DeadLetter.objects.filter(
        kind=DeadLetter.Kind.STEP, source_id__in=[str(step.pk) for step in steps])}
    messages = Message.objects.in_bulk([step.message_id for step in steps if step.message_id])
    retryable = execution.status == Execution.Status.FAILED
    items = []
    for entry in entries:
        step = entry.step
        items.append(TimelineStep(
            entry=entry, step=step,
            input=pretty_json(step.input if step else entry.detail.get("data")),
            output=pretty_json(step.output if step else None),
            duration=format_seconds(None if step is None or step.duration_ms is None
                                    else step.duration_ms / 1000),
            can_retry=retryable and step is not None and step.status == Step.Status.FAILED,
            dead_letter=letters.get(str(step.pk)) if step else None,
            message=messages.get(step.message_id) if step and step.message_id else None))
    return items
