"""The flow engine: advance an execution node by node.

Light nodes (condition, update_contact, end) run inline, many in one task. Heavy nodes stop
the walk: a send creates a Message through the messaging pipeline and its step completes
when the message is final; delay and wait_for_event set a durable timer (Execution.wake_at)
that the dispatcher fires. Every node visit is a Step unique on (execution, node, visit) and
every move of the cursor is a conditional UPDATE, so a duplicated task never runs a node
twice, and a worker that dies leaves the execution where its last completed step put it.
"""
from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from core import logcontext
from core.publishing import grouped
from flows import branches, walker
from flows.models import Execution, Step
from flows.publishing import publish, schedule_advance
from flows.versions import graph_of
from messaging.channels import EMAIL
from messaging.delivery.creation import messages_cancel_many
from messaging.delivery.templating import contact_context
from messaging.models import Message, MessageStatus

logger = logging.getLogger(__name__)
ExecStatus = Execution.Status
StepStatus = Step.Status
# Light nodes run back to back in one task; past this many the task re-queues itself so a
# long chain of conditions cannot hold a worker (and a cycle through a delay still yields).
MAX_INLINE_NODES = 200


class Stop(Exception):
    """The walk cannot continue in this task (lost a race, or waiting)."""


def lease_seconds() -> int:
    """Return how long a worker owns an execution it advances (read late for tests)."""
    return settings.FLOW_LEASE_SECONDS


# --- advancing ----------------------------------------------------------------------------

def advance(*, execution_id: str) -> str:
    """Run the execution from its cursor until it waits, ends or fails.

    Returns what the walk did: skipped (leased, paused or not running), stale (lost a race),
    waiting, completed, failed, or yielded (node limit reached; continues in a new task).
    """
    return advance_many(execution_ids=[execution_id])[str(execution_id)]


def advance_many(*, execution_ids: list[str]) -> dict[str, str]:
    """Advance a batch of executions (advance's result for each) with two commits in all:
    one claims their leases, one persists every walk; two reads load them all, and the
    walks share their writes (walker.persist_many). Should that fail (a step exists after
    all, or a walk's write raises), the batch's writes roll back and each walk is persisted
    alone in a savepoint, so one broken walk never costs the others theirs.

    The walks' sends, and their next advances, are published together after the commit:
    messages in delivery tasks of up to PUBLISH_BATCH, as an API batch is. A delivery task
    records each outcome as its call returns, so a worker killed mid-task repeats only the
    calls it had in flight, not the batch."""
    ids = [str(pk) for pk in execution_ids]
    results = dict.fromkeys(ids, "skipped")
    claimed = _claim(ids)
    if not claimed:
        return results
    with grouped(), transaction.atomic():
        executions = Execution.objects.select_related("contact", "workspace").in_bulk(claimed)
        steps: dict[str, list[Step]] = {pk: [] for pk in claimed}
        for step in Step.objects.filter(execution_id__in=claimed).order_by("started_at", "id"):
            steps[str(step.execution_id)].append(step)
        inherited = _inherited_steps(executions.values())
        walks: dict[str, tuple[walker.Walk, tuple[str, int]]] = {}
        for execution_id in claimed:
            execution = executions[uuid.UUID(execution_id)]
            # What its nodes log carries the execution's ids (core.logcontext).
            with logcontext.bind(execution_id=execution_id,
                                 workspace_id=execution.workspace_id):
                try:
                    walks[execution_id] = (_walk(execution, steps[execution_id],
                                                 inherited),
                                           (execution.current_node, execution.current_visit))
                except walker.Conflict:
                    results[execution_id] = "stale"
                except Exception:  # one broken walk must not cost the others theirs
                    logger.exception("advancing execution %s failed", execution_id)
                    results[execution_id] = "error"
        results.update(_persist(walks))
        # A persisted walk gave its lease back in its own UPDATE.
        Execution.objects.filter(pk__in=[pk for pk in claimed if results[pk] in (
            "stale", "error")]).update(lease_until=None)
    return results


