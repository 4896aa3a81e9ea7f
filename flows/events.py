"""The flows' events (execution.*, schedule.run_failed), emitted through messaging.events in
the transaction of the change that causes them (README.md, "Events").

Their payloads are built here from the models, not by flows.serializers: the webhook
contract (docs/events/*.schema.json, versioned in messaging.events.types) does not follow
the API's changes."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flows.models import Execution, FlowVersion, ScheduleRun
from messaging.events.outbox import event_emit, events_emit, subscribers
from messaging.events.payloads import id_text, time_text
from messaging.events.types import EXECUTION_COMPLETED, EXECUTION_FAILED, SCHEDULE_RUN_FAILED, Event


def executions_emit(*, executions: Sequence[Execution], type: str) -> None:  # noqa: A002
    """Emit one event per execution, showing it as it is after the change (one query, and
    none when no endpoint of their workspaces listens)."""
    listening = subscribers({e.workspace_id for e in executions})
    wanted = [e.pk for e in executions if listening.get(str(e.workspace_id))]
    if not wanted:
        return
    rows = list(Execution.objects.select_related("version").filter(pk__in=wanted))
    events_emit(events=[Event(workspace_id=row.workspace_id, type=type,
                              data=execution_data(row)) for row in rows],
                endpoints=listening)


def journey_emit(*, ids: dict[Any, Any], types: Sequence[str]) -> None:
    """Emit execution.exited or execution.converted (each of `types`) for the executions
    of ids ({id: workspace id}): the execution as execution.* events show it, with why it
    exited and its conversion (journey_data). The executions are read only when their
    workspace has endpoints: most have none, and reading a thousand exited executions for
    nothing was a tenth of an exit batch's cost."""
    listening = subscribers(set(ids.values()))
    wanted = [pk for pk, workspace_id in ids.items() if listening.get(str(workspace_id))]
    if not wanted:
        return
    rows = list(Execution.objects.filter(pk__in=wanted))
    numbers = dict(FlowVersion.objects.filter(pk__in={e.version_id for e in rows})
                   .values_list("pk", "number"))
    for type in types:  # noqa: A001
        events_emit(events=[Event(workspace_id=row.workspace_id, type=type,
                                  data=journey_data(row, numbers[row.version_id]))
                            for row in rows], endpoints=listening)


def execution_finished_emit(*, execution: Execution, status: str) -> None:
    """Emit execution.completed or execution.failed for a final status (else nothing)."""
    executions_finished_emit(executions=[execution], status=status)


def executions_finished_emit(*, executions: Sequence[Execution], status: str) -> None:
    """Emit execution.completed or execution.failed for executions that reached this final
    status together (else nothing)."""
    finals: dict[str, str] = {Execution.Status.COMPLETED: EXECUTION_COMPLETED,
                              Execution.Status.FAILED: EXECUTION_FAILED}
    kind = finals.get(status)
    if kind and executions:
        executions_emit(executions=executions, type=kind)


def schedule_run_failed_emit(*, run: ScheduleRun) -> None:
    """Emit schedule.run_failed with the run (and its schedule id)."""
    row = ScheduleRun.objects.select_related("schedule").get(pk=run.pk)
    workspace_id = row.schedule.workspace_id
    if not subscribers({workspace_id}).get(str(workspace_id)):
        return
    event_emit(workspace_id=workspace_id, type=SCHEDULE_RUN_FAILED,
               data=schedule_run_data(row))


def execution_data(execution: Execution, version: int | None = None) -> dict[str, Any]:
    """Return an execution as the execution.* events show it (its version row loaded, or
    its number given)."""
    return {
        "id": str(execution.pk), "flow_id": id_text(execution.flow_id),
        "version": execution.version.number if version is None else version,
        "contact_id": id_text(execution.contact_id),
        "status": execution.status, "source": execution.source, "data": execution.data,
        "current_node": execution.current_node, "wake_at": time_text(execution.wake_at),
        "waiting_event": execution.waiting_event,
        "paused_at": time_text(execution.paused_at), "paused_by": execution.paused_by,
        "error": execution.error, "started_at": time_text(execution.started_at),
        "completed_at": time_text(execution.completed_at),
        "duration_seconds": execution.duration_seconds,
    }


def journey_data(execution: Execution, version: int) -> dict[str, Any]:
    """Return an execution as execution.exited and execution.converted show it."""
    data = execution_data(execution, version)
    data.update(exit_reason=execution.exit_reason,
                converted_at=time_text(execution.converted_at),
                converted_node=execution.converted_node,
                time_to_convert_seconds=execution.time_to_convert_seconds)
    return data


def schedule_run_data(run: ScheduleRun) -> dict[str, Any]:
    """Return a schedule run as schedule.run_failed shows it, with its schedule's id."""
    return {
        "id": run.pk, "occurrence_at": time_text(run.occurrence_at), "status": run.status,
        "summary": run.summary, "total": run.total, "started": run.started,
        "skipped": run.skipped, "refused": run.refused, "missing": run.missing,
        "error": run.error, "bulk_start_id": id_text(run.bulk_start_id),
        "fired_at": time_text(run.fired_at), "finished_at": time_text(run.finished_at),
        "schedule_id": str(run.schedule_id),
    }
