"""Flows REST API: flows, publish/activate/pause, starts, bulk starts, events, dry runs,
executions and step retries."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import django_filters
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.manager import BaseManager
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiError, StrictCharField, WorkspaceScoped
from core.audit import actor_of
from core.auth import workspace_of
from core.models import Contact, Scope, Workspace
from flows import dry_run, journeys, operations, services, timeline, versions
from flows.graph import GraphError
from flows.models import BulkStart, Execution, Flow, FlowVersion, Step
from flows.nodes import REGISTRY
from flows.rules import AUDIENCE_ROOTS, TRIGGER_FILTER_ROOTS, unknown_roots, validate_rules
from flows.selectors import executions_list, flow_stats, flows_list, live_version_numbers
from flows.serializers import ExecutionSerializer
from messaging.api.idempotency import idempotent
from messaging.delivery.templating import contact_context

TRIGGER_TYPES = ("manual", "event", "schedule")


def graph_error(exc: GraphError) -> ApiError:
    return ApiError(400, f"The flow graph has {len(exc.errors)} problem(s).",
                    code="invalid_graph", fields={"graph": exc.errors})


class GraphProblemSerializer(serializers.Serializer):
    """One problem of a flow graph: the node or edge it is about (null if neither)."""

    node = serializers.CharField(allow_null=True)
    edge = serializers.CharField(allow_null=True)
    message = serializers.CharField()


NODES_HELP = ('[{"id", "type", "data"}], type one of: ' + ", ".join(sorted(REGISTRY))
              + ' (README.md, "Flows")')
EDGES_HELP = ('[{"id", "source", "target", "sourceHandle"}]; several edges leaving one exit '
              'run as parallel branches, which a "join" node gathers')


@dataclass(frozen=True)
class _FlowPage:
    """What a page of flows shows that is read for the whole page: each flow's live version
    number and its graph's warnings, by flow id."""

    versions: dict[Any, int]
    warnings: dict[Any, list[dict]]


class FlowListSerializer(serializers.ListSerializer):
    """Flows shown together (a page of GET /flows): their version numbers and the templates
    and topics their sends name are read once for all of them, not once for each."""

    def to_representation(self, data: Any) -> list[dict]:
        flows = list(data.all() if isinstance(data, BaseManager) else data)
        # A page lists the flows of the key's workspace (core.api.WorkspaceScoped's context).
        problems = services.graphs_problems([(flow.nodes, flow.edges) for flow in flows],
                                            workspace=self.context["workspace"])
        child = self.child
        assert isinstance(child, FlowSerializer)  # Meta.list_serializer_class
        child.page = _FlowPage(live_version_numbers(flows=flows),
                               dict(zip((flow.pk for flow in flows), problems, strict=True)))
        return super().to_representation(flows)


