"""One advance of an execution: walk nodes in memory, persist the walk in one transaction
(a batch of walks shares its statements: persist_many).

Light nodes (condition, update_contact, end, an elapsed delay) are evaluated in memory one
after another; the walk stops at a node that waits (send, delay, wait_for_event), fails,
or ends the flow. Then one transaction moves the cursor (fenced on where the walk
started), inserts every step, writes contact attributes and creates the waiting node's
message. If any of it conflicts (another worker moved the execution, a step exists), the
whole walk rolls back and changes nothing: a rerun walks the same nodes again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.models import Contact, DeadLetter
from flows import branches, nodes
from flows.graph import FORK, Graph
from flows.models import Execution, Step
from messaging.delivery import creation
from messaging.events.outbox import dead_letter_emit
from messaging.models import Message

ExecStatus = Execution.Status
StepStatus = Step.Status


class Conflict(Exception):
    """A step of this visit exists already: this walk must not be persisted."""


@dataclass
class Walk:
    execution: Execution
    node: str | None
    visit: int
    visits: dict[str, int]
    steps: list[Step] = field(default_factory=list)
    retry_rows: dict[tuple[str, int], Step] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = ExecStatus.RUNNING
    wake_at: datetime | None = None
    waiting_event: str = ""
    message: Message | None = None
    error: str = ""
    failed_step: Step | None = None
    failed_node: dict | None = None
    more: bool = False  # stopped at the node limit; continue in a new task
    forks: list[str] = field(default_factory=list)  # first nodes of the branches to start

    def move(self, next_node: str | None) -> None:
        """Advance the cursor to next_node (None ends the execution)."""
        if next_node is None:
            self.node, self.status = None, ExecStatus.COMPLETED
            return
        self.visits[next_node] = self.visits.get(next_node, 0) + 1
        self.node, self.visit = next_node, self.visits[next_node]

    def step(self, node: dict, status: str, started: datetime, result: nodes.Result,
             error: str = "") -> Step:
        """Record this visit's step (reusing a pending row left by a step retry)."""
        fields = {"status": status, "output": result.output or {},
                  "input": result.input or {}, "error": error[:4000], "started_at": started,
                  "message": result.message}
        row = self.retry_rows.get((node["id"], self.visit))
        if row is None:
            row = _new_step(self.execution, node, self.visit, fields)
        else:
            for name, value in fields.items():
                setattr(row, name, value)
        self.steps.append(row)
        return row


def _new_step(execution: Execution, node: dict, visit: int, fields: dict[str, Any]) -> Step:
    """Build a walk's new step with Django's positional constructor (as rows read from the
    database are built), holding what the keyword one would give it.

    The keyword constructor looks every field up among the keywords: about 9 µs of a light
    node's 16, the positional one about 4. The columns go in `concrete_fields` order, the
    ones a walk does not set with their model defaults (no id yet, no retry, not
    completed); the execution and message are cached as the keyword build caches them, so
    bulk_create and later reads of step.execution see the same instances
    (tests/flows/test_walker.py compares the two builds field by field)."""
    message = fields["message"]
    # Typed loosely: django-stubs checks positional fields in an order of its own.
    columns: tuple[Any, ...] = (
        None, execution.pk, node["id"], node["type"], visit, fields["status"],
        fields["input"], fields["output"], fields["error"],
        None if message is None else message.pk, 0, fields["started_at"], None)
    row = Step(*columns)
    row._state.fields_cache.update(execution=execution, message=message)
    return row


def walk(execution: Execution, graph: Graph, context: dict, existing: list[Step],
         limit: int) -> Walk:
    """Evaluate nodes from the cursor until something must wait; return the walk."""
    state = Walk(execution=execution, node=execution.current_node or None,
                 visit=execution.current_visit, visits=dict(execution.visits or {}))
    done = {(s.node_id, s.visit): s for s in existing}
    for _ in range(limit):
        if state.node is None:
            state.status = ExecStatus.COMPLETED
            return state
        row = done.get((state.node, state.visit))
        if row is not None:
            if row.status != StepStatus.PENDING:
                raise Conflict(f"step {state.node}#{state.visit} exists")
            state.retry_rows[(state.node, state.visit)] = row
        node = graph.node(state.node)
        started = timezone.now()
        if node["type"] == FORK:  # the cursor waits here until the branches have ended
            targets = node["data"]["targets"]
            state.step(node, StepStatus.COMPLETED, started,
                       nodes.Result(output={"branches": targets}))
            state.status, state.forks = ExecStatus.WAITING, list(targets)
            return state
        result = nodes.run(node, context, execution=execution)
        if _settle(state, graph, node, result, started, context):
            return state
    state.more = True
    return state


