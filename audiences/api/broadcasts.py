"""Broadcasts REST API: create (and launch), list, follow, send a draft, cancel (README.md,
"Broadcasts")."""
from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audiences import broadcasts
from audiences.models import Broadcast, Segment
from audiences.selectors import broadcasts_list
from core.api import ApiError, PageRead, StrictCharField, WorkspaceScoped
from core.audit import actor_of
from core.models import Scope, Workspace
from messaging.api.idempotency import idempotent
from messaging.channels import CHANNELS
from messaging.models import Category


class BroadcastCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200)
    channel = serializers.ChoiceField(choices=sorted(CHANNELS))
    content = serializers.JSONField(
        required=False, default=dict,
        help_text="The channel's content fields, as for POST /api/v1/messages "
                  '(e.g. {"body": "Hi {{ contact.first_name }}"}).')
    template = serializers.UUIDField(
        required=False, help_text="Instead of content: a template of the channel (its "
        "current version, each contact getting the variant for their locale).")
    category = serializers.ChoiceField(choices=Category.choices, default=Category.MARKETING)
    contact_ids = serializers.ListField(child=serializers.UUIDField(), required=False,
                                        max_length=1_000_000, allow_empty=False,
                                        help_text="The audience; a contact listed twice "
                                                  "gets one message.")
    rules = serializers.JSONField(
        required=False, help_text="The audience instead of contact_ids: every contact "
        "matching these rules (the flows' condition language over contact.*).")
    segment_id = serializers.UUIDField(
        required=False, help_text="The audience instead of contact_ids or rules: the "
        "segment's contacts (its rules as they are when the broadcast is made).")
    send_at = serializers.DateTimeField(required=False, allow_null=True)
    throttle = serializers.CharField(required=False, allow_blank=True, max_length=40,
                                     help_text='The most messages per period, e.g. '
                                               '"1000/min", "50/s"; blank: no limit.')
    draft = serializers.BooleanField(default=False,
                                     help_text="Keep it as a draft: POST .../send launches it.")


class BroadcastStatsSerializer(serializers.Serializer):
    targeted = serializers.IntegerField(help_text="messages made (one per contact)")
    skipped = serializers.IntegerField(help_text="contacts without an address on the channel")
    pending = serializers.IntegerField(help_text="messages not finished yet")
    sent = serializers.IntegerField(help_text="handed to the provider, no receipt yet")
    delivered = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="failed or undelivered")
    suppressed = serializers.IntegerField(help_text="refused by the pre-send policy")
    cancelled = serializers.IntegerField()
    progress = serializers.FloatField(help_text="0 to 1: messages finished of all the "
                                                "broadcast makes (an estimate until made)")


class BroadcastSerializer(serializers.ModelSerializer):
    stats = serializers.SerializerMethodField()
    template_id = serializers.UUIDField(source="template_version.template_id", read_only=True,
                                        allow_null=True, default=None,
                                        help_text="the template its messages take, or null")
    template_version = serializers.IntegerField(source="template_version.number",
                                                read_only=True, allow_null=True, default=None,
                                                help_text="the template's version they take")
    # The page's stats, when a list answers (PageRead).
    stats_counted: dict[Any, dict[str, Any]] | None = None
    segment_id = serializers.UUIDField(
        read_only=True, allow_null=True,
        help_text="the segment the audience came from (null once deleted, or none)")

    class Meta:
        model = Broadcast
        fields = ["id", "name", "status", "channel", "content", "template_id",
                  "template_version", "category", "contact_ids",
                  "rules", "segment_id", "send_at", "throttle", "stats", "created_at",
                  "launched_at", "completed_at", "cancelled_at"]
        read_only_fields = fields
        list_serializer_class = PageRead

    def page_read(self, rows: list[Broadcast]) -> None:
        """Count the page's stats in one query."""
        self.stats_counted = broadcasts.stats_of_many(rows)

    @extend_schema_field(BroadcastStatsSerializer)
    def get_stats(self, broadcast: Broadcast) -> dict[str, Any]:
        counted = self.stats_counted or {}
        return counted.get(broadcast.pk) or broadcasts.stats_of(broadcast)


class BroadcastFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Broadcast.Status.choices)
    channel = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Broadcast
        fields = ["status", "channel"]


class BroadcastViewSet(WorkspaceScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                       viewsets.GenericViewSet):
    """The key's workspace's broadcasts."""

    serializer_class = BroadcastSerializer
    filterset_class = BroadcastFilter
    ordering_fields = ["created_at", "name"]
    search_fields = ["name"]
    write_scope = Scope.SEND  # sending, not configuration

    model = Broadcast

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[Broadcast]:
        return broadcasts_list(workspace=workspace)

    @extend_schema(request=BroadcastCreateSerializer, responses={201: BroadcastSerializer})
    def create(self, request: Request) -> Response:
        """Create a broadcast and launch it (unless `draft`); its messages are made in the
        background and sent at the throttle's pace."""
        def handler() -> Response:
            serializer = BroadcastCreateSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            ids = data.get("contact_ids")
            segment = None
            if "segment_id" in data:
                segment = Segment.objects.filter(workspace=self.workspace,
                                                 pk=data["segment_id"]).first()
                if segment is None:
                    raise ApiError(400, "Invalid input.", fields={
                        "segment_id": ["No such segment in this workspace."]})
            try:
                broadcast = broadcasts.broadcast_create(
                    workspace=self.workspace, name=data["name"], channel=data["channel"],
                    content=data["content"], category=data["category"],
                    contact_ids=[str(pk) for pk in ids] if ids is not None else None,
                    rules=data.get("rules"), segment=segment, send_at=data.get("send_at"),
                    throttle=data.get("throttle", ""), draft=data["draft"],
                    template=data.get("template"), actor=actor_of(request, "api"))
            except broadcasts.BroadcastInvalid as exc:
                raise ApiError(400, "Invalid input.", fields=exc.fields) from exc
            return Response(self.get_serializer(broadcast).data, status=201)
        return idempotent(request, handler)

    @extend_schema(request=None, responses={200: BroadcastSerializer})
    @action(detail=True, methods=["post"])
    def send(self, request: Request, pk: str | None = None) -> Response:
        """Launch a draft (409 for any other status)."""
        broadcast = self.get_object()
        try:
            broadcast = broadcasts.broadcast_launch(broadcast=broadcast)
        except broadcasts.NotLaunchable as exc:
            raise ApiError(409, str(exc), code="not_a_draft") from exc
        return Response(self.get_serializer(broadcast).data)

    @extend_schema(request=None, responses={200: BroadcastSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel the broadcast: no more messages are made, and those not yet handed to a
        provider are cancelled (409 once it has ended)."""
        broadcast = self.get_object()
        try:
            broadcast = broadcasts.broadcast_cancel(broadcast=broadcast,
                                                    actor=actor_of(request, "api"))
        except broadcasts.NotCancellable as exc:
            raise ApiError(409, str(exc), code="not_cancellable") from exc
        return Response(self.get_serializer(broadcast).data)