class FlowSerializer(serializers.ModelSerializer):
    name = StrictCharField(max_length=200)
    nodes = serializers.JSONField(help_text=NODES_HELP)
    edges = serializers.JSONField(help_text=EDGES_HELP)
    trigger = serializers.JSONField(required=False)
    settings = serializers.JSONField(required=False)
    version = serializers.SerializerMethodField()
    warnings = serializers.SerializerMethodField(
        help_text="What publishing would refuse in the current graph: a draft saves with "
                  "these; empty when it can be published")

    class Meta:
        model = Flow
        fields = ["id", "name", "description", "status", "trigger", "nodes", "edges",
                  "settings", "version", "warnings", "created_at", "updated_at"]
        read_only_fields = ["id", "status", "version", "warnings", "created_at", "updated_at"]
        list_serializer_class = FlowListSerializer

    # Set by FlowListSerializer for the flows it shows.
    page: _FlowPage | None = None

    def get_version(self, flow: Flow) -> int | None:
        if self.page is not None:
            return self.page.versions.get(flow.pk)
        version = flow.live_version
        return version.number if version else None

    @extend_schema_field(GraphProblemSerializer(many=True))
    def get_warnings(self, flow: Flow) -> list[dict]:
        if self.page is not None:
            return self.page.warnings[flow.pk]
        return services.flow_graph_problems(nodes=flow.nodes, edges=flow.edges,
                                            workspace=flow.workspace)

    def validate_trigger(self, value: object) -> dict:
        if not isinstance(value, dict) or value.get("type") not in TRIGGER_TYPES:
            raise serializers.ValidationError(
                'Give {"type": "manual"}, {"type": "event", "event": name, "filter": rules} '
                'or {"type": "schedule"}.')
        if value["type"] == "event":
            if not isinstance(value.get("event"), str) or not value["event"]:
                raise serializers.ValidationError("An event trigger needs an event name.")
            if value.get("filter") is not None:
                errors = validate_rules(value["filter"], "filter") or unknown_roots(
                    value["filter"], TRIGGER_FILTER_ROOTS, "an event trigger's filter",
                    "filter")
                if errors:
                    raise serializers.ValidationError(errors)
        return value

    def validate_settings(self, value: object) -> dict:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        if not isinstance(value.get("allow_reentry", False), bool):
            raise serializers.ValidationError({"allow_reentry": "Must be true or false."})
        concurrent = value.get("max_concurrent_per_contact", 1)
        if isinstance(concurrent, bool) or not isinstance(concurrent, int) or concurrent < 1:
            raise serializers.ValidationError(
                {"max_concurrent_per_contact": "Must be an integer >= 1."})
        problems = journeys.check_settings(value)
        if problems:
            raise serializers.ValidationError(problems)
        return value

    def validate(self, attrs: dict) -> dict:
        """A draft saves with the graph's problems (the answer's `warnings`), as long as
        nodes and edges are lists; a published flow's graph must stay publishable."""
        nodes = attrs.get("nodes", self.instance.nodes if self.instance else None)
        edges = attrs.get("edges", self.instance.edges if self.instance else None)
        draft = self.instance is None or self.instance.status == Flow.Status.DRAFT
        shapeless = {name: ["Must be a list."] for name, value in (
            ("nodes", nodes), ("edges", edges)) if not isinstance(value, list)}
        if shapeless:
            raise serializers.ValidationError(shapeless)
        if not draft:
            try:
                services.flow_check_graph(nodes=nodes, edges=edges,
                                          workspace=self.context["workspace"])
            except GraphError as exc:
                raise graph_error(exc) from exc
        return attrs


class FlowVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = FlowVersion
        fields = ["number", "nodes", "edges", "trigger", "settings", "created_at"]


class StepSerializer(serializers.ModelSerializer):
    duration_ms = serializers.FloatField(read_only=True, allow_null=True)  # null: not finished
    message_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = Step
        fields = ["id", "node_id", "node_type", "visit", "status", "input", "output", "error",
                  "message_id", "retry_count", "started_at", "completed_at", "duration_ms"]


class ExecutionDetailSerializer(ExecutionSerializer):
    steps = StepSerializer(many=True, read_only=True)

    class Meta(ExecutionSerializer.Meta):
        fields = [*ExecutionSerializer.Meta.fields, "steps"]


class TimelineWaitSerializer(serializers.Serializer):
    """A step that waited: until when or for what, and what woke it (null: still waiting)."""

    until = serializers.CharField(allow_null=True, help_text="When its timer fires (delay, "
                                  "wait_for_event's timeout), ISO 8601.")
    event = serializers.CharField(allow_null=True, help_text="The event it waits for.")
    message_id = serializers.UUIDField(allow_null=True,
                                       help_text="The message a send step waits for.")
    woke_by = serializers.ChoiceField(choices=timeline.WokeBy.ALL, allow_null=True)
    woke_at = serializers.DateTimeField(allow_null=True)


