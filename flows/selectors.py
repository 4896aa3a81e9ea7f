"""Reads of flows, executions and schedules, one workspace at a time, shaped as the API
shows them.

The API's viewsets get their rows here (through core.api.WorkspaceScoped, which passes the
key's workspace), so what a list joins and prefetches is said once, not inside a view.
"""
from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from core.models import Workspace
from flows.models import Execution, Flow, FlowSchedule, Step


def flows_list(*, workspace: Workspace) -> QuerySet[Flow]:
    """Return the workspace's flows."""
    return Flow.objects.filter(workspace=workspace)


def executions_list(*, workspace: Workspace, with_steps: bool = False) -> QuerySet[Execution]:
    """Return the workspace's executions with their versions; with_steps also fetches each
    one's steps in the order they ran (what an execution's detail shows)."""
    queryset = Execution.objects.filter(workspace=workspace).select_related("version")
    if with_steps:
        queryset = queryset.prefetch_related(
            Prefetch("steps", Step.objects.order_by("started_at", "id")))
    return queryset


def schedules_list(*, workspace: Workspace) -> QuerySet[FlowSchedule]:
    """Return the workspace's cron schedules."""
    return FlowSchedule.objects.filter(workspace=workspace)
