"""Parallel branches (README.md, "Parallel branches").

Several edges leaving one exit make a fork. The walker runs the fork as a node of its own
(graph.FORK, a step like any other, so a redelivered advance never forks twice): the
execution waits there, and one branch execution per edge starts in the same commit, each
with `parent` the forking execution, `root` the one the contact entered and `fork_node` /
`fork_visit` the parent's place at that fork (a parent that forks again, at another node or
at the same one in a loop, gathers only the branches of the fork it waits at). A branch is an
execution like any other (its cursor, steps, timers, leases and fences are its own), so
every path the engine has (sends, delays, waits, outcomes, the sweeper) runs it unchanged,
and the single-branch path pays nothing.

A branch ends at an `end`, where no edge leads on, or at a `join` (its cursor stays on the
join). Whenever one ends, the commit that ends it locks the parent and looks at its
siblings of that fork: once none is running or waiting, the parent goes on, from the join
they reached (its own join step records how many arrived), completes if none reached a
join, or fails if one failed (its cursor stays on the fork, where a retry of the failed
branch's step puts it back to waiting: flows.operations.step_retry). The lock orders the
last two arrivals, so exactly one of them moves the parent. Cancel, pause and exits act on
the root and every branch under it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from flows import events as flow_events
from flows.models import Execution, Step
from flows.publishing import publish, schedule_advance
from flows.versions import graph_of

ExecStatus = Execution.Status
StepStatus = Step.Status
ACTIVE = (ExecStatus.RUNNING, ExecStatus.WAITING)
JOIN = "join"


def family(ids: Sequence[Any]) -> Q:
    """Match these executions and every branch under them."""
    return Q(pk__any=list(ids)) | Q(root_id__any=list(ids))


class Fork(NamedTuple):
    """An execution at a fork: the fork's node and visit, and its branches' first nodes."""
    parent: Execution
    node: str
    visit: int
    targets: list[str]


def fork(forks: Sequence[Fork]) -> list[Execution]:
    """Start one running branch per first node for each forking execution (in the
    caller's transaction), and publish their advances once it commits."""
    now = timezone.now()
    started = Execution.objects.bulk_create([
        Execution(workspace_id=parent.workspace_id, flow_id=parent.flow_id,
                  version_id=parent.version_id, contact_id=parent.contact_id,
                  source=parent.source, data=parent.data, status=ExecStatus.RUNNING,
                  current_node=target, current_visit=1, visits={target: 1},
                  parent_id=parent.pk, root_id=parent.root_id or parent.pk,
                  fork_node=node, fork_visit=visit, enqueued_at=now)
        for parent, node, visit, targets in forks for target in targets])
    ids = [branch.pk for branch in started]
    transaction.on_commit(lambda: publish(ids))
    return started


def executions_finished(*, executions: Sequence[Execution], status: str) -> None:
    """The executions reached this final status in the caller's transaction: emit
    execution.completed or execution.failed for those the contacts entered, and let the
    parents of branches among them go on once all their branches have ended."""
    flow_events.executions_finished_emit(
        executions=[e for e in executions if e.parent_id is None], status=status)
    for parent_id in sorted({str(e.parent_id) for e in executions if e.parent_id}):
        _gather(parent_id)


def _gather(parent_id: str) -> None:
    """Move the parent on if none of the branches of the fork it waits at is running or
    waiting any more."""
    parent = Execution.objects.select_for_update().filter(pk=parent_id,
                                                          status__in=ACTIVE).first()
    if parent is None:
        return
    branches = list(Execution.objects.filter(
        parent_id=parent.pk, fork_node=parent.current_node,
        fork_visit=parent.current_visit).values_list("status", "current_node", "error"))
    graph = graph_of(parent.version_id)
    if any(status in ACTIVE for status, _, _ in branches) or parent.current_node not in (
            graph.forks):
        return
    now = timezone.now()
    failed = [error for status, _, error in branches if status == ExecStatus.FAILED]
    if failed:
        _end(parent, ExecStatus.FAILED, now, error=f"a branch failed: {failed[0]}")
        return
    joined = [node for status, node, _ in branches
              if status == ExecStatus.COMPLETED and graph.nodes.get(node, {}).get("type") == JOIN]
    if not joined:
        _end(parent, ExecStatus.COMPLETED, now)
        return
    _go_on(parent, joined[0], len(joined), now)


def _end(parent: Execution, status: str, now: Any, error: str = "") -> None:
    """End the parent: completed, its cursor cleared, or failed, its cursor left on the fork
    (as a failed step leaves it on the node), which a retry of the branch goes back to."""
    cursor = {"current_node": ""} if status == ExecStatus.COMPLETED else {}
    Execution.objects.filter(pk=parent.pk).update(
        status=status, error=error[:4000], completed_at=now, wake_at=None,
        waiting_event="", lease_until=None, updated_at=now, **cursor)
    parent.status, parent.error = status, error
    executions_finished(executions=[parent], status=status)


def _go_on(parent: Execution, join: str, arrived: int, now: Any) -> None:
    """Record the parent's step at the join and move it past it (its next advance runs
    what follows; the step's uniqueness fences a second mover)."""
    graph = graph_of(parent.version_id)
    visits = dict(parent.visits or {})
    visits[join] = visits.get(join, 0) + 1
    Step.objects.create(execution=parent, node_id=join, node_type=JOIN, visit=visits[join],
                        status=StepStatus.COMPLETED, output={"branches": arrived},
                        started_at=now, completed_at=now)
    next_node = graph.next(join)
    if next_node is None:
        _end(parent, ExecStatus.COMPLETED, now)
        return
    visits[next_node] = visits.get(next_node, 0) + 1
    Execution.objects.filter(pk=parent.pk).update(
        status=ExecStatus.RUNNING, current_node=next_node, current_visit=visits[next_node],
        visits=visits, enqueued_at=now, updated_at=now)
    schedule_advance(parent.pk)