def _walk(execution: Execution, existing: list[Step],
          inherited: dict[Any, list[Step]]) -> walker.Walk:
    before = inherited.get(execution.pk, [])
    return walker.walk(execution, graph_of(execution.version_id),
                       _context(execution, [*before, *existing]), existing, MAX_INLINE_NODES)


def _inherited_steps(executions: Any) -> dict[Any, list[Step]]:
    """Return, by branch, the steps of every execution above it, its root's first and its
    parent's last (what a condition or template in a branch sees of the path before its
    forks): no query when none is a branch, one when every branch's parent is its root,
    and one more (the parents of the branches' families) when a branch is nested in
    another."""
    branches = [e for e in executions if e.parent_id is not None]
    if not branches:
        return {}
    above: dict[Any, Any] = {branch.root_id: None for branch in branches}  # roots: no parent
    if any(branch.parent_id != branch.root_id for branch in branches):
        above.update(Execution.objects.filter(root_id__in=list(above))
                     .values_list("pk", "parent_id"))
    chains: dict[Any, list[Any]] = {}
    for branch in branches:
        chain, pk = [], branch.parent_id
        while pk is not None:
            chain.append(pk)
            pk = above[pk]
        chains[branch.pk] = chain[::-1]
    found: dict[Any, list[Step]] = {}
    for step in Step.objects.filter(
            execution_id__in={pk for chain in chains.values() for pk in chain}
    ).order_by("started_at", "id"):
        found.setdefault(step.execution_id, []).append(step)
    return {pk: [step for ancestor in chain for step in found.get(ancestor, [])]
            for pk, chain in chains.items()}


def _persist(walks: dict[str, tuple[walker.Walk, tuple[str, int]]]) -> dict[str, str]:
    """Persist the walks together, or one by one if that fails; return each one's result."""
    written: dict[str, bool | None] = {}
    new_steps = [row for state, _ in walks.values() for row in state.steps if row.pk is None]
    try:
        with transaction.atomic():
            written = dict(zip(walks, walker.persist_many(list(walks.values())), strict=True))
    except Exception:
        logger.warning("persisting %d walks together failed; persisting them one by one",
                       len(walks), exc_info=True)
        for row in new_steps:  # rolled back: insert them again
            row.pk, row._state.adding = None, True
        for execution_id, (state, origin) in walks.items():
            try:
                written[execution_id] = walker.persist(state, origin=origin)
            except Exception:
                logger.exception("advancing execution %s failed", execution_id)
                written[execution_id] = None
    results: dict[str, str] = {}
    for execution_id, (state, _) in walks.items():
        if written[execution_id] is None:
            results[execution_id] = "error"
        elif not written[execution_id]:
            results[execution_id] = "stale"
        elif state.more:
            schedule_advance(state.execution.pk)  # yield the worker; continue in a new task
            results[execution_id] = "yielded"
        else:
            results[execution_id] = state.status
    return results


def _claim(ids: list[str]) -> list[str]:
    """Lease the running, unpaused, unleased executions among ids; return them.

    PostgreSQL: one UPDATE ... RETURNING. SQLite (development) has no arrays to bind: one
    conditional UPDATE per id, each still atomic."""
    now = timezone.now()
    lease = now + timedelta(seconds=lease_seconds())
    if connection.vendor != "postgresql":
        free = Q(lease_until__isnull=True) | Q(lease_until__lte=now)
        return [pk for pk in ids if Execution.objects.filter(
            free, pk=pk, status=ExecStatus.RUNNING, paused_at__isnull=True,
        ).update(lease_until=lease)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Execution._meta.db_table} SET lease_until = %s WHERE id = ANY(%s) "
            "AND status = %s AND paused_at IS NULL "
            "AND (lease_until IS NULL OR lease_until <= %s) RETURNING id",
            [lease, [uuid.UUID(pk) for pk in ids], ExecStatus.RUNNING, now])
        leased = {str(row[0]) for row in cursor.fetchall()}
    return [pk for pk in ids if pk in leased]


