"""Alert rules (CRUD) and their event history."""
from __future__ import annotations

from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ApiError, WorkspaceScoped
from core.models import Workspace
from flows.models import Flow
from messaging.models import Channel
from monitoring import alerts
from monitoring.models import AlertEvent, AlertRule
from monitoring.selectors import alert_events_list, alert_rules_list


class AlertRuleSerializer(serializers.ModelSerializer):
    flow = serializers.PrimaryKeyRelatedField(queryset=Flow.objects.none(), required=False,
                                              allow_null=True)
    # "" means every channel. Blank is allowed rather than listed as a choice, so the schema
    # says ChannelEnum or BlankEnum and ChannelEnum's description has no "`` - all" line.
    message_channel = serializers.ChoiceField(choices=Channel.choices, allow_blank=True,
                                              required=False)
    recipients = serializers.ListField(child=serializers.CharField(max_length=2048),
                                       min_length=1, max_length=alerts.MAX_RECIPIENTS)
    state = serializers.SerializerMethodField()

    class Meta:
        model = AlertRule
        fields = ["id", "name", "type", "flow", "threshold", "window_seconds",
                  "message_channel", "schedule_id", "min_samples", "channel", "recipients",
                  "enabled", "cooldown_seconds", "muted_until", "state", "last_value",
                  "last_evaluated_at", "last_notified_at", "created_at", "updated_at"]
        read_only_fields = ["id", "state", "last_value", "last_evaluated_at",
                            "last_notified_at", "created_at", "updated_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        workspace = self.context.get("workspace")
        if workspace is not None:
            # ModelSerializer builds a PrimaryKeyRelatedField for the flow foreign key;
            # the stubs type fields[...] as a plain Field.
            flow_field = cast("serializers.PrimaryKeyRelatedField[Flow]", self.fields["flow"])
            # The stubs annotate RelatedField.queryset with a Manager in its union, so mypy
            # treats the attribute as a Manager descriptor and rejects any assignment.
            flow_field.queryset = Flow.objects.filter(  # type: ignore[arg-type]
                workspace=workspace)

    @extend_schema_field(OpenApiTypes.STR)
    def get_state(self, rule: AlertRule) -> str:
        """Say whether the rule has an open incident: firing, or ok."""
        open_ids = self.context.get("firing")
        if open_ids is None:
            open_ids = set(AlertEvent.objects.filter(rule=rule, resolved_at__isnull=True)
                           .values_list("rule_id", flat=True))
        return "firing" if rule.pk in open_ids else "ok"

    def validate(self, attrs: dict) -> dict:
        rule = AlertRule(workspace=self.context["workspace"])
        for name, value in ({**self._current(), **attrs}).items():
            setattr(rule, name, value)
        try:
            alerts.alert_rule_validate(rule=rule)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return attrs

    def _current(self) -> dict[str, Any]:
        if self.instance is None:
            return {}
        return {name: getattr(self.instance, name) for name in (
            "name", "type", "flow", "threshold", "window_seconds", "message_channel",
            "schedule_id", "min_samples", "channel", "recipients", "enabled",
            "cooldown_seconds", "muted_until")}


class AlertRuleViewSet(WorkspaceScoped, viewsets.ModelViewSet):
    """The workspace's alert rules; beat evaluates the enabled ones every minute."""

    serializer_class = AlertRuleSerializer
    lookup_value_regex = r"\d+"
    filterset_fields = ["type", "channel", "enabled"]

    model = AlertRule

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[AlertRule]:
        return alert_rules_list(workspace=workspace)

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if "workspace" in context:  # a key's request, not the schema generator's
            context["firing"] = set(AlertEvent.objects.filter(
                workspace=context["workspace"], resolved_at__isnull=True).values_list(
                    "rule_id", flat=True))
        return context


class AlertEventSerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", read_only=True)
    rule_type = serializers.CharField(source="rule.type", read_only=True)
    state = serializers.SerializerMethodField()
    delivery = serializers.SerializerMethodField()

    class Meta:
        model = AlertEvent
        fields = ["id", "rule", "rule_name", "rule_type", "state", "value", "threshold",
                  "summary", "triggered_at", "resolved_at", "resolved_value", "notified",
                  "delivery", "message_ids", "resolve_message_ids"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_state(self, event: AlertEvent) -> str:
        """Say firing or resolved."""
        return "resolved" if event.resolved_at else "firing"

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_delivery(self, event: AlertEvent) -> dict[str, Any]:
        """Return the notification outcome counts and whether all were delivered."""
        known = self.context.get("delivery") or {}
        if event.pk not in known:
            known = alerts.alert_event_delivery(events=[event])
        return known[event.pk]


class AlertEventViewSet(WorkspaceScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                        viewsets.GenericViewSet):
    """The workspace's alert history, newest first."""

    serializer_class = AlertEventSerializer
    lookup_value_regex = r"\d+"
    filter_backends: list = []

    model = AlertEvent

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[AlertEvent]:
        params = self.request.query_params
        rule, state = params.get("rule"), params.get("state")
        if rule is not None and not rule.isdigit():
            raise ApiError(400, "rule must be a rule id.", fields={"rule": ["Not an id."]})
        if state not in (None, "firing", "resolved"):
            raise ApiError(400, "state must be firing or resolved.",
                           fields={"state": ["Use firing or resolved."]})
        return alert_events_list(workspace=workspace,
                                 rule_id=None if rule is None else int(rule),
                                 firing=None if state is None else state == "firing")

    @extend_schema(parameters=[OpenApiParameter("rule", OpenApiTypes.INT),
                               OpenApiParameter("state", OpenApiTypes.STR,
                                                enum=["firing", "resolved"])])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """List alert events (filter by rule and state), with delivery outcomes."""
        page = self.paginate_queryset(self.get_queryset())
        events = list(page if page is not None else self.get_queryset())
        context = {**self.get_serializer_context(),
                   "delivery": alerts.alert_event_delivery(events=events)}
        data = AlertEventSerializer(events, many=True, context=context).data
        return self.get_paginated_response(data) if page is not None else Response(data)
