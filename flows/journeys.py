"""Goals and exit conditions of journeys (README.md, "Goals and exits").

A flow's settings may name a goal, `{"event", "filter", "within"}`, and exit conditions,
`[{"event", "filter"}]`; they are frozen with each version, so an execution answers to the
settings of the version it runs. When a contact's event is accepted (`events_apply`, called
by services.events_ingest for `POST /api/v1/events` and inbound `message.received`), every
running or waiting execution of that contact whose version's goal or exit condition matches
ends at once: status `exited`, `exit_reason` `goal` or `event:<name>`.

An exit is a fence, not a wish: one transaction locks the executions, ends them, skips their
waiting steps and cancels the messages those steps queued and not yet sent. A delivery claim
is a conditional UPDATE of the message row (queued -> sending), so it either ran before the
exit's lock (the provider call had begun before the event was accepted) or finds the message
cancelled and sends nothing. An advance racing the exit is fenced on the execution's status
(walker.move_many moves running executions only) and writes nothing.

A goal records a conversion (`converted_at`, `converted_node`: the node reached) on the
executions it ends, and on executions that completed (or exited on another event) no longer
than `within` before the goal arrived: the attribution window.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.models import Contact
from flows import branches
from flows import events as flow_events
from flows.models import Execution, FlowVersion, Step
from flows.nodes.checks import DURATION_HELP, duration_seconds
from flows.rules import TRIGGER_FILTER_ROOTS, evaluate, unknown_roots, validate_rules
from messaging.delivery.creation import messages_cancel_many
from messaging.events.types import EXECUTION_CONVERTED, EXECUTION_EXITED

ExecStatus = Execution.Status
StepStatus = Step.Status
ACTIVE = (ExecStatus.RUNNING, ExecStatus.WAITING)
GOAL = "goal"
GOAL_KEYS = ("event", "filter", "within")
EXIT_KEYS = ("event", "filter")


# --- checking the settings ------------------------------------------------------------------

def check_settings(settings: dict) -> dict[str, list[str]]:
    """Return the problems of a flow's goal and exit_on settings, keyed by setting."""
    problems: dict[str, list[str]] = {}
    if "goal" in settings:
        goal = settings["goal"]
        found = _condition_problems(goal, "goal", GOAL_KEYS)
        if isinstance(goal, dict) and "within" in goal and duration_seconds(
                goal["within"]) is None:
            found.append(f"goal.within must be {DURATION_HELP}")
        if found:
            problems["goal"] = found
    if "exit_on" in settings:
        exits = settings["exit_on"]
        if not isinstance(exits, list):
            problems["exit_on"] = ['Must be a list of {"event", "filter"} objects.']
        else:
            found = [problem for index, item in enumerate(exits)
                     for problem in _condition_problems(item, f"exit_on[{index}]", EXIT_KEYS)]
            if found:
                problems["exit_on"] = found
    return problems


def _condition_problems(value: Any, path: str, keys: tuple[str, ...]) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path} must be an object with {', '.join(keys)}"]
    problems = [f"{path}.{key} is not a setting (use {', '.join(keys)})"
                for key in value if key not in keys]
    if not isinstance(value.get("event"), str) or not value["event"].strip():
        problems.append(f"{path}.event must name an event")
    rules = value.get("filter")
    if rules is not None:
        problems += validate_rules(rules, f"{path}.filter") or unknown_roots(
            rules, TRIGGER_FILTER_ROOTS, f"{path}'s filter", f"{path}.filter")
    return problems


# --- applying an event ----------------------------------------------------------------------

def _matches(condition: Any, name: str, context: dict) -> bool:
    if not isinstance(condition, dict) or condition.get("event") != name:
        return False
    rules = condition.get("filter")
    return not rules or evaluate(rules, context)


# (version id, settings) of a workspace's versions with a goal or an exit condition.
Reactions = list[tuple[int, dict]]


def reactions(workspace_id: Any) -> Reactions:
    """Return (version id, settings) of the workspace's versions with a goal or an exit
    condition: read once for a whole batch of events (events_apply takes them)."""
    rows = FlowVersion.objects.filter(flow__workspace_id=workspace_id,
                                      settings__has_any_keys=["goal", "exit_on"])
    return list(rows.values_list("pk", "settings"))


