"""Schedules REST API: schedules (many per flow), a flow's single schedule (the older
shape), run history, presets and cron validation."""
from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiError, StrictCharField, WorkspaceScoped, error_body
from core.auth import workspace_of
from core.models import Contact, Scope, Workspace
from flows import cron, schedules
from flows.models import Flow, FlowSchedule
from flows.rules import AUDIENCE_ROOTS, unknown_roots, validate_rules
from flows.selectors import flows_list, schedules_list
from flows.serializers import ScheduleRunSerializer
from messaging.api.idempotency import idempotent

MAX_AUDIENCE_IDS = 100_000
AUDIENCE_HELP = ('Give {"contact_id": id}, {"contact_ids": [id, ...]} or '
                 '{"filter": rules}.')


class ScheduleInputSerializer(serializers.Serializer):
    """What a client may set; the workspace comes from the key, never the body."""

    flow = serializers.UUIDField()
    cron = StrictCharField(max_length=120)
    timezone = StrictCharField(max_length=64, required=False)
    enabled = serializers.BooleanField(required=False, default=True)
    audience = serializers.JSONField()
    # The serializer metaclass pops declared fields off the class, so this does not
    # replace Serializer.data at runtime; the stubs see a shadowed property.
    data = serializers.DictField(required=False, default=dict)  # type: ignore[assignment]
    catch_up = serializers.ChoiceField(choices=FlowSchedule.CatchUp.choices, required=False,
                                       default=FlowSchedule.CatchUp.SKIP)

    @property
    def workspace(self) -> Workspace:
        return self.context["workspace"]

    def validate_flow(self, value: Any) -> Flow:
        flow = Flow.objects.filter(workspace=self.workspace, pk=value).first()
        if flow is None:
            raise serializers.ValidationError("No such flow.")
        return flow

    def validate_cron(self, value: str) -> str:
        try:
            cron.cron_parse(value)
        except cron.CronError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return " ".join(value.split())

    def validate_timezone(self, value: str) -> str:
        try:
            return cron.zone_get(value).key
        except cron.CronError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate_audience(self, value: Any) -> dict:
        if not isinstance(value, dict) or len(value) != 1:
            raise serializers.ValidationError(AUDIENCE_HELP)
        key, item = next(iter(value.items()))
        if key == "filter":
            errors = validate_rules(item, "filter") or unknown_roots(
                item, AUDIENCE_ROOTS, "an audience", "filter")
            if errors:
                raise serializers.ValidationError(errors)
            return {"filter": item}
        if key == "contact_id":
            return {"contact_id": self._contacts([item], key)[0]}
        if key == "contact_ids":
            if not isinstance(item, list) or not 1 <= len(item) <= MAX_AUDIENCE_IDS:
                raise serializers.ValidationError(
                    f"contact_ids must be a list of 1 to {MAX_AUDIENCE_IDS} ids.")
            return {"contact_ids": self._contacts(item, key)}
        raise serializers.ValidationError(AUDIENCE_HELP)

    def _contacts(self, items: list, key: str) -> list[str]:
        """Return the ids as strings if all are contacts of this workspace."""
        field = serializers.UUIDField()
        try:
            ids = list(dict.fromkeys(str(field.to_internal_value(item)) for item in items))
        except serializers.ValidationError:
            raise serializers.ValidationError(f"{key}: every id must be a UUID.") from None
        found = {str(pk) for pk in Contact.objects.filter(
            workspace=self.workspace, pk__in=ids).values_list("pk", flat=True)}
        unknown = [pk for pk in ids if pk not in found]
        if unknown:
            raise serializers.ValidationError(
                f"{key}: no such contact: {', '.join(unknown[:5])}"
                + (f" and {len(unknown) - 5} more." if len(unknown) > 5 else "."))
        return ids


class ScheduleSerializer(serializers.ModelSerializer):
    flow = serializers.UUIDField(source="flow_id", read_only=True)
    description = serializers.SerializerMethodField()
    last_run_status = serializers.SerializerMethodField()

    class Meta:
        model = FlowSchedule
        fields = ["id", "flow", "cron", "timezone", "description", "enabled", "audience",
                  "data", "catch_up", "next_run_at", "runs", "successes", "failures",
                  "last_run_at", "last_run_status", "created_at", "updated_at"]
        read_only_fields = fields

    def get_description(self, schedule: FlowSchedule) -> str:
        return cron.cron_describe(schedule.cron)

    def get_last_run_status(self, schedule: FlowSchedule) -> str | None:
        return schedule.last_run_status or None


class ValidateCronSerializer(serializers.Serializer):
    expression = StrictCharField(max_length=120, trim_whitespace=False)
    timezone = StrictCharField(max_length=64, required=False, default="UTC")


def _write(request: Request, *, schedule: FlowSchedule | None, partial: bool,
           flow: Flow | None = None) -> FlowSchedule:
    """Validate a body and create or update a schedule through the services (400 and
    nothing written on bad input)."""
    workspace = workspace_of(request)
    body = dict(request.data) if isinstance(request.data, dict) else request.data
    if flow is not None and isinstance(body, dict):
        body["flow"] = str(flow.pk)
        if "cron_expression" in body and "cron" not in body:  # the older shape's name
            body["cron"] = body.pop("cron_expression")
    serializer = ScheduleInputSerializer(data=body, partial=partial,
                                         context={"workspace": workspace})
    serializer.is_valid(raise_exception=True)
    data = dict(serializer.validated_data)
    if schedule is None:
        data.setdefault("timezone", workspace.timezone)
        return schedules.schedule_create(workspace=workspace, **data)
    if not partial:
        data.setdefault("timezone", schedule.timezone)
    return schedules.schedule_update(schedule=schedule, **data)


