"""Writes for flows: save, publish, activate, start executions, bulk starts, events."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from core.models import Contact, Workspace
from flows import engine, journeys
from flows import events as flow_events
from flows.graph import GraphError, validate
from flows.models import BulkStart, Execution, Flow, FlowVersion
from flows.nodes import send
from flows.nodes.aliases import engine_node, engine_type
from flows.nodes.base import data_of
from flows.publishing import RUN_BULK_START, publish, schedule_advance, send_on_commit
from flows.rules import CONDITION_ROOTS, evaluate, unknown_roots
from flows.rules_sql import rules_filter
from messaging.delivery.templating import contact_context
from messaging.events.types import EXECUTION_STARTED
from messaging.models import Template, Topic

# One bulk-start batch: one query for the contacts, one for their live executions, one
# bulk INSERT and N publishes; ~50 ms per 500 contacts on PostgreSQL.
BULK_BATCH = 500
ACTIVE_STATUSES = (Execution.Status.RUNNING, Execution.Status.WAITING)


class StartRefused(Exception):
    """The flow cannot start for this contact (not active, re-entry, concurrency)."""


def flow_graph_problems(*, nodes: Any, edges: Any,
                        workspace: Workspace | None = None) -> list[dict]:
    """Return every problem of the graph ({node, edge, message}), its condition fields that
    do not start with what conditions see included (checked on save and publish only: see
    unknown_roots) and, given the workspace, the templates and topics its sends name that
    the workspace lacks; empty when it can be published."""
    return graphs_problems([(nodes, edges)], workspace=workspace)[0]


def graphs_problems(graphs: list[tuple[Any, Any]],
                    workspace: Workspace | None = None) -> list[list[dict]]:
    """Return flow_graph_problems of each graph (nodes, edges) of the workspace, reading
    the templates and topics their sends name once for all of them (a page of flows)."""
    checked = [(nodes, validate(nodes, edges)) for nodes, edges in graphs]
    sends = {index: _sends(nodes) for index, (nodes, errors) in enumerate(checked)
             if not errors}
    references = (_send_references(workspace, [s for found in sends.values() for s in found])
                  if workspace is not None else None)
    return [errors or [
        {"node": node["id"], "edge": None, "message": problem}
        for node in nodes if engine_type(node.get("type")) == "condition"
        for problem in unknown_roots(engine_node(node).get("data", {}).get("rules"),
                                     CONDITION_ROOTS, "a condition", "data.rules")
    ] + (_send_reference_problems(sends[index], references) if references is not None
         else [])
        for index, (nodes, errors) in enumerate(checked)]


def _sends(nodes: list[dict]) -> list[tuple[str, dict]]:
    """Return the send nodes of a sound graph: (id, the node in the engine's terms)."""
    return [(node["id"], engine_node(node)) for node in nodes
            if engine_type(node.get("type")) in send.CHANNELS]


class _SendReferences(NamedTuple):
    """The templates (id -> channel) and topics (keys) of a workspace that sends name."""

    channels: dict[uuid.UUID, str]
    topics: set[str]


def _send_references(workspace: Workspace, sends: list[tuple[str, dict]]) -> _SendReferences:
    """Read the workspace's templates and topics these sends name (one query for each kind,
    and none without any)."""
    wanted = {key: {data_of(found)[key] for _, found in sends if key in data_of(found)}
              for key in ("template", "topic")}
    channels = dict(Template.objects.filter(workspace=workspace, pk__in=wanted["template"],
                                            deleted_at__isnull=True)
                    .values_list("pk", "channel")) if wanted["template"] else {}
    topics = set(Topic.objects.filter(workspace=workspace, key__in=wanted["topic"])
                 .values_list("key", flat=True)) if wanted["topic"] else set()
    return _SendReferences(channels, topics)


def _send_reference_problems(sends: list[tuple[str, dict]],
                             references: _SendReferences) -> list[dict]:
    """Return the send nodes naming a template or topic the workspace does not have, or a
    template of another channel."""
    problems = []
    for node_id, found in sends:
        data, kind = data_of(found), found["type"]
        if "template" in data:
            channel = references.channels.get(uuid.UUID(data["template"]))
            if channel is None:
                problems.append((node_id, f"{kind} data.template is no template of this "
                                          "workspace"))
            elif channel != send.channel_of(found):
                problems.append((node_id, f"{kind} data.template is for the {channel} channel"))
        if "topic" in data and data["topic"] not in references.topics:
            problems.append((node_id, f"{kind} data.topic is no topic of this workspace"))
    return [{"node": node_id, "edge": None, "message": message}
            for node_id, message in problems]


def flow_check_graph(*, nodes: Any, edges: Any, workspace: Workspace | None = None) -> None:
    """Raise GraphError with every problem unless the graph can be published (in the
    workspace, when given: its sends' templates and topics must be there)."""
    errors = flow_graph_problems(nodes=nodes, edges=edges, workspace=workspace)
    if errors:
        raise GraphError(errors)


def trigger_filter_context(*, contact: Contact, name: str, properties: dict) -> dict:
    """Return what an event trigger's filter sees (TRIGGER_FILTER_ROOTS)."""
    return {"event": {"name": name, "properties": properties},
            "properties": properties, "contact": contact_context(contact)}


def audience_context(contact: Contact) -> dict:
    """Return what an audience filter (bulk start, schedule, broadcast, segment) sees
    (AUDIENCE_ROOTS): the contact as templates see it, plus its consent per channel."""
    return {"contact": {**contact_context(contact),
                        "consent": {"sms": contact.sms_subscribed,
                                    "email": contact.email_subscribed}}}


# How a bulk start's `segment_id` becomes rules. Segments belong to the audiences app,
# above flows, which registers the lookup when it loads (audiences.apps): (workspace,
# segment id) -> the segment's expanded rules, or None when the workspace has no such
# segment; ValueError (with the reason) when its rules cannot be used.
SegmentLookup = Callable[[Workspace, str], "dict[str, Any] | None"]
_segment_lookups: list[SegmentLookup] = []


def segment_lookup_register(lookup: SegmentLookup) -> None:
    """Install the segment lookup (once; a second call replaces the first)."""
    _segment_lookups[:] = [lookup]


def segment_rules_of(*, workspace: Workspace, segment_id: str) -> dict | None:
    """Return the rules of the workspace's segment `segment_id` (None: no such segment)."""
    return _segment_lookups[0](workspace, segment_id) if _segment_lookups else None


def flow_publish(*, flow: Flow) -> FlowVersion:
    """Freeze the flow's current graph as its next version; raise GraphError with every
    problem when it cannot run (a draft saves with them: README.md, "Drafts")."""
    flow_check_graph(nodes=flow.nodes, edges=flow.edges, workspace=flow.workspace)
    with transaction.atomic():
        Flow.objects.select_for_update().filter(pk=flow.pk).first()
        number = (flow.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        return FlowVersion.objects.create(flow=flow, number=number, nodes=flow.nodes,
                                          edges=flow.edges, trigger=flow.trigger,
                                          settings=flow.settings)


def flow_set_status(*, flow: Flow, status: str) -> Flow:
    """Activate (publishing first if never published), pause or archive a flow."""
    if status == Flow.Status.ACTIVE and not flow.versions.exists():
        flow_publish(flow=flow)
    flow.status = status
    flow.save(update_fields=["status", "updated_at"])
    return flow


def _limits(version: FlowVersion, source: str = "") -> tuple[bool, int]:
    """Return (allow_reentry, max_concurrent_per_contact) for a start from `source`.

    Re-entry is a rule of triggered and API starts: each occurrence of a schedule is a new
    entry, so a schedule start only respects the concurrency limit (a contact still in the
    flow from the previous occurrence is skipped).
    """
    settings = version.settings or {}
    allow_reentry = source == Execution.Source.SCHEDULE or bool(
        settings.get("allow_reentry", False))
    return allow_reentry, int(settings.get("max_concurrent_per_contact", 1) or 1)


def flow_startable_version(*, flow: Flow) -> FlowVersion:
    """Return the version a start would run; raise StartRefused saying why it cannot start.

    The one test of "can this flow start", so the API, bulk starts and schedules agree.
    """
    if flow.status != Flow.Status.ACTIVE:
        raise StartRefused(f"The flow is {flow.status}; activate it first.")
    version = flow.live_version
    if version is None:
        raise StartRefused("The flow has no published version.")
    return version


def execution_start(*, flow: Flow, contact: Contact, data: dict | None = None,
                    source: str = Execution.Source.API, publish_advance: bool = True
                    ) -> Execution:
    """Start the flow's live version for one contact (re-entry and concurrency enforced);
    a worker walks it unless `publish_advance` is False (the caller walks it itself)."""
    version = flow_startable_version(flow=flow)
    allow_reentry, max_concurrent = _limits(version, source)
    graph = engine.graph_of(version.pk)
    with transaction.atomic():
        # Serialise starts per contact so two concurrent starts cannot both pass the checks.
        Contact.objects.select_for_update().filter(pk=contact.pk).first()
        # The executions it entered: parallel branches are parts of one.
        previous = Execution.objects.entered().filter(flow=flow, contact=contact)
        if not allow_reentry and previous.exists():
            raise StartRefused("This contact has been through the flow; re-entry is off.")
        if previous.filter(status__in=ACTIVE_STATUSES).count() >= max_concurrent:
            raise StartRefused("This contact already has the maximum of concurrent "
                               "executions of this flow.")
        execution = Execution.objects.create(
            workspace_id=flow.workspace_id, flow=flow, version=version, contact=contact,
            data=data or {}, source=source, current_node=graph.start,
            visits={graph.start: 1}, enqueued_at=timezone.now())
        flow_events.executions_emit(executions=[execution], type=EXECUTION_STARTED)
        if publish_advance:
            schedule_advance(execution.pk)
    return execution


# What an immediate start answers: the walk stopped at a node that waits, or ended; or it
# goes on in the background ("running": the time or node bound was reached).
IMMEDIATE_OUTCOMES = ("waiting", "completed", "failed", "running")


def execution_start_immediate(*, flow: Flow, contact: Contact, data: dict | None = None,
                              source: str = Execution.Source.API) -> tuple[Execution, str]:
    """Start the flow and walk it inside the caller: the nodes that need no waiting run now,
    for at most FLOW_IMMEDIATE_SECONDS; what is left continues in the background as after a
    queued start. Return the execution as it stands and one of IMMEDIATE_OUTCOMES."""
    execution = execution_start(flow=flow, contact=contact, data=data, source=source,
                                publish_advance=False)
    deadline = time.monotonic() + settings.FLOW_IMMEDIATE_SECONDS
    outcome = "unwalked"
    try:
        # A walk stops after MAX_INLINE_NODES and publishes its continuation ("yielded"); the
        # next walk here takes it over unless a worker already has (its lease: "skipped").
        while outcome == "unwalked" or (outcome == "yielded" and time.monotonic() < deadline):
            outcome = engine.advance(execution_id=str(execution.pk))
    finally:
        if outcome in ("unwalked", "error"):
            publish([execution.pk])  # the walk broke here: a worker tries it again
    execution.refresh_from_db()
    return execution, outcome if outcome in IMMEDIATE_OUTCOMES else "running"


def executions_start_many(*, flow: Flow, contacts: list[Contact], data: dict | None,
                          source: str) -> tuple[list[Execution], int]:
    """Start one execution per eligible contact in one INSERT; return them and the number
    the entry rules refused (re-entry, concurrency)."""
    version = flow_startable_version(flow=flow)
    allow_reentry, max_concurrent = _limits(version, source)
    graph = engine.graph_of(version.pk)
    ids = [c.pk for c in contacts]
    with transaction.atomic():
        list(Contact.objects.select_for_update().filter(pk__in=ids).values_list("pk"))
        counts = (Execution.objects.entered().filter(flow=flow, contact_id__in=ids)
                  .values("contact_id")
                  .annotate(total=Count("pk"),
                            active=Count("pk", filter=Q(status__in=ACTIVE_STATUSES))))
        busy = {row["contact_id"] for row in counts
                if (row["total"] and not allow_reentry) or row["active"] >= max_concurrent}
        now = timezone.now()
        executions = [Execution(workspace_id=flow.workspace_id, flow=flow, version=version,
                                contact=contact, data=data or {}, source=source,
                                current_node=graph.start, visits={graph.start: 1},
                                enqueued_at=now)
                      for contact in contacts if contact.pk not in busy]
        Execution.objects.bulk_create(executions, batch_size=BULK_BATCH)
        flow_events.executions_emit(executions=executions, type=EXECUTION_STARTED)
        transaction.on_commit(lambda: publish([e.pk for e in executions]))
    return executions, len(contacts) - len(executions)


def audience(*, workspace: Workspace, contact_ids: list | None) -> QuerySet[Contact]:
    """Return the candidate contacts of a bulk start in id order (rules apply per batch)."""
    queryset = Contact.objects.filter(workspace=workspace).order_by("pk")
    if contact_ids is not None:
        queryset = queryset.filter(pk__in=contact_ids)
    return queryset


def audience_batch(*, contacts: QuerySet[Contact], rules: dict | None, cursor: str | None,
                   size: int) -> tuple[str | None, int, list[Contact]]:
    """Return the last id of the next `size` candidates after `cursor` (None: none left),
    how many they are, and those the rules match in id order.

    Only the ids of the candidates are read; the database selects the matching rows (flows.
    rules_sql) and the rules are evaluated here only on what it could not decide.
    """
    window = contacts.filter(pk__gt=cursor) if cursor else contacts
    if not rules:
        batch = list(window[:size])
        return (str(batch[-1].pk) if batch else None), len(batch), batch
    ids = list(window.values_list("pk", flat=True)[:size])
    if not ids:
        return None, 0, []
    where, exact = rules_filter(rules)
    matched = window.filter(where, pk__lte=ids[-1])
    return str(ids[-1]), len(ids), [
        contact for contact in matched if exact or evaluate(rules, audience_context(contact))]


def bulk_start_create(*, flow: Flow, contact_ids: list | None, rules: dict | None,
                      data: dict | None, source: str = "api") -> BulkStart:
    """Record a bulk start and queue its first batch."""
    flow_startable_version(flow=flow)
    job = BulkStart.objects.create(workspace_id=flow.workspace_id, flow=flow, source=source,
                                   contact_ids=contact_ids, filter=rules, data=data or {})
    send_on_commit(RUN_BULK_START, str(job.pk))
    return job


def bulk_start_run_batch(*, job: BulkStart) -> bool:
    """Start the next batch of a bulk start; return True while batches remain."""
    contacts = audience(workspace=job.workspace, contact_ids=job.contact_ids)
    if job.status == BulkStart.Status.PENDING:
        job.total = contacts.count() if not job.filter else 0
        job.status = BulkStart.Status.RUNNING
        job.save(update_fields=["total", "status"])
    last, read, matched = audience_batch(contacts=contacts, rules=job.filter,
                                         cursor=job.cursor, size=BULK_BATCH)
    started, refused = executions_start_many(flow=job.flow, contacts=matched, data=job.data,
                                             source=job.source) if matched else ([], 0)
    skipped = refused + read - len(matched)
    done = read < BULK_BATCH
    BulkStart.objects.filter(pk=job.pk).update(
        started=job.started + len(started), skipped=job.skipped + skipped,
        refused=job.refused + refused, cursor=last or job.cursor,
        total=job.total if not job.filter else job.total + len(matched),
        status=BulkStart.Status.COMPLETED if done else BulkStart.Status.RUNNING,
        finished_at=timezone.now() if done else None)
    return not done


def event_ingest(*, workspace: Workspace, contact: Contact, name: str,
                 properties: dict) -> tuple[list[Execution], int, dict[str, int]]:
    """End the contact's executions whose goal or exit condition the event meets (flows.
    journeys), start every active flow it triggers and wake waits for it; return the
    executions started, the waits woken and {"exited", "converted"}."""
    return events_ingest(workspace=workspace, events=[(contact, name, properties)])[0]


def events_ingest(*, workspace: Workspace, events: list[journeys.ContactEvent]
                  ) -> list[tuple[list[Execution], int, dict[str, int]]]:
    """event_ingest for many events, each as if alone and in order, but set-wise: the
    events go in rounds where no contact repeats (a contact's second event waits for the
    next round, after its first took effect), and a round's exits, flow lookups and wakes
    are a few statements whatever its size. Return what event_ingest returns, per event."""
    answers: list[tuple[list[Execution], int, dict[str, int]]] = []
    triggered: dict[str, list[Flow]] = {}
    versions = journeys.reactions(workspace.pk)  # the goals and exits, for every round
    for round_ in _rounds(events):
        # What the filters of goals, exits and triggers see, built once per event.
        contexts = [trigger_filter_context(contact=contact, name=name, properties=properties)
                    for contact, name, properties in round_]
        ended = journeys.events_apply(workspace_id=workspace.pk, events=round_,
                                      contexts=contexts, versions=versions)
        started = [_trigger(workspace, triggered, event, context)
                   for event, context in zip(round_, contexts, strict=True)]
        woken = engine.deliver_events(workspace_id=workspace.pk, events=round_)
        answers += zip(started, woken, ended, strict=True)
    return answers


def _rounds(events: list[journeys.ContactEvent]) -> list[list[journeys.ContactEvent]]:
    """Split the events, in order, into runs where no contact repeats."""
    rounds: list[list[journeys.ContactEvent]] = [[]]
    seen: set[Any] = set()
    for event in events:
        if event[0].pk in seen:
            rounds.append([])
            seen.clear()
        rounds[-1].append(event)
        seen.add(event[0].pk)
    return [round_ for round_ in rounds if round_]


def _trigger(workspace: Workspace, triggered: dict[str, list[Flow]],
             event: journeys.ContactEvent, context: dict) -> list[Execution]:
    """Start every active flow this event triggers for the contact (the flows of an event
    name read once per batch, in `triggered`; their filters see `context`); return the
    executions started."""
    contact, name, properties = event
    if name not in triggered:
        triggered[name] = list(Flow.objects.filter(
            workspace=workspace, status=Flow.Status.ACTIVE, trigger__type="event",
            trigger__event=name))
    started: list[Execution] = []
    for flow in triggered[name]:
        rules = (flow.trigger or {}).get("filter")
        if rules and not evaluate(rules, context):
            continue
        try:
            started.append(execution_start(flow=flow, contact=contact, data={
                "event": name, "properties": properties}, source=Execution.Source.EVENT))
        except StartRefused:
            continue
    return started