def _context(execution: Execution, steps: list[Step]) -> dict[str, Any]:
    """Return what conditions and templates see, from already loaded steps."""
    return {"contact": contact_context(execution.contact), "trigger": execution.data or {},
            "steps": {s.node_id: {"status": s.status, "output": s.output or {},
                                  "error": s.error} for s in steps},
            "execution": {"id": str(execution.id)}}


def _move(execution: Execution, next_node: str | None, now: datetime, **fields: Any) -> int:
    """Move the cursor from the current visit to next_node (fenced on the current visit)."""
    node, visit, visits = _position(execution, next_node)
    update: dict[str, Any] = {"updated_at": now, **fields, "current_node": node,
                              "current_visit": visit, "visits": visits, "wake_at": None,
                              "waiting_event": ""}
    if next_node is None:
        update.update(status=ExecStatus.COMPLETED, completed_at=now)
    moved = Execution.objects.filter(
        pk=execution.pk, current_node=execution.current_node,
        current_visit=execution.current_visit,
        status__in=[ExecStatus.RUNNING, ExecStatus.WAITING]).update(**update)
    if moved and next_node is None:
        # In the caller's transaction, like the move itself.
        branches.executions_finished(executions=[execution], status=ExecStatus.COMPLETED)
    return moved


def _complete_step(execution: Execution, step: Step, output: dict, next_node: str | None,
                   *, ended: bool = False, status: str = StepStatus.COMPLETED,
                   error: str = "") -> None:
    now = timezone.now()
    with transaction.atomic():
        moved = _move(execution, None if ended else next_node, now, status=(
            ExecStatus.COMPLETED if ended or next_node is None else ExecStatus.RUNNING))
        if not moved:
            transaction.set_rollback(True)
            raise Stop
        Step.objects.filter(pk=step.pk).update(status=status, output=output or {},
                                               error=error, completed_at=now)


def _fail_step(execution: Execution, step: Step, error: str, node: dict) -> None:
    """Fail the step; continue past it when the node says so, else fail the execution."""
    if (node.get("data") or {}).get("on_failure") == "continue":
        graph = graph_of(execution.version_id)
        _complete_step(execution, step, {"error": error}, graph.next(node["id"]),
                       status=StepStatus.FAILED, error=error)
        schedule_advance(execution.pk)  # when resumed from outside the advance loop
        return
    now = timezone.now()
    with transaction.atomic():
        Step.objects.filter(pk=step.pk).update(status=StepStatus.FAILED, error=error[:4000],
                                               completed_at=now)
        changed = Execution.objects.filter(
            pk=execution.pk, status__in=[ExecStatus.RUNNING, ExecStatus.WAITING]).update(
            status=ExecStatus.FAILED, error=f"{node['id']}: {error}"[:4000], completed_at=now,
            wake_at=None, waiting_event="", updated_at=now)
        if changed:
            walker.dead_letter(execution=execution, step=step, node=node, error=error)
            branches.executions_finished(executions=[execution], status=ExecStatus.FAILED)


# --- resuming waiting steps ---------------------------------------------------------------

def resume_step(*, step: Step, outcome: str, output: dict, handle: str | None = None,
                error: str = "", execution: Execution | None = None) -> bool:
    """Finish a waiting step (message final, timer fired, event arrived) and move on.

    Return False when the step was no longer waiting (another path finished it first), or
    when its execution is paused: the step stays waiting and its resume finishes it.
    """
    execution = execution or Execution.objects.select_related("version").get(
        pk=step.execution_id)
    if execution.paused_at is not None:
        return False  # a paused execution's waiting step completes on resume
    graph = graph_of(execution.version_id)
    node = graph.node(step.node_id)
    with transaction.atomic():
        now = timezone.now()
        here = execution.current_node == step.node_id and execution.current_visit == step.visit
        if here and outcome != "failed":
            return _resume_completed(execution, step, graph.next(step.node_id, handle),
                                     output, now)
        if not Step.objects.filter(pk=step.pk, status=StepStatus.WAITING).update(
                status=StepStatus.RUNNING):
            return False
        if not here:
            Step.objects.filter(pk=step.pk).update(status=StepStatus.SKIPPED, completed_at=now)
            return False
        try:  # outcome "failed"
            _fail_step(execution, step, error, node)
        except Stop:
            return False
    return True


