"""The flows' events (execution.*, schedule.run_failed), emitted through messaging.events in
the transaction of the change that causes them (README.md, "Events")."""
from __future__ import annotations

from collections.abc import Sequence

from flows.models import Execution, ScheduleRun
from flows.serializers import ExecutionSerializer, ScheduleRunSerializer
from messaging import events


def executions_emit(*, executions: Sequence[Execution], type: str) -> None:  # noqa: A002
    """Emit one event per execution, showing it as the API does after the change (one
    query, and none when no endpoint of their workspaces listens)."""
    listening = events.subscribers({e.workspace_id for e in executions})
    wanted = [e.pk for e in executions if listening.get(str(e.workspace_id))]
    if not wanted:
        return
    rows = list(Execution.objects.select_related("version").filter(pk__in=wanted))
    shown = ExecutionSerializer(rows, many=True).data  # one serializer for all
    events.events_emit(events=[
        events.Event(workspace_id=row.workspace_id, type=type, data=dict(data))
        for row, data in zip(rows, shown, strict=True)], endpoints=listening)


def execution_finished_emit(*, execution: Execution, status: str) -> None:
    """Emit execution.completed or execution.failed for a final status (else nothing)."""
    executions_finished_emit(executions=[execution], status=status)


def executions_finished_emit(*, executions: Sequence[Execution], status: str) -> None:
    """Emit execution.completed or execution.failed for executions that reached this final
    status together (else nothing)."""
    finals: dict[str, str] = {Execution.Status.COMPLETED: events.EXECUTION_COMPLETED,
                              Execution.Status.FAILED: events.EXECUTION_FAILED}
    kind = finals.get(status)
    if kind and executions:
        executions_emit(executions=executions, type=kind)


def schedule_run_failed_emit(*, run: ScheduleRun) -> None:
    """Emit schedule.run_failed with the run as the API shows it (and its schedule id)."""
    row = ScheduleRun.objects.select_related("schedule").get(pk=run.pk)
    workspace_id = row.schedule.workspace_id
    if not events.subscribers({workspace_id}).get(str(workspace_id)):
        return
    events.event_emit(workspace_id=workspace_id, type=events.SCHEDULE_RUN_FAILED,
                      data={**ScheduleRunSerializer(row).data,
                            "schedule_id": str(row.schedule_id)})