class ScheduleFilter(django_filters.FilterSet):
    flow = django_filters.UUIDFilter(field_name="flow_id")

    class Meta:
        model = FlowSchedule
        fields = ["flow", "enabled"]


class ScheduleViewSet(WorkspaceScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                      viewsets.GenericViewSet):
    """Cron schedules of the key's workspace; a flow may have several."""

    serializer_class = ScheduleSerializer
    filterset_class = ScheduleFilter
    ordering_fields = ["created_at", "next_run_at", "last_run_at"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    model = FlowSchedule

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[FlowSchedule]:
        return schedules_list(workspace=workspace)

    @extend_schema(request=ScheduleInputSerializer, responses={201: ScheduleSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create a schedule (and its beat task); the answer includes next_run_at."""
        def handler() -> Response:
            schedule = _write(request, schedule=None, partial=False)
            return Response(ScheduleSerializer(schedule).data, status=status.HTTP_201_CREATED)
        return idempotent(request, handler)

    @extend_schema(request=ScheduleInputSerializer, responses=ScheduleSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Change a schedule; beat picks the change up without a restart."""
        schedule = _write(request, schedule=self.get_object(),
                          partial=kwargs.get("partial", False))
        return Response(ScheduleSerializer(schedule).data)

    @extend_schema(request=ScheduleInputSerializer, responses=ScheduleSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Change some fields; {"enabled": false} disables."""
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete a schedule, its beat task and its run history."""
        schedules.schedule_delete(schedule=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    # The schedules' filters are not the runs': none is listed or applied here.
    @extend_schema(responses=ScheduleRunSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[])
    def runs(self, request: Request, pk: str | None = None) -> Response:
        """List the schedule's runs, newest occurrence first."""
        queryset = self.get_object().schedule_runs.order_by("-occurrence_at")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(ScheduleRunSerializer(page, many=True).data)

    @extend_schema(responses={200: None})
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def presets(self, request: Request) -> Response:
        """List common schedules: expression and description."""
        return Response(cron.presets())


class FlowScheduleView(WorkspaceScoped, GenericAPIView):
    """A flow's first schedule, in the older one-schedule-per-flow shape."""

    serializer_class = ScheduleSerializer
    model = Flow  # the schedule hangs off one of the workspace's flows

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[Flow]:
        return flows_list(workspace=workspace)

    def _flow(self, flow_id: str) -> Flow:
        flow = self.get_queryset().filter(pk=flow_id).first()
        if flow is None:
            raise ApiError(404, "Not found.")
        return flow

    def _schedule_or_none(self, flow: Flow) -> FlowSchedule | None:
        return flow.schedules.order_by("created_at").first()

    def _schedule(self, flow: Flow) -> FlowSchedule:
        schedule = self._schedule_or_none(flow)
        if schedule is None:
            raise ApiError(404, "This flow has no schedule.")
        return schedule

    @extend_schema(responses=ScheduleSerializer)
    def get(self, request: Request, flow_id: str) -> Response:
        """Return the flow's schedule."""
        return Response(ScheduleSerializer(self._schedule(self._flow(flow_id))).data)

    @extend_schema(request=ScheduleInputSerializer, responses={200: ScheduleSerializer,
                                                               201: ScheduleSerializer})
    def post(self, request: Request, flow_id: str) -> Response:
        """Create the flow's schedule, or replace the one it has."""
        flow = self._flow(flow_id)

        def handler() -> Response:
            existing = self._schedule_or_none(flow)
            schedule = _write(request, schedule=existing, partial=False, flow=flow)
            return Response(ScheduleSerializer(schedule).data,
                            status=status.HTTP_200_OK if existing else status.HTTP_201_CREATED)
        return idempotent(request, handler)

    @extend_schema(request=ScheduleInputSerializer, responses=ScheduleSerializer)
    def patch(self, request: Request, flow_id: str) -> Response:
        """Change some fields of the flow's schedule; {"enabled": false} disables."""
        flow = self._flow(flow_id)
        schedule = _write(request, schedule=self._schedule(flow), partial=True, flow=flow)
        return Response(ScheduleSerializer(schedule).data)

    def delete(self, request: Request, flow_id: str) -> Response:
        """Delete the flow's schedule."""
        schedules.schedule_delete(schedule=self._schedule(self._flow(flow_id)))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ValidateCronView(APIView):
    write_scope = Scope.READ  # a check: it changes nothing

    @extend_schema(request=ValidateCronSerializer, responses={200: None, 400: None})
    def post(self, request: Request) -> Response:
        """Check an expression in a time zone: description and the next 5 runs (local and
        UTC), or 400 with the reason."""
        serializer = ValidateCronSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            return Response(cron.cron_check(expression=data["expression"],
                                                 timezone=data["timezone"]))
        except cron.CronError as exc:
            # The API's error shape, beside the keys a valid answer has.
            body = error_body(400, str(exc), {exc.field: [str(exc)]}, code="invalid_cron")
            return Response({"valid": False, "description": None, "next_runs": [], **body},
                            status=status.HTTP_400_BAD_REQUEST)
