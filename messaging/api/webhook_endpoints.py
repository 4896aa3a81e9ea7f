"""Webhook endpoints REST API: CRUD, secret rotation, the delivery log and replay."""
from __future__ import annotations

from typing import Any

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ApiError, StrictCharField, WorkspaceScoped
from core.audit import actor_of, audit
from core.models import Workspace
from messaging import ratelimit
from messaging.events.endpoints import (
    callback_url_check,
    deliveries_replay_failed,
    delivery_replay,
    endpoint_disable,
    endpoint_enable,
    endpoint_rotate_secret,
    overlap,
)
from messaging.events.types import ALL_EVENTS, EVENT_TYPE_FIELD, EVENT_TYPES
from messaging.models import DeliveryAttempt, Message, MessageStatus, WebhookEndpoint
from messaging.providers.webhook import EVENT_ID_FIELD
from messaging.selectors import deliveries_list, webhook_endpoints_list

# Replaying "all failed since" takes at most this many deliveries per call (one INSERT).
REPLAY_LIMIT = 1000


class WebhookEndpointSerializer(serializers.ModelSerializer):
    url = StrictCharField(max_length=2048)
    events = serializers.ListField(child=StrictCharField(max_length=50), min_length=1,
                                   max_length=len(EVENT_TYPES) + 1)
    description = StrictCharField(max_length=500, required=False, allow_blank=True)
    rate_limit = StrictCharField(max_length=50, required=False, allow_blank=True)

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "description", "enabled", "rate_limit",
                  "failing_since", "disabled_at", "disabled_reason", "secret_rotated_at",
                  "created_at", "updated_at"]
        read_only_fields = ["id", "failing_since", "disabled_at", "disabled_reason",
                            "secret_rotated_at", "created_at", "updated_at"]

    def validate_url(self, value: str) -> str:
        try:
            return callback_url_check(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc

    def validate_events(self, value: list[str]) -> list[str]:
        unknown = [name for name in value
                   if name != ALL_EVENTS and name not in EVENT_TYPES]
        if unknown:
            raise serializers.ValidationError(
                f"Unknown event types: {', '.join(unknown)}. Choose from "
                f"{', '.join(EVENT_TYPES)} or *.")
        return list(dict.fromkeys(value))

    def validate_rate_limit(self, value: str) -> str:
        if value:
            try:
                ratelimit.Rate.parse(value)
            except ValueError as exc:
                raise serializers.ValidationError(str(exc)) from exc
        return value


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    """The answer to POST: the only time the secret is shown."""

    secret = serializers.CharField(read_only=True)

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField()
    previous_secret_valid_until = serializers.DateTimeField()


class DeliverySerializer(serializers.ModelSerializer):
    """One delivery of an event to an endpoint, with its last attempt's outcome."""

    event_id = serializers.SerializerMethodField()
    event_type = serializers.SerializerMethodField()
    response_code = serializers.SerializerMethodField()
    latency_ms = serializers.SerializerMethodField()
    next_retry_at = serializers.SerializerMethodField()
    replay_of = serializers.UUIDField(source="parent_id", read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = ["id", "event_id", "event_type", "status", "attempts", "response_code",
                  "latency_ms", "next_retry_at", "last_error", "replay_of", "created_at",
                  "sent_at", "failed_at"]
        read_only_fields = fields

    def get_event_id(self, message: Message) -> str:
        return str((message.metadata or {}).get(EVENT_ID_FIELD, ""))

    def get_event_type(self, message: Message) -> str:
        return str((message.metadata or {}).get(EVENT_TYPE_FIELD, ""))

    def _last(self, message: Message) -> DeliveryAttempt | None:
        attempts = list(message.delivery_attempts.all())
        return attempts[-1] if attempts else None

    def get_response_code(self, message: Message) -> int | None:
        last = self._last(message)
        return last.status_code if last else None

    def get_latency_ms(self, message: Message) -> float | None:
        last = self._last(message)
        if last is None or last.finished_at is None:
            return None
        return round((last.finished_at - last.started_at).total_seconds() * 1000, 1)

    # A date-time like every other (format and "Z" as DateTimeField writes them), not text.
    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_retry_at(self, message: Message) -> str | None:
        if message.status != MessageStatus.RETRYING or message.due_at is None:
            return None
        return serializers.DateTimeField().to_representation(message.due_at)


class DeliveryFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=MessageStatus.choices)
    event_type = django_filters.ChoiceFilter(
        choices=[(name, name) for name in EVENT_TYPES], method="filter_event_type")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Message
        fields = ["status"]

    def filter_event_type(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return queryset.filter(**{f"metadata__{EVENT_TYPE_FIELD}": value})


# The delivery log's query parameters as the schema lists them: DeliveryFilter's, not the
# endpoint list's (enabled, search, ordering), which the log does not read.
DELIVERY_QUERY = [
    OpenApiParameter("status", str, enum=MessageStatus.values, many=True),
    OpenApiParameter("event_type", str, enum=list(EVENT_TYPES)),
    OpenApiParameter("created_after", OpenApiTypes.DATETIME),
    OpenApiParameter("created_before", OpenApiTypes.DATETIME),
]


class ReplaySerializer(serializers.Serializer):
    since = serializers.DateTimeField()


class ReplayedSerializer(serializers.Serializer):
    """The answer to a replay: how many deliveries were made again, and their ids."""

    count = serializers.IntegerField()
    deliveries = serializers.ListField(child=serializers.UUIDField())


class WebhookEndpointViewSet(WorkspaceScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                             mixins.CreateModelMixin, mixins.UpdateModelMixin,
                             mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Webhook endpoints of the key's workspace."""

    serializer_class = WebhookEndpointSerializer
    filterset_fields = ["enabled"]
    ordering_fields = ["created_at"]
    search_fields = ["url", "description"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    model = WebhookEndpoint

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[WebhookEndpoint]:
        return webhook_endpoints_list(workspace=workspace)

    @extend_schema(responses={201: WebhookEndpointCreatedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create an endpoint; the answer carries its secret, shown this once."""
        serializer = WebhookEndpointSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = serializer.save(workspace=self.workspace)
        return Response(WebhookEndpointCreatedSerializer(endpoint).data,
                        status=status.HTTP_201_CREATED)

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        enabled = serializer.validated_data.pop("enabled", None)
        with transaction.atomic():
            endpoint = serializer.save()
            if enabled is False and endpoint.enabled:
                endpoint_disable(endpoint=endpoint)
            elif enabled is True and not endpoint.enabled:
                endpoint_enable(endpoint=endpoint)

    def perform_destroy(self, instance: WebhookEndpoint) -> None:
        with transaction.atomic():
            endpoint_disable(endpoint=instance)  # cancels what is still pending
            instance.delete()

    @extend_schema(request=None, responses={200: SecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        """Give the endpoint a new secret; the old one also signs for 24 hours."""
        endpoint = self.get_object()
        with transaction.atomic():
            secret = endpoint_rotate_secret(endpoint=endpoint)
            audit(actor=actor_of(request, "api"), action="webhook_endpoint.rotate_secret",
                  workspace=endpoint.workspace_id, target_type="webhook_endpoint",
                  target_id=endpoint.pk)
        return Response(secret_answer(secret, endpoint.secret_rotated_at))

    @extend_schema(responses={200: DeliverySerializer(many=True)}, parameters=DELIVERY_QUERY)
    @action(detail=True, methods=["get"], filter_backends=[])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        """List the endpoint's deliveries, newest first (filter by status, event_type)."""
        endpoint = self.get_object()
        queryset = DeliveryFilter(request.query_params, queryset=deliveries_list(endpoint=endpoint))
        if not queryset.is_valid():
            raise ApiError(400, "Invalid filter.", fields=queryset.errors)
        page = self.paginate_queryset(queryset.qs)
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)

    @extend_schema(request=None, responses={201: DeliverySerializer})
    @action(detail=True, methods=["post"],
            url_path=r"deliveries/(?P<delivery_id>[0-9a-fA-F-]{32,36})/replay")
    def replay_one(self, request: Request, pk: str | None = None,
                   delivery_id: str = "") -> Response:
        """Send one delivery's event again (same event id, a new delivery)."""
        endpoint = self._enabled()
        delivery = endpoint.deliveries.filter(pk=delivery_id).first()
        if delivery is None:
            raise ApiError(404, "Unknown delivery.")
        copy = delivery_replay(delivery=delivery)
        return Response(DeliverySerializer(copy).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ReplaySerializer, responses={200: ReplayedSerializer})
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, pk: str | None = None) -> Response:
        """Replay every failed delivery created since `since` (at most 1000 per call)."""
        endpoint = self._enabled()
        serializer = ReplaySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        copies = deliveries_replay_failed(
            endpoint=endpoint, since=serializer.validated_data["since"], limit=REPLAY_LIMIT)
        return Response(ReplayedSerializer({"count": len(copies),
                                            "deliveries": [c.pk for c in copies]}).data)

    def _enabled(self) -> WebhookEndpoint:
        endpoint = self.get_object()
        if not endpoint.enabled:
            raise ApiError(409, "The endpoint is disabled; enable it to replay.",
                           code="endpoint_disabled")
        return endpoint


def secret_answer(secret: str, rotated_at: Any) -> dict[str, Any]:
    """Return the answer to a rotation: the new secret and how long the old one signs."""
    return {"secret": secret,
            "previous_secret_valid_until": (rotated_at + overlap()).isoformat()}