class ExecutionTimelineEntrySerializer(serializers.Serializer):
    """One entry of an execution's timeline (README.md, "Timelines")."""

    kind = serializers.ChoiceField(choices=timeline.Kind.ALL)
    at = serializers.DateTimeField()
    step = StepSerializer(allow_null=True, help_text="The step (kind step), with its input "
                          "(a condition's values seen), output and error.")
    branch = serializers.CharField(allow_null=True, help_text="The exit a branching step "
                                   "took: true/false (condition), event/timeout.")
    next_node = serializers.CharField(allow_null=True,
                                      help_text="The node the step led to; null: none yet, "
                                      "or the flow ended there.")
    wait = TimelineWaitSerializer(allow_null=True)
    actor = serializers.CharField(help_text="Who paused, resumed or cancelled it.")
    detail = serializers.DictField(help_text="started: source, data, version; paused/"
                                   "resumed: status, node; failed: error.")


START_MODES = ("queued", "immediate")


class StartSerializer(serializers.Serializer):
    contact_id = serializers.UUIDField(required=False)
    contact_external_id = StrictCharField(required=False, max_length=200)
    mode = serializers.ChoiceField(
        choices=START_MODES, default="queued",
        help_text="queued: a worker walks the flow. immediate: the nodes that need no "
                  "waiting run inside the request (at most FLOW_IMMEDIATE_SECONDS) and the "
                  "answer says where the walk stopped; the rest goes on in the background.")
    # The serializer metaclass pops declared fields off the class, so this does not
    # replace Serializer.data at runtime; the stubs see a shadowed property.
    data = serializers.DictField(required=False, default=dict)  # type: ignore[assignment]

    def validate(self, attrs: dict) -> dict:
        attrs["contact"] = find_contact(self.context["workspace"], attrs)
        return attrs


@dataclass
class Started:
    """A started execution with what ran inside the request (ExecutionStartSerializer)."""

    execution: Execution
    start_mode: str
    start_outcome: str | None
    start_steps: list[Step]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.execution, name)


class ExecutionStartSerializer(ExecutionSerializer):
    """A started execution, with what ran inside the request."""

    mode = serializers.ChoiceField(choices=START_MODES, source="start_mode", read_only=True)
    outcome = serializers.ChoiceField(
        choices=services.IMMEDIATE_OUTCOMES, source="start_outcome", read_only=True,
        allow_null=True,
        help_text="Where the immediate walk stopped: waiting (at a node that waits: a send, "
                  "a delay, an event), completed, failed, or running (the bound was reached; "
                  "it goes on in the background). null when queued.")
    steps = StepSerializer(many=True, read_only=True, source="start_steps",
                           help_text="The steps run inside the request ([] when queued).")

    class Meta(ExecutionSerializer.Meta):
        fields = [*ExecutionSerializer.Meta.fields, "mode", "outcome", "steps"]


class BulkSerializer(serializers.Serializer):
    contact_ids = serializers.ListField(child=serializers.UUIDField(), required=False,
                                        max_length=100_000)
    filter = serializers.JSONField(required=False)
    segment_id = serializers.UUIDField(
        required=False, help_text="The audience instead of contact_ids or filter: a segment "
        "of the workspace (its rules as they are when the bulk start is made).")
    # The serializer metaclass pops declared fields off the class, so this does not
    # replace Serializer.data at runtime; the stubs see a shadowed property.
    data = serializers.DictField(required=False, default=dict)  # type: ignore[assignment]

    def validate(self, attrs: dict) -> dict:
        given = [name for name in ("contact_ids", "filter", "segment_id") if name in attrs]
        if len(given) != 1:
            raise serializers.ValidationError(
                "Give one of contact_ids, filter (attribute rules) or segment_id.")
        if "segment_id" in attrs:
            try:
                rules = services.segment_rules_of(workspace=self.context["workspace"],
                                                  segment_id=str(attrs["segment_id"]))
            except ValueError as exc:
                raise serializers.ValidationError({"segment_id": [str(exc)]}) from exc
            if rules is None:
                raise serializers.ValidationError(
                    {"segment_id": ["No such segment in this workspace."]})
            attrs["filter"] = rules
        if "filter" in attrs:
            errors = validate_rules(attrs["filter"], "filter") or unknown_roots(
                attrs["filter"], AUDIENCE_ROOTS, "an audience", "filter")
            if errors:
                raise serializers.ValidationError({"filter": errors})
        return attrs


