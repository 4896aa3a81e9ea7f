"""Reads of flows, executions and schedules, one workspace at a time, shaped as the API
shows them.

The API's viewsets get their rows here (through core.api.WorkspaceScoped, which passes the
key's workspace), so what a list joins and prefetches is said once, not inside a view.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Prefetch, Q, QuerySet

from core.models import Workspace
from flows.models import Execution, ExecutionQuerySet, Flow, FlowSchedule, FlowVersion, Step
from messaging.models import Message, MessageStatus

# A message that reached its provider (what a split's comparison counts as sent).
SENT_STATUSES = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.UNDELIVERED)


def flows_list(*, workspace: Workspace) -> QuerySet[Flow]:
    """Return the workspace's flows."""
    return Flow.objects.filter(workspace=workspace)


def live_version_numbers(*, flows: list[Flow]) -> dict[Any, int]:
    """Return the number of each flow's live (newest) version, by flow id, in one query;
    a flow never published has none."""
    return dict(FlowVersion.objects.filter(flow__in=flows).values("flow_id")
                .annotate(number=Max("number")).values_list("flow_id", "number"))


def executions_list(*, workspace: Workspace,
                    with_steps: bool = False) -> ExecutionQuerySet:
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


def flow_stats(*, flow: Flow, since: datetime | None = None) -> dict[str, Any]:
    """Return the flow's funnel since a moment (executions started then or later): per node,
    how many visits entered, completed and failed, and how many executions exited there;
    per split branch, the executions that took it, their messages sent and delivered, and
    their conversions. A few grouped queries, whatever the number of executions."""
    family = Execution.objects.filter(flow=flow)  # with parallel branches, their steps
    if since is not None:
        family = family.filter(started_at__gte=since)
    executions = family.entered()
    steps = Step.objects.filter(execution__in=family)
    nodes: dict[str, dict[str, Any]] = {}
    for row in steps.values("node_id", "node_type").annotate(
            entered=Count("pk"), completed=Count("pk", filter=Q(status=Step.Status.COMPLETED)),
            failed=Count("pk", filter=Q(status=Step.Status.FAILED))).order_by("node_id"):
        nodes[row["node_id"]] = {"node_id": row["node_id"], "type": row["node_type"],
                                 "entered": row["entered"], "completed": row["completed"],
                                 "failed": row["failed"], "exited": 0}
    for node_id, count in family.filter(status=Execution.Status.EXITED).values_list(
            "current_node").annotate(n=Count("pk")).order_by():
        if node_id in nodes:
            nodes[node_id]["exited"] = count
    return {"since": since, "executions": executions.count(),
            "converted": executions.filter(converted_at__isnull=False).count(),
            "nodes": list(nodes.values()), "splits": _split_stats(steps)}


def _split_stats(steps: QuerySet[Step]) -> list[dict[str, Any]]:
    """Per split node and branch: entered, messages sent and delivered, conversions."""
    splits: dict[str, list[dict[str, Any]]] = {}
    taken = steps.filter(node_type="split", status=Step.Status.COMPLETED)
    for node_id, branch, entered, converted in taken.values_list(
            "node_id", "output__branch").annotate(
            entered=Count("execution_id", distinct=True),
            converted=Count("execution_id", distinct=True,
                            filter=Q(execution__converted_at__isnull=False))).order_by(
            "node_id", "output__branch"):
        members = taken.filter(node_id=node_id, output__branch=branch).values("execution_id")
        sent = Message.objects.filter(flow_steps__execution_id__in=members).aggregate(
            sent=Count("pk", distinct=True, filter=Q(status__in=SENT_STATUSES)),
            delivered=Count("pk", distinct=True, filter=Q(status=MessageStatus.DELIVERED)))
        splits.setdefault(node_id, []).append({
            "name": branch, "entered": entered, "sent": sent["sent"],
            "delivered": sent["delivered"], "converted": converted,
            "conversion_rate": round(converted / entered, 4) if entered else 0.0})
    return [{"node_id": node_id, "branches": branches} for node_id, branches in splits.items()]
