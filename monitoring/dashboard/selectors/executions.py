"""Reads behind the executions list and an execution's detail page."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, QuerySet

from core.models import DeadLetter, Workspace
from flows.models import Execution, Step
from monitoring.dashboard.selectors.common import contact_filter, format_seconds, pretty_json


def executions_list(workspace: Workspace, *, flow: Any = None, status: str = "",
                    contact: str = "") -> QuerySet[Execution]:
    """Return the workspace's executions, newest first, with what the list shows joined in."""
    queryset = (Execution.objects.filter(workspace=workspace)
                .select_related("flow", "contact", "version")
                .annotate(step_count=Count("steps")).order_by("-started_at", "-id"))
    if flow is not None:
        queryset = queryset.filter(flow=flow)
    if status:
        queryset = queryset.filter(status=status)
    if contact:
        queryset = queryset.filter(contact_filter(contact))
    return queryset


@dataclass
class TimelineStep:
    step: Step
    input: str
    output: str
    duration: str
    can_retry: bool
    dead_letter: DeadLetter | None


def execution_timeline(execution: Execution) -> list[TimelineStep]:
    """Return the execution's steps in order, with their JSON ready to show."""
    steps = list(execution.steps.select_related("message").order_by("started_at", "id"))
    letters = {letter.source_id: letter for letter in DeadLetter.objects.filter(
        kind=DeadLetter.Kind.STEP, source_id__in=[str(step.pk) for step in steps])}
    retryable = execution.status == Execution.Status.FAILED
    return [TimelineStep(
        step=step, input=pretty_json(step.input), output=pretty_json(step.output),
        duration=format_seconds(None if step.duration_ms is None else step.duration_ms / 1000),
        can_retry=retryable and step.status == Step.Status.FAILED,
        dead_letter=letters.get(str(step.pk))) for step in steps]