class BulkStartSerializer(serializers.ModelSerializer):
    flow_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = BulkStart
        fields = ["id", "flow_id", "status", "total", "started", "skipped", "refused", "error",
                  "created_at", "finished_at"]


class DryRunSerializer(serializers.Serializer):
    contact = serializers.DictField(required=False, default=dict)
    contact_id = serializers.UUIDField(required=False)
    # The serializer metaclass pops declared fields off the class, so this does not
    # replace Serializer.data at runtime; the stubs see a shadowed property.
    data = serializers.DictField(required=False, default=dict)  # type: ignore[assignment]
    events = serializers.ListField(child=StrictCharField(), required=False, default=list)


class EventFieldsSerializer(serializers.Serializer):
    """An event's fields, its contact not looked up: a batch finds its contacts at once."""

    name = StrictCharField(max_length=100)
    contact_id = serializers.UUIDField(required=False)
    contact_external_id = StrictCharField(required=False, max_length=200)
    properties = serializers.DictField(required=False, default=dict)


class EventSerializer(EventFieldsSerializer):
    def validate(self, attrs: dict) -> dict:
        attrs["contact"] = find_contact(self.context["workspace"], attrs)
        return attrs


class EventBatchSerializer(serializers.Serializer):
    events = serializers.ListField(child=serializers.JSONField(), min_length=1,
                                   max_length=settings.EVENT_BATCH_LIMIT)


def find_contacts(workspace: Workspace, items: list[dict]) -> dict[int, Contact | dict]:
    """Return, per index, the contact each item names by contact_id or contact_external_id,
    or its field errors as find_contact raises them; two queries for any number."""
    named: dict[str, dict[Any, Contact]] = {"pk": {}, "external_id": {}}
    for lookup, field in (("pk", "contact_id"), ("external_id", "contact_external_id")):
        wanted = {attrs[field] for attrs in items if field in attrs}
        if wanted:
            named[lookup] = {getattr(contact, lookup): contact for contact in
                             Contact.objects.filter(workspace=workspace,
                                                    **{f"{lookup}__any": wanted})}
    found: dict[int, Contact | dict] = {}
    for index, attrs in enumerate(items):
        field, lookup = next(((f, k) for f, k in (("contact_id", "pk"), (
            "contact_external_id", "external_id")) if f in attrs), ("contact_id", ""))
        contact = named[lookup].get(attrs[field]) if lookup else None
        found[index] = contact if contact is not None else {field: [
            "No such contact." if lookup else "Give contact_id or contact_external_id."]}
    return found


def find_contact(workspace: Workspace, attrs: dict) -> Contact:
    """Return the contact named by contact_id or contact_external_id (400 if none)."""
    found = find_contacts(workspace, [attrs])[0]
    if isinstance(found, dict):
        raise serializers.ValidationError(found)
    return found


class StatsQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="count executions started "
                                      "at or after this moment (ISO 8601); all when absent")


class NodeStatsSerializer(serializers.Serializer):
    node_id = serializers.CharField()
    type = serializers.CharField()
    entered = serializers.IntegerField(help_text="visits of the node (steps)")
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    exited = serializers.IntegerField(help_text="executions that exited (goal or exit_on) "
                                      "while at this node")


class BranchStatsSerializer(serializers.Serializer):
    name = serializers.CharField()
    entered = serializers.IntegerField(help_text="executions that took the branch")
    sent = serializers.IntegerField(help_text="their messages that reached a provider")
    delivered = serializers.IntegerField()
    converted = serializers.IntegerField(help_text="their executions that reached the goal")
    conversion_rate = serializers.FloatField(help_text="converted / entered (0 to 1)")


class SplitStatsSerializer(serializers.Serializer):
    node_id = serializers.CharField()
    branches = BranchStatsSerializer(many=True)