def _met(versions: Reactions, name: str,
         context: dict) -> tuple[dict[int, int], dict[int, str]]:
    """Return, for the versions this event concerns, {version id: attribution window
    seconds} for those whose goal it meets and {version id: exit reason} for those it ends
    on an exit condition only."""
    goals: dict[int, int] = {}
    exits: dict[int, str] = {}
    for pk, settings in versions:
        goal: Any = settings.get("goal")
        if _matches(goal, name, context):
            goals[pk] = duration_seconds(goal.get("within", 0)) or 0
        elif any(_matches(item, name, context) for item in settings.get("exit_on") or []):
            exits[pk] = f"event:{name}"
    return goals, exits


# One contact's event: (contact, name, properties).
ContactEvent = tuple[Contact, str, dict]


def events_apply(*, workspace_id: Any, events: list[ContactEvent], contexts: list[dict],
                 versions: Reactions, now: datetime | None = None) -> list[dict[str, int]]:
    """End the executions whose goal or exit condition each event meets (their filters see
    the event's context, what a trigger's filter sees: services.trigger_filter_context), and
    count the goal for those that finished within its attribution window; return each
    event's {"exited": n, "converted": m}, in order. Runs in the caller's transaction when
    there is one. Set-wise: `versions` are the workspace's reactions(), read once for a
    whole batch; then one read of the candidate executions, and one exit (lock, end, skip,
    cancel) per exit reason, whatever the number of events.

    Distinct contacts, because a contact's events must apply one after the other (an
    event that starts a flow, then one that exits it): services.events_ingest splits a
    batch into rounds where no contact repeats."""
    counts = [{"exited": 0, "converted": 0} for _ in events]
    if not versions:
        return counts
    met: dict[Any, tuple[int, dict[int, int], dict[int, str]]] = {}
    for index, ((contact, name, _), context) in enumerate(zip(events, contexts, strict=True)):
        goals, exits = _met(versions, name, context)
        if goals or exits:
            met[contact.pk] = (index, goals, exits)
    if not met:
        return counts
    now = now or timezone.now()
    ending: dict[str, list[Any]] = {}
    attributed = []
    owner: dict[Any, int] = {}
    for pk, contact_id, status, version_id, completed_at in _candidates(workspace_id, met, now):
        index, goals, exits = met[contact_id]
        if status in ACTIVE:
            if version_id in goals or version_id in exits:
                ending.setdefault(GOAL if version_id in goals else exits[version_id],
                                  []).append(pk)
                owner[pk] = index
        elif (version_id in goals and goals[version_id] and completed_at
              and completed_at >= now - timedelta(seconds=goals[version_id])):
            attributed.append(pk)
            owner[pk] = index
    with transaction.atomic():
        for reason, ids in ending.items():
            for pk in executions_exit(ids=ids, reason=reason, now=now):
                counts[owner[pk]]["exited"] += 1
                counts[owner[pk]]["converted"] += reason == GOAL
        for pk in executions_convert(ids=attributed, now=now):
            counts[owner[pk]]["converted"] += 1
    return counts


def _candidates(workspace_id: Any, met: dict[Any, tuple[int, dict[int, int], dict[int, str]]],
                now: datetime) -> list[tuple[Any, Any, str, int, datetime | None]]:
    """Return (id, contact id, status, version id, completed_at) of the executions of these
    contacts that an event may end (running or waiting on a version it concerns) or convert
    (finished, not converted, on a version whose goal has a window, within the longest)."""
    ended = {pk for _, goals, exits in met.values() for pk in [*goals, *exits]}
    windows = {pk: window for _, goals, _ in met.values()
               for pk, window in goals.items() if window}
    # The executions the contacts entered; their branches end with them (executions_exit).
    candidates = Execution.objects.entered().filter(workspace_id=workspace_id,
                                                    contact_id__any=list(met))
    active = Q(status__in=ACTIVE, version_id__in=ended)
    if windows:
        active |= Q(status__in=[ExecStatus.COMPLETED, ExecStatus.EXITED],
                    converted_at__isnull=True, version_id__in=list(windows),
                    completed_at__gte=now - timedelta(seconds=max(windows.values())))
    return list(candidates.filter(active).values_list(
        "pk", "contact_id", "status", "version_id", "completed_at"))