def _resume_completed(execution: Execution, step: Step, next_node: str | None,
                      output: dict, now: datetime) -> bool:
    """Complete a waiting step and move the cursor past it: two fenced UPDATEs in the
    caller's transaction (rolled back if the execution moved meanwhile)."""
    if not Step.objects.filter(pk=step.pk, status=StepStatus.WAITING).update(
            status=StepStatus.COMPLETED, completed_at=now,
            output={**(step.output or {}), **output}):
        return False
    if not _move(execution, next_node, now, status=ExecStatus.RUNNING):
        transaction.set_rollback(True)
        return False
    if next_node is not None:
        schedule_advance(execution.pk)
    return True


# What completes a waiting step, by step id: what its output gains, and the exit it leaves
# by (None: its node's only one).
Resumes = dict[Any, tuple[dict[str, Any], str | None]]


def on_message_finished(*, message_id: Any) -> None:
    """Complete (or fail) the flow step waiting for this message."""
    on_messages_finished(message_ids=[message_id])


def on_messages_finished(*, message_ids: list[Any]) -> None:
    """Complete (or fail) the flow steps waiting for these messages: three reads for all
    of them, one commit, and their next advances published together. The common case (a
    message that did not fail, its execution where the step left it) moves them all in two
    statements (_resume_together); the rest go one by one, a savepoint each."""
    steps = list(Step.objects.filter(message_id__in=message_ids, status=StepStatus.WAITING))
    if not steps:
        return
    messages = Message.objects.in_bulk([step.message_id for step in steps])
    executions = Execution.objects.in_bulk([step.execution_id for step in steps])
    # A failed message fails its step, and a send waiting for its outcome leaves by the
    # exit its message names: those go one by one.
    resumes: Resumes = {step.pk: (_message_output(messages[step.message_id]), None)
                        for step in steps
                        if messages[step.message_id].status != MessageStatus.FAILED
                        and not (step.input or {}).get("wait_for")}
    with grouped(), transaction.atomic():
        for step in _resume_together(steps, executions, resumes):
            with transaction.atomic():
                _resume_for_message(step, messages[step.message_id],
                                    executions[step.execution_id])


def _resume_together(steps: list[Step], executions: dict[Any, Execution],
                     resumes: Resumes) -> list[Step]:
    """Complete the steps `resumes` names whose execution is unpaused, not finished and
    still at that step, and move their executions past them: one UPDATE of the steps and
    one of the executions (PostgreSQL). Should any of them have moved meanwhile, all of it
    rolls back. Return the steps left to resume one by one."""
    if connection.vendor != "postgresql":
        return steps
    now = timezone.now()
    together: dict[Any, Step] = {}
    for step in steps:
        execution = executions[step.execution_id]
        if (step.pk in resumes
                and execution.paused_at is None
                and execution.status in (ExecStatus.RUNNING, ExecStatus.WAITING)
                and (execution.current_node, execution.current_visit) == (
                    step.node_id, step.visit)
                and step.execution_id not in together):
            together[step.execution_id] = step
    if not together:
        return steps
    moves = [_move_past(executions[step.execution_id], step, resumes[step.pk][1], now)
             for step in together.values()]
    outputs = [json.dumps({**(step.output or {}), **resumes[step.pk][0]},
                          cls=DjangoJSONEncoder) for step in together.values()]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Step._meta.db_table} AS s SET status = %s, completed_at = %s, "
                "output = v.output::jsonb FROM unnest(%s::bigint[], %s::text[]) "
                "AS v(id, output) WHERE s.id = v.id AND s.status = %s RETURNING s.id",
                [StepStatus.COMPLETED, now, [step.pk for step in together.values()],
                 outputs, StepStatus.WAITING])
            completed = len(cursor.fetchall())
        moved = walker.move_many(moves, statuses=[ExecStatus.RUNNING, ExecStatus.WAITING],
                                 now=now)
        if completed != len(together) or len(moved) != len(together):
            transaction.set_rollback(True)  # another path got to one of them first
            return steps
    ended = [executions[m.execution_id] for m in moves if m.status == ExecStatus.COMPLETED]
    branches.executions_finished(executions=ended, status=ExecStatus.COMPLETED)
    onward = [m.execution_id for m in moves if m.status == ExecStatus.RUNNING]
    transaction.on_commit(lambda: publish(onward))
    return [step for step in steps if together.get(step.execution_id) is not step]