def _settle(state: Walk, graph: Graph, node: dict, result: nodes.Result, started: datetime,
            context: dict) -> bool:
    """Apply one node's result to the walk; return True when the walk stops here."""
    if result.failed:
        if (node.get("data") or {}).get("on_failure") == "continue":
            state.step(node, StepStatus.FAILED, started, result, result.error)
            state.move(graph.next(node["id"]))
            return state.node is None
        state.failed_step = state.step(node, StepStatus.FAILED, started, result, result.error)
        state.failed_node = node
        state.status, state.error = ExecStatus.FAILED, f"{node['id']}: {result.error}"
        return True
    if result.wait:
        state.step(node, StepStatus.WAITING, started, result)
        state.status, state.wake_at = ExecStatus.WAITING, result.wake_at
        state.waiting_event, state.message = result.event or "", result.message
        return True
    state.step(node, StepStatus.COMPLETED, started, result)
    state.attributes.update(result.contact_update)
    context["steps"][node["id"]] = {"status": "completed", "output": result.output or {},
                                    "error": ""}
    if nodes.REGISTRY[node["type"]].final:
        state.node, state.status = None, ExecStatus.COMPLETED
        return True
    if node["type"] == branches.JOIN and state.execution.parent_id is not None:
        state.status = ExecStatus.COMPLETED  # a branch arrived: it ends on the join
        return True
    state.move(graph.next(node["id"], result.handle))
    return state.node is None


def persist(state: Walk, *, origin: tuple[str, int]) -> bool:
    """Write the walk in one transaction; return False (nothing written) on a conflict."""
    try:
        with transaction.atomic():
            return persist_many([(state, origin)])[0]
    except IntegrityError:
        return False


def persist_many(walks: list[tuple[Walk, tuple[str, int]]]) -> list[bool]:
    """Write walks in the caller's transaction; for each, whether it was written.

    Each execution moves by a conditional UPDATE fenced on where its walk started; a walk
    whose execution moved meanwhile is left out (False) and writes nothing. The written
    walks share their statements: one INSERT of their messages (with message.queued), one
    of their new steps, one finished event per status. Attributes and dead letters go per
    walk. An IntegrityError (a step exists after all) leaves the caller's transaction to
    roll back: the caller then persists the walks one by one (`persist`)."""
    now = timezone.now()
    written = _move_many(walks, now)
    kept = [state for (state, _), ok in zip(walks, written, strict=True) if ok]
    messages = [state.message for state in kept if state.message is not None]
    if messages:
        # What started each execution (api, event, schedule, ...) goes on its timeline.
        creation.message_create_many(messages=messages, origins={
            state.message.pk: {"execution_source": state.execution.source}
            for state in kept if state.message is not None})
    _write_steps([row for state in kept for row in state.steps], now)
    forks = [branches.Fork(state.execution, state.node or "", state.visit, state.forks)
             for state in kept if state.forks]
    if forks:
        branches.fork(forks)
    attributes: dict[Any, dict[str, Any]] = {}
    for state in kept:
        if state.attributes:
            attributes.setdefault(state.execution.contact_id, {}).update(state.attributes)
    _write_attributes(attributes)
    finished: dict[str, list[Execution]] = {}
    for state in kept:
        if state.failed_step is not None:
            dead_letter(execution=state.execution, step=state.failed_step,
                        node=state.failed_node or {}, error=state.failed_step.error)
        if _final(state):
            finished.setdefault(state.status, []).append(state.execution)
    for status, executions in finished.items():
        branches.executions_finished(executions=executions, status=status)
    return written


@dataclass
class Move:
    """Where one execution goes, from where it must still be."""
    execution_id: Any
    origin: tuple[str, int]
    status: str
    node: str
    visit: int
    visits: dict[str, int]
    wake_at: datetime | None = None
    waiting_event: str = ""
    error: str = ""
    completed_at: datetime | None = None