class FlowStatsSerializer(serializers.Serializer):
    since = serializers.DateTimeField(allow_null=True)
    executions = serializers.IntegerField(help_text="executions started since")
    converted = serializers.IntegerField(help_text="of them, converted (the flow's goal)")
    nodes = NodeStatsSerializer(many=True)
    splits = SplitStatsSerializer(many=True)


class MigrateSerializer(serializers.Serializer):
    version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1,
                                       help_text="the version to move onto (default: the latest)")
    node_map = serializers.DictField(
        child=StrictCharField(max_length=100), required=False, default=dict,
        help_text='{"old node id": "new node id"}; a node left out keeps its id')


class MigratedSerializer(serializers.Serializer):
    moved = serializers.IntegerField(help_text="waiting executions moved (with their "
                                               "parallel branches)")
    version = serializers.IntegerField(help_text="the version they now run")


class FlowFilter(django_filters.FilterSet):
    class Meta:
        model = Flow
        fields = ["status"]


class FlowViewSet(WorkspaceScoped, viewsets.ModelViewSet):
    """Flows of the key's workspace."""

    # Editing a flow is configuration; starting executions is sending; a dry run changes nothing.
    action_scopes = {"start": Scope.SEND, "bulk": Scope.SEND, "test": Scope.READ,
                     "stats": Scope.READ}

    serializer_class = FlowSerializer
    filterset_class = FlowFilter
    search_fields = ["name", "description"]
    ordering_fields = ["created_at", "updated_at", "name"]

    model = Flow

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[Flow]:
        return flows_list(workspace=workspace)

    def _context(self) -> dict:
        return {"workspace": self.workspace, "request": self.request}

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return idempotent(request, lambda: super(FlowViewSet, self).create(request))

    def perform_destroy(self, flow: Flow) -> None:
        if flow.executions.filter(status__in=services.ACTIVE_STATUSES).exists():
            raise ApiError(409, "The flow has running executions; archive it instead.",
                           code="flow_in_use")
        if flow.executions.exists():
            services.flow_set_status(flow=flow, status=Flow.Status.ARCHIVED)
            return
        flow.delete()

    @extend_schema(parameters=[StatsQuerySerializer], responses=FlowStatsSerializer)
    @action(detail=True, methods=["get"])
    def stats(self, request: Request, pk: str | None = None) -> Response:
        """The flow's funnel: per node, visits entered, completed and failed, executions
        exited there; per split branch, executions, messages sent and delivered,
        conversions and the conversion rate."""
        query = StatsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(FlowStatsSerializer(flow_stats(
            flow=self.get_object(), since=query.validated_data.get("since"))).data)

    @extend_schema(request=None, responses={201: FlowVersionSerializer})
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, pk: str | None = None) -> Response:
        """Freeze the current graph as a new version (running executions keep theirs)."""
        try:
            version = services.flow_publish(flow=self.get_object())
        except GraphError as exc:
            raise graph_error(exc) from exc
        return Response(FlowVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MigrateSerializer, responses=MigratedSerializer)
    @action(detail=True, methods=["post"])
    def migrate(self, request: Request, pk: str | None = None) -> Response:
        """Move the flow's waiting executions onto a published version (README.md,
        "Versions"): each waiting node keeps its id or takes the node_map's; 400 naming
        every node that has no place in that version, and then nothing moves."""
        flow = self.get_object()
        serializer = MigrateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            version, moved = versions.executions_migrate(
                flow=flow, number=data.get("version"), node_map=data["node_map"])
        except versions.MigrationRefused as exc:
            raise ApiError(400, "The executions cannot move onto that version.",
                           fields=exc.problems) from exc
        return Response(MigratedSerializer({"moved": moved, "version": version.number}).data)

    def _set_status(self, status_: str) -> Response:
        flow = self.get_object()
        if flow.status == Flow.Status.ARCHIVED and status_ != Flow.Status.ARCHIVED:
            raise ApiError(409, "An archived flow cannot change status.", code="archived")
        try:
            flow = services.flow_set_status(flow=flow, status=status_)
        except GraphError as exc:
            raise graph_error(exc) from exc
        return Response(FlowSerializer(flow).data)

    @extend_schema(request=None, responses=FlowSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, pk: str | None = None) -> Response:
        """Let triggers and API calls start the flow (publishes a first version if needed)."""
        return self._set_status(Flow.Status.ACTIVE)

    @extend_schema(request=None, responses=FlowSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Stop new starts; running executions go on."""
        return self._set_status(Flow.Status.PAUSED)

    @extend_schema(request=StartSerializer, responses={201: ExecutionStartSerializer})
    @action(detail=True, methods=["post"], url_path="executions")
    def start(self, request: Request, pk: str | None = None) -> Response:
        """Start the flow for one contact; `mode: "immediate"` walks it inside the request."""
        flow = self.get_object()

        def handler() -> Response:
            serializer = StartSerializer(data=request.data, context=self._context())
            serializer.is_valid(raise_exception=True)
            values = serializer.validated_data
            start = {"flow": flow, "contact": values["contact"], "data": values["data"],
                     "source": Execution.Source.API}
            outcome = None
            try:
                if values["mode"] == "immediate":
                    execution, outcome = services.execution_start_immediate(**start)
                else:
                    execution = services.execution_start(**start)
            except services.StartRefused as exc:
                raise ApiError(409, str(exc), code="start_refused") from exc
            steps = list(execution.steps.order_by("started_at", "id")) if outcome else []
            started = Started(execution, values["mode"], outcome, steps)
            return Response(ExecutionStartSerializer(started).data, status=201)
        return idempotent(request, handler)

    @extend_schema(request=BulkSerializer, responses={202: BulkStartSerializer})
    @action(detail=True, methods=["post"], url_path="executions/bulk")
    def bulk(self, request: Request, pk: str | None = None) -> Response:
        """Start the flow for many contacts in batches; poll the job for progress."""
        flow = self.get_object()

        def handler() -> Response:
            serializer = BulkSerializer(data=request.data,
                                        context={"workspace": self.workspace})
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            ids = [str(i) for i in data["contact_ids"]] if "contact_ids" in data else None
            try:
                job = services.bulk_start_create(flow=flow, contact_ids=ids,
                                                 rules=data.get("filter"), data=data["data"])
            except services.StartRefused as exc:
                raise ApiError(409, str(exc), code="start_refused") from exc
            return Response(BulkStartSerializer(job).data, status=202)
        return idempotent(request, handler)

    @extend_schema(responses=BulkStartSerializer, parameters=[
        OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH)])
    @action(detail=True, methods=["get"], url_path=r"executions/bulk/(?P<job_id>[^/.]+)")
    def bulk_status(self, request: Request, pk: str | None = None,
                    job_id: str | None = None) -> Response:
        """Return a bulk start's progress."""
        flow = self.get_object()
        job = BulkStart.objects.filter(flow=flow, pk=_uuid_or_404(job_id)).first()
        if job is None:
            raise ApiError(404, "No such bulk start.")
        return Response(BulkStartSerializer(job).data)

    @extend_schema(request=DryRunSerializer, responses={200: None})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str | None = None) -> Response:
        """Dry run: walk the graph for a sample contact, sending nothing; each message
        says what the recipients' rules would decide about it now."""
        flow = self.get_object()
        serializer = DryRunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        contact, found = data["contact"], None
        if "contact_id" in data:
            found = find_contact(workspace_of(request), {"contact_id": data["contact_id"]})
            contact = {**contact_context(found), **contact}
        try:
            result = dry_run.walk(flow=flow, contact=contact, data=data["data"],
                                  events=data["events"], contact_row=found)
        except GraphError as exc:
            raise graph_error(exc) from exc
        return Response(result)

    # Paged like every list (the schema says so); the flows' filters do not apply here.
    @extend_schema(responses=FlowVersionSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[])
    def versions(self, request: Request, pk: str | None = None) -> Response:
        """List the flow's published versions, newest first."""
        flow = self.get_object()
        page = self.paginate_queryset(flow.versions.order_by("-number"))
        return self.get_paginated_response(FlowVersionSerializer(page, many=True).data)