def _move_past(execution: Execution, step: Step, handle: str | None,
               now: datetime) -> walker.Move:
    """Where the execution goes once its waiting step completes through this exit (as
    _move does)."""
    next_node = graph_of(execution.version_id).next(step.node_id, handle)
    node, visit, visits = _position(execution, next_node)
    ended = next_node is None
    return walker.Move(execution.pk, (step.node_id, step.visit),
                       ExecStatus.COMPLETED if ended else ExecStatus.RUNNING, node, visit,
                       visits, error=execution.error, completed_at=now if ended else None)


def _position(execution: Execution, next_node: str | None) -> tuple[str, int, dict]:
    """The cursor (node, visit, visits) after moving to next_node; None ends the execution
    where it stands."""
    visits = dict(execution.visits or {})
    if next_node is None:
        return "", execution.current_visit, visits
    visits[next_node] = visits.get(next_node, 0) + 1
    return next_node, visits[next_node], visits


def _message_output(message: Message) -> dict[str, Any]:
    """A send step's output once its message is final. A suppressed message completes its
    step too (the recipients' rules said no): the output's status and suppressed_reason
    let a condition branch on it."""
    return {"message_id": str(message.pk), "status": message.status,
            "suppressed_reason": message.suppressed_reason,
            "provider_message_id": message.provider_message_id, "response": message.response}


def _resume_for_message(step: Step, message: Message, execution: Execution) -> None:
    if (step.input or {}).get("wait_for"):
        _resume_outcome(step, message, execution)
        return
    if message.status == MessageStatus.FAILED:
        resume_step(step=step, outcome="failed", output={}, execution=execution,
                    error=f"message {message.pk} failed: {message.last_error}")
        return
    resume_step(step=step, outcome="completed", execution=execution,
                output=_message_output(message))


# A send step waiting for its outcome leaves by the exit its message's status names; a
# message that is only `sent` keeps it waiting, for a receipt or the timeout.
OUTCOME_EXITS: dict[str, str] = {
    MessageStatus.DELIVERED: "delivered", MessageStatus.UNDELIVERED: "failed",
    MessageStatus.FAILED: "failed", MessageStatus.SUPPRESSED: "failed"}


def _resume_outcome(step: Step, message: Message, execution: Execution | None = None,
                    handle: str | None = None) -> bool:
    """Complete a send step that waits for its outcome through the exit the message's
    status (or `handle`, the timer's) names; return whether it moved on."""
    handle = handle or OUTCOME_EXITS.get(message.status)
    if handle is None:
        return False
    return resume_step(step=step, outcome="completed", handle=handle, execution=execution,
                       output={**_message_output(message), "outcome": handle})


def _outcome_timed_out(step: Step, now: datetime) -> None:
    """The timeout of a send waiting for its outcome: an email accepted by its provider and
    not bounced counts as delivered; otherwise the `timeout` exit, and the message is
    cancelled if it has not reached a provider yet (the flow has moved on without it)."""
    message = Message.objects.get(pk=str(step.message_id))
    handle = OUTCOME_EXITS.get(message.status)
    if handle is None:
        handle = ("delivered" if message.channel == EMAIL
                  and message.status == MessageStatus.SENT else "timeout")
    if _resume_outcome(step, message, handle=handle) and handle == "timeout":
        messages_cancel_many(ids=[message.pk], now=now,
                             reason=f"flow step {step.node_id} timed out")