def move_many(moves: list[Move], *, statuses: list[str], now: datetime) -> set[Any]:
    """Move each execution that is still at its move's origin in one of `statuses`, and
    free its lease; return the ids that moved. PostgreSQL only: one UPDATE ... FROM
    unnest(...) RETURNING for all of them."""
    if not moves:
        return set()
    columns = [[m.execution_id for m in moves], [m.origin[0] for m in moves],
               [m.origin[1] for m in moves], [m.status for m in moves],
               [m.node for m in moves], [m.visit for m in moves],
               [json.dumps(m.visits) for m in moves], [m.wake_at for m in moves],
               [m.waiting_event for m in moves], [m.error[:4000] for m in moves],
               [m.completed_at for m in moves]]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Execution._meta.db_table} AS e SET status = v.status, "
            "current_node = v.node, current_visit = v.visit, visits = v.visits::jsonb, "
            "wake_at = v.wake_at, waiting_event = v.waiting_event, error = v.error, "
            "completed_at = v.completed_at, updated_at = %s, lease_until = NULL "
            "FROM unnest(%s::uuid[], %s::text[], %s::int[], %s::text[], %s::text[], "
            "%s::int[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], "
            "%s::timestamptz[]) AS v(id, origin_node, origin_visit, status, node, visit, "
            "visits, wake_at, waiting_event, error, completed_at) "
            "WHERE e.id = v.id AND e.status = ANY(%s) AND e.current_node = v.origin_node "
            "AND e.current_visit = v.origin_visit RETURNING e.id",
            [now, *columns, statuses])
        return {row[0] for row in cursor.fetchall()}


def _move_many(walks: list[tuple[Walk, tuple[str, int]]], now: datetime) -> list[bool]:
    """Move each execution to where its walk stopped, if it is still running where the walk
    started; return which moved. Every move also frees the lease: it ends with this
    commit, which publishes the walks' sends, and a message decided at once (suppressed, a
    fast provider) may resume its step and publish the next advance before the advancing
    task's own cleanup would free it.

    PostgreSQL: one statement for all (move_many). SQLite (development): one conditional
    UPDATE each."""
    if connection.vendor != "postgresql":
        return [_move(state, origin, now) for state, origin in walks]
    moved = move_many([Move(
        state.execution.pk, origin, state.status, state.node or "", state.visit,
        state.visits, state.wake_at, state.waiting_event, state.error,
        now if _final(state) else None) for state, origin in walks],
        statuses=[ExecStatus.RUNNING], now=now)
    return [state.execution.pk in moved for state, _ in walks]


def _move(state: Walk, origin: tuple[str, int], now: datetime) -> bool:
    """Move one execution as _move_many does."""
    return bool(Execution.objects.filter(
        pk=state.execution.pk, status=ExecStatus.RUNNING, current_node=origin[0],
        current_visit=origin[1]).update(
        status=state.status, current_node=state.node or "", current_visit=state.visit,
        visits=state.visits, wake_at=state.wake_at, waiting_event=state.waiting_event,
        error=state.error[:4000], completed_at=now if _final(state) else None,
        updated_at=now, lease_until=None))


def _final(state: Walk) -> bool:
    return state.status in (ExecStatus.COMPLETED, ExecStatus.FAILED)


def _write_steps(rows: list[Step], now: datetime) -> None:
    new: list[Step] = []
    for row in rows:
        if row.status in (StepStatus.COMPLETED, StepStatus.FAILED):
            row.completed_at = now
        if row.pk is None:
            new.append(row)
        else:
            row.save()
    Step.objects.bulk_create(new)


def _write_attributes(values: dict[Any, dict[str, Any]]) -> None:
    """Merge attributes into contacts: one locking read and one UPDATE for all of them
    (locked in id order, so two batches never wait on each other in a circle)."""
    if not values:
        return
    now = timezone.now()
    contacts = list(Contact.objects.select_for_update().filter(pk__in=values).order_by("pk"))
    for contact in contacts:
        contact.attributes = {**(contact.attributes or {}), **values[contact.pk]}
        contact.updated_at = now
    Contact.objects.bulk_update(contacts, ["attributes", "updated_at"])


def dead_letter(*, execution: Execution, step: Step, node: dict, error: str) -> None:
    """Record the failed step where operators replay or discard failures."""
    letter = DeadLetter.objects.create(
        workspace_id=execution.workspace_id, kind=DeadLetter.Kind.STEP, source_id=str(step.pk),
        flow_id=str(execution.flow_id), error=error[:2000],
        attempts=step.retry_count + 1, channel=nodes.channel_of(node) or "",
        payload={"execution_id": str(execution.pk), "step_id": step.pk, "node_id": node["id"],
                 "node_type": node["type"], "visit": step.visit,
                 "flow_id": str(execution.flow_id)})
    dead_letter_emit(letter=letter)
