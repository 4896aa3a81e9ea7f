"""An execution's timeline: what it did and why, read from what the engine already writes
(README.md, "Timelines").

Nothing here is written on the engine's path: each step row carries its input (a
condition's values seen), output and error; the branch a step took, the wait it made and
what woke it follow from its node type and output; the execution's own row says how it
started and ended; the audit log says who paused, resumed or cancelled it. So the timeline
costs the engine nothing and can never disagree with the steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.models import AuditEntry
from flows.graph import Graph, GraphError, parse
from flows.models import Execution, Step


class Kind:
    """What an entry says happened."""

    STARTED = "started"
    STEP = "step"
    PAUSED = "paused"
    RESUMED = "resumed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"

    ALL = (STARTED, STEP, PAUSED, RESUMED, CANCELLED, COMPLETED, FAILED)


class WokeBy:
    """What ended a step's wait."""

    TIMER = "timer"  # a delay's time came
    EVENT = "event"  # the awaited event arrived
    TIMEOUT = "timeout"  # a wait_for_event's timeout passed first
    MESSAGE = "message"  # a send step's message became final
    OPERATOR = "operator"  # the execution was cancelled while it waited

    ALL = (TIMER, EVENT, TIMEOUT, MESSAGE, OPERATOR)


# What the audit log's execution actions are called on the timeline.
AUDITED = {"execution.pause": Kind.PAUSED, "execution.resume": Kind.RESUMED,
           "execution.cancel": Kind.CANCELLED}


@dataclass
class Wait:
    """A step that waited: until when or for what, and what woke it (None: still waiting)."""

    until: str | None = None
    event: str | None = None
    message_id: str | None = None
    woke_by: str | None = None
    woke_at: datetime | None = None


@dataclass
class Entry:
    """One line of an execution's timeline."""

    kind: str
    at: datetime
    step: Step | None = None
    branch: str | None = None
    next_node: str | None = None
    wait: Wait | None = None
    actor: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def execution_timeline(*, execution: Execution) -> list[Entry]:
    """Return the execution's entries oldest first: started, each step (with the branch it
    took, the values a condition saw, its wait and what woke it), operators' pauses,
    resumes and cancel, and how it ended."""
    steps = list(execution.steps.order_by("started_at", "id"))
    try:
        graph: Graph | None = parse(execution.version.nodes, execution.version.edges)
    except GraphError:  # frozen before a check it now fails: show the steps without it
        graph = None
    entries = [Entry(kind=Kind.STARTED, at=execution.started_at, detail={
        "source": execution.source, "data": execution.data or {},
        "version": execution.version.number})]
    entries.extend(_step_entry(step, graph, execution) for step in steps)
    entries.extend(_audited(execution))
    ended = _ended(execution, audited=any(e.kind == Kind.CANCELLED for e in entries))
    if ended is not None:
        entries.append(ended)
    entries.sort(key=lambda e: e.at)  # stable: "started" stays first
    return entries


def branch_of(step: Step) -> str | None:
    """Return the exit a branching step left through ("true"/"false" for a condition,
    "event"/"timeout" for a wait_for_event); None for a step that does not branch or has
    not finished."""
    output = step.output or {}
    if step.status != Step.Status.COMPLETED:
        return None
    if step.node_type == "condition" and isinstance(output.get("result"), bool):
        return "true" if output["result"] else "false"
    if step.node_type == "wait_for_event":
        return "timeout" if output.get("timed_out") else "event"
    handle = output.get("branch")
    return handle if isinstance(handle, str) else None


def _step_entry(step: Step, graph: Graph | None, execution: Execution) -> Entry:
    branch = branch_of(step)
    return Entry(kind=Kind.STEP, at=step.started_at, step=step, branch=branch,
                 next_node=_next(graph, step, branch), wait=_wait(step, execution))


def _next(graph: Graph | None, step: Step, branch: str | None) -> str | None:
    """Return the node the step led to (None: it led nowhere yet, or ended the flow)."""
    if graph is None or step.status not in (Step.Status.COMPLETED, Step.Status.FAILED):
        return None
    try:
        return graph.next(step.node_id, branch)
    except (KeyError, ValueError):  # a node or exit the frozen graph no longer has
        return None


def _wait(step: Step, execution: Execution) -> Wait | None:
    """Describe the step's wait, if its node waits, and what ended it."""
    output = step.output or {}
    done = step.status == Step.Status.COMPLETED and step.completed_at is not None
    if step.node_type == "delay":
        if output.get("skipped"):
            return None  # the time had passed: it went straight on
        return Wait(until=output.get("until"), woke_by=_woke(step, WokeBy.TIMER),
                    woke_at=step.completed_at if done or step.status == Step.Status.SKIPPED
                    else None)
    if step.node_type == "wait_for_event":
        return Wait(until=output.get("timeout_at"), event=output.get("event"),
                    woke_by=_woke(step, WokeBy.TIMEOUT if output.get("timed_out")
                                  else WokeBy.EVENT), woke_at=step.completed_at)
    if step.message_id is not None:
        return Wait(message_id=str(step.message_id), woke_by=_woke(step, WokeBy.MESSAGE),
                    woke_at=step.completed_at)
    return None


def _woke(step: Step, completed_by: str) -> str | None:
    """What woke the step: `completed_by` when it completed or failed after its wait, the
    operator when a cancel skipped it, None while it still waits."""
    if step.status in (Step.Status.COMPLETED, Step.Status.FAILED):
        return completed_by
    if step.status == Step.Status.SKIPPED:
        return WokeBy.OPERATOR
    return None


def _audited(execution: Execution) -> list[Entry]:
    """Return the operators' pauses, resumes and cancel of the execution."""
    rows = AuditEntry.objects.filter(workspace_id=execution.workspace_id,
                                     target_type="execution", target_id=str(execution.pk),
                                     action__in=list(AUDITED)).order_by("created_at", "id")
    return [Entry(kind=AUDITED[row.action], at=row.created_at, actor=row.actor,
                  detail={key: value for key, value in (row.detail or {}).items()
                          if key != "flow_id"}) for row in rows]


def _ended(execution: Execution, *, audited: bool) -> Entry | None:
    """Return how the execution ended, or None while it runs (or when an audited cancel
    already says so)."""
    if execution.completed_at is None or execution.status not in (
            Execution.Status.COMPLETED, Execution.Status.FAILED, Execution.Status.CANCELLED):
        return None
    if execution.status == Execution.Status.CANCELLED and audited:
        return None
    detail = {"error": execution.error} if execution.error else {}
    return Entry(kind=execution.status, at=execution.completed_at, detail=detail)