def dispatch_timers(*, now: datetime | None = None, batch: int = 500) -> int:
    """Fire due delay / wait_for_event timers (the timeout exit for waits).

    Each is resumed inside the locking transaction, so a second dispatcher skips it, and a
    crash rolls the whole batch back to waiting with its timer intact.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # A paused execution's timer waits: it fires on the first pass after the resume.
        due = list(Execution.objects.select_for_update(skip_locked=True)
                   .filter(status=ExecStatus.WAITING, wake_at__lte=now, paused_at__isnull=True)
                   .order_by("wake_at")[:batch])
        for execution in due:
            step = Step.objects.filter(execution=execution, node_id=execution.current_node,
                                       visit=execution.current_visit,
                                       status=StepStatus.WAITING).first()
            if step is None:
                continue
            if execution.waiting_event:
                resume_step(step=step, outcome="completed", output={"timed_out": True},
                            handle="timeout")
            elif step.message_id is not None:
                _outcome_timed_out(step, now)
            else:
                resume_step(step=step, outcome="completed",
                            output={"waited_until": now.isoformat()})
    return len(due)


def deliver_events(*, workspace_id: Any, events: list[tuple[Any, str, dict]]) -> list[int]:
    """Wake the executions waiting for these events, of distinct contacts, (contact, name,
    properties) each; return how many each woke, in order. Set-wise: one read finds the
    waiting step of every execution they wake (the one at its cursor), one commit
    completes them and moves their executions through the `event` exit (_resume_together:
    two statements), and their next advances are published together. A paused execution
    keeps waiting; should one have moved meanwhile, each is resumed alone, fenced as ever."""
    index = {(contact.pk, name): i for i, (contact, name, _) in enumerate(events)}
    woken = [0] * len(events)
    owner: dict[Any, int] = {}
    steps: list[Step] = []
    for step in Step.objects.select_related("execution").filter(
            execution__workspace_id=workspace_id,
            execution__contact_id__any=list({contact.pk for contact, _, _ in events}),
            execution__status=ExecStatus.WAITING,
            execution__waiting_event__in={name for _, name, _ in events},
            node_id=F("execution__current_node"), visit=F("execution__current_visit"),
            status=StepStatus.WAITING):
        i = index.get((step.execution.contact_id, step.execution.waiting_event))
        if i is not None:  # else another contact's event of that name
            owner[step.pk] = i
            steps.append(step)
    if not steps:
        return woken
    resumes: Resumes = {step.pk: ({"event": events[owner[step.pk]][1],
                                   "properties": events[owner[step.pk]][2]}, "event")
                        for step in steps}
    with grouped(), transaction.atomic():
        alone = {step.pk for step in _resume_together(
            steps, {step.execution_id: step.execution for step in steps}, resumes)}
        for step in steps:
            output, handle = resumes[step.pk]
            # Alone: read again, so a paused or moved execution answers as it stands now.
            if step.pk not in alone or resume_step(step=step, outcome="completed",
                                                   handle=handle, output=output):
                woken[owner[step.pk]] += 1
    return woken


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Repair lost work: running executions nobody advances, steps whose message finished."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.REQUEUE_AFTER_SECONDS)
    stuck = list(Execution.objects.filter(status=ExecStatus.RUNNING, updated_at__lt=stale,
                                          paused_at__isnull=True)
                 .exclude(lease_until__gt=now).values_list("pk", flat=True)[:1000])
    publish(stuck)
    finished = 0
    orphans = Step.objects.filter(status=StepStatus.WAITING, execution__paused_at__isnull=True,
                                  message__status__in=[
        MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.UNDELIVERED,
        MessageStatus.FAILED, MessageStatus.SUPPRESSED]).exclude(
        # A send waiting for its outcome keeps waiting on a sent message (receipt or timer).
        # has_key, not a key comparison: a missing key compares as NULL, and NOT (NULL AND
        # true) would leave out every other step whose message was sent.
        input__has_key="wait_for", message__status=MessageStatus.SENT,
    ).values_list("message_id", flat=True)[:1000]
    for message_id in list(orphans):
        on_message_finished(message_id=message_id)
        finished += 1
    return {"republished": len(stuck), "steps_finished": finished}