def _uuid_or_404(value: str | None) -> str:
    """Return the id in canonical form; answer 404 (not 400) for an id that cannot exist."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ApiError(404, "Not found.") from None


class ExecutionFilter(django_filters.FilterSet):
    flow = django_filters.UUIDFilter(field_name="flow_id")
    contact = django_filters.UUIDFilter(field_name="contact_id")
    parent = django_filters.UUIDFilter(
        field_name="parent_id", help_text="the parallel branches this execution forked (the "
                                          "list shows executions contacts entered otherwise)")
    status = django_filters.MultipleChoiceFilter(choices=Execution.Status.choices)
    started_after = django_filters.IsoDateTimeFilter(field_name="started_at",
                                                     lookup_expr="gte")
    started_before = django_filters.IsoDateTimeFilter(field_name="started_at",
                                                      lookup_expr="lt")

    class Meta:
        model = Execution
        fields = ["flow", "contact", "status", "source"]


class ExecutionViewSet(WorkspaceScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                       viewsets.GenericViewSet):
    """Executions of the key's workspace, with their steps."""

    write_scope = Scope.SEND  # cancel and step retry act on what was sent
    # Pausing and resuming an execution is operating it, not sending.
    action_scopes = {"pause": Scope.MANAGE, "resume": Scope.MANAGE}

    filterset_class = ExecutionFilter
    ordering_fields = ["started_at", "completed_at"]

    model = Execution

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[Execution]:
        queryset = executions_list(workspace=workspace, with_steps=self.action == "retrieve")
        if self.action == "list" and "parent" not in self.request.query_params:
            queryset = queryset.entered()  # branches: ?parent=<id>
        return queryset

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return ExecutionDetailSerializer if self.action == "retrieve" else ExecutionSerializer

    @extend_schema(request=None, responses=ExecutionSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel a running or waiting execution and its pending messages and timers."""
        execution = self.get_object()
        if execution.status not in services.ACTIVE_STATUSES:
            raise ApiError(409, f"A {execution.status} execution cannot be cancelled.",
                           code="not_cancellable")
        return Response(ExecutionSerializer(operations.execution_cancel(
            execution=execution, actor=actor_of(request, "api"))).data)

    @extend_schema(request=None, responses=ExecutionSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Pause a running or waiting execution: not advanced, timers wait (409 when it is
        finished; pausing a paused one answers it unchanged)."""
        return self._pause_or_resume(operations.execution_pause)

    @extend_schema(request=None, responses=ExecutionSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Resume a paused execution where it stopped (409 when it is finished)."""
        return self._pause_or_resume(operations.execution_resume)

    def _pause_or_resume(self, operation: Any) -> Response:
        execution = self.get_object()
        try:
            execution = operation(execution=execution, actor=actor_of(self.request, "api"))
        except operations.NotPausable as exc:
            raise ApiError(409, str(exc), code="not_pausable") from exc
        return Response(ExecutionSerializer(execution).data)

    @extend_schema(responses={200: ExecutionTimelineEntrySerializer(many=True)})
    @action(detail=True, methods=["get"], filter_backends=[])
    def timeline(self, request: Request, pk: str | None = None) -> Response:
        """List what the execution did and why, oldest first: each step with its input and
        output, the branch taken and the values a condition saw, waits and what woke them,
        operators' pauses and how it ended (README.md, "Timelines")."""
        entries = timeline.execution_timeline(execution=self.get_object())
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(
            ExecutionTimelineEntrySerializer(page, many=True).data)

    @extend_schema(request=None, responses=StepSerializer)
    @action(detail=True, methods=["post"], url_path=r"steps/(?P<step_id>\d+)/retry")
    def retry_step(self, request: Request, pk: str | None = None,
                   step_id: str | None = None) -> Response:
        """Retry a failed step; its execution resumes from there. A failed branch's step
        also puts the executions its failure ended back to waiting at their forks (README.md,
        "Parallel branches"). 409 `not_retryable` when the step or its execution has not
        failed, or when the execution the branch forked from has left that fork."""
        execution = self.get_object()
        # The route always captures step_id; without one no step matches either.
        step = (None if step_id is None
                else Step.objects.filter(execution=execution, pk=step_id).first())
        if step is None:
            raise ApiError(404, "No such step.")
        try:
            step = operations.step_retry(step=step)
        except operations.NotRetryable as exc:
            raise ApiError(409, str(exc), code="not_retryable") from exc
        return Response(StepSerializer(step).data)


class EventIngestedSerializer(serializers.Serializer):
    """The answer to an event: the executions it started and how many waits it woke."""

    executions = ExecutionSerializer(many=True)
    started = serializers.IntegerField()
    woken = serializers.IntegerField()
    exited = serializers.IntegerField(help_text="executions the event ended (goal or exit_on)")
    converted = serializers.IntegerField(
        help_text="executions whose goal it is (exited now, or finished within the goal's "
                  "attribution window)")


class EventView(APIView):
    write_scope = Scope.SEND  # sending, not configuration

    @extend_schema(request=EventSerializer, responses={202: EventIngestedSerializer})
    def post(self, request: Request) -> Response:
        """Record a contact's event: end the executions whose goal or exit condition it
        meets, start matching flows and wake waiting executions."""
        def handler() -> Response:
            serializer = EventSerializer(data=request.data,
                                         context={"workspace": workspace_of(request)})
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            started, woken, ended = services.event_ingest(
                workspace=workspace_of(request), contact=data["contact"], name=data["name"],
                properties=data["properties"])
            answer = EventIngestedSerializer({"executions": started, "started": len(started),
                                              "woken": woken, **ended})
            return Response(answer.data, status=202)
        return idempotent(request, handler)


class EventCountsSerializer(serializers.Serializer):
    """What one event of a batch did (the executions it started are counted, not listed)."""

    started = serializers.IntegerField()
    woken = serializers.IntegerField()
    exited = serializers.IntegerField(help_text="executions the event ended (goal or exit_on)")
    converted = serializers.IntegerField(
        help_text="executions whose goal it is (exited now, or finished within the goal's "
                  "attribution window)")


class EventBatchIngestedSerializer(serializers.Serializer):
    """The answer to a batch of events: how many, and each event's counts in order."""

    count = serializers.IntegerField()
    events = EventCountsSerializer(many=True)


class EventBatchView(APIView):
    write_scope = Scope.SEND

    @extend_schema(request=EventBatchSerializer, responses={202: EventBatchIngestedSerializer})
    def post(self, request: Request) -> Response:
        """Record many contacts' events at once, each as POST /events would and in order
        (a contact's later event applies after its earlier one): validate all (400 with
        errors by index, nothing recorded), then apply all in one transaction."""
        def handler() -> Response:
            outer = EventBatchSerializer(data=request.data)
            outer.is_valid(raise_exception=True)
            workspace = workspace_of(request)
            items: dict[int, dict] = {}
            errors: dict[str, Any] = {}
            for index, item in enumerate(outer.validated_data["events"]):
                serializer = EventFieldsSerializer(data=item)
                if serializer.is_valid():
                    items[index] = serializer.validated_data
                else:
                    errors[str(index)] = serializer.errors
            found = find_contacts(workspace, list(items.values()))
            for index, contact in zip(items, found.values(), strict=True):
                if isinstance(contact, dict):
                    errors[str(index)] = contact
                else:
                    items[index]["contact"] = contact
            if errors:
                raise ApiError(400, f"{len(errors)} of {len(outer.validated_data['events'])} "
                                    "events are invalid; nothing was recorded.",
                               fields={"events": errors})
            with transaction.atomic():
                answers = services.events_ingest(workspace=workspace, events=[
                    (item["contact"], item["name"], item["properties"]) for item in items.values()])
            answer = EventBatchIngestedSerializer({"count": len(answers), "events": [
                {"started": len(started), "woken": woken, **ended}
                for started, woken, ended in answers]})
            return Response(answer.data, status=202)
        return idempotent(request, handler)