def executions_exit(*, ids: list[Any], reason: str, now: datetime) -> list[Any]:
    """End the running or waiting executions among ids with status `exited` and this reason
    (a goal also converts them), skip their waiting steps and cancel the messages those
    queued and not yet sent; emit execution.exited (and execution.converted). Their
    parallel branches end with them (the same status, no events of their own). Return the
    ids ended. One transaction; the executions are locked first, branches before the ones
    the contacts entered (a branch ending locks its parent after itself), in id order."""
    with transaction.atomic():
        family = {pk: (root, workspace) for pk, root, workspace in Execution.objects
                  .select_for_update().filter(branches.family(ids), status__in=ACTIVE)
                  .order_by(F("root_id").asc(nulls_last=True), "pk")
                  .values_list("pk", "root_id", "workspace_id")}
        locked = {pk: workspace for pk, (root, workspace) in family.items() if root is None}
        if not locked:
            return []
        goal = reason == GOAL
        fields: dict[str, Any] = {
            "status": ExecStatus.EXITED, "exit_reason": reason[:110], "completed_at": now,
            "wake_at": None, "waiting_event": "", "paused_at": None, "paused_by": "",
            "lease_until": None, "updated_at": now}
        if goal:  # with the node each one had reached (its cursor stays where it was)
            fields.update(converted_at=now, converted_node=F("current_node"))
        Execution.objects.filter(pk__any=[pk for pk in family if pk not in locked]).update(
            **{key: value for key, value in fields.items() if not key.startswith("converted")})
        Execution.objects.filter(pk__any=list(locked)).update(**fields)
        waiting_steps_end(execution_ids=list(family), now=now,
                          reason=f"execution exited ({reason})")
        flow_events.journey_emit(ids=locked, types=[EXECUTION_EXITED, *(
            [EXECUTION_CONVERTED] if goal else [])])
    return list(locked)


def executions_convert(*, ids: list[Any], now: datetime) -> list[Any]:
    """Record the goal on finished executions among ids not converted yet (the attribution
    window); their status stays. Emit execution.converted; return the ids converted."""
    if not ids:
        return []
    with transaction.atomic():
        found = list(Execution.objects.select_for_update().filter(
            pk__any=ids, converted_at__isnull=True).order_by("pk").values_list(
            "pk", "current_node", "workspace_id"))
        rows = {pk: node for pk, node, _ in found}
        # A completed execution's cursor is past its end: the node reached is its last step's.
        for execution_id, node_id in Step.objects.filter(execution_id__in=[
                pk for pk, node in rows.items() if not node]).order_by(
                "started_at", "id").values_list("execution_id", "node_id"):
            rows[execution_id] = node_id
        for node, group in _by_node(rows).items():
            Execution.objects.filter(pk__in=group).update(converted_at=now, converted_node=node,
                                                          updated_at=now)
        flow_events.journey_emit(ids={pk: workspace for pk, _, workspace in found},
                                 types=[EXECUTION_CONVERTED])
    return list(rows)


def _by_node(positions: dict[Any, str]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {}
    for pk, node in positions.items():
        groups.setdefault(node, []).append(pk)
    return groups


def waiting_steps_end(*, execution_ids: list[Any], now: datetime, reason: str) -> int:
    """Skip the waiting steps of these (just ended) executions and cancel the messages they
    wait for that no provider has yet; return how many messages were cancelled."""
    steps = Step.objects.filter(execution_id__any=execution_ids,
                                status=StepStatus.WAITING).order_by()
    message_ids = [pk for pk in steps.values_list("message_id", flat=True) if pk is not None]
    steps.update(status=StepStatus.SKIPPED, completed_at=now)
    return len(messages_cancel_many(ids=message_ids, reason=reason, now=now))
