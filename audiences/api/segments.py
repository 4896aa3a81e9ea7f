"""Segments REST API: named audiences by rules, with a live count and a preview
(README.md, "Segments")."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audiences import segments
from audiences.models import Segment
from audiences.selectors import segments_list
from core.api import ApiError, StrictCharField, WorkspaceScoped
from core.audit import actor_of
from core.models import Workspace
from messaging.api.contacts import ContactSerializer
from messaging.api.idempotency import idempotent

RULES_HELP = ("The flows' condition language over contact.* (fields, attributes, "
              "consent.sms and consent.email); an item {\"segment\": \"<id>\"} stands for "
              "another segment's rules.")


class SegmentSerializer(serializers.ModelSerializer):
    name = StrictCharField(max_length=200)
    rules = serializers.JSONField(help_text=RULES_HELP)

    class Meta:
        model = Segment
        fields = ["id", "name", "rules", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class SegmentUpdateSerializer(SegmentSerializer):
    name = StrictCharField(max_length=200, required=False)
    rules = serializers.JSONField(required=False, help_text=RULES_HELP)


class SegmentPreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="contacts matching the rules now")
    contacts = ContactSerializer(many=True, help_text="the first 20 of them, in id order")


class SegmentViewSet(WorkspaceScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                     viewsets.GenericViewSet):
    """The key's workspace's segments."""

    serializer_class = SegmentSerializer
    filterset_fields: list[str] = []
    ordering_fields = ["name", "created_at"]
    search_fields = ["name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    model = Segment

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[Segment]:
        return segments_list(workspace=workspace)

    @extend_schema(request=SegmentSerializer, responses={201: SegmentSerializer})
    def create(self, request: Request) -> Response:
        """Create a segment (400 naming `rules` for bad rules, an unknown segment or a
        cycle; `name` for one taken). Honours Idempotency-Key."""
        def handler() -> Response:
            serializer = SegmentSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            try:
                segment = segments.segment_create(workspace=self.workspace, name=data["name"],
                                                  rules=data["rules"],
                                                  actor=actor_of(request, "api"))
            except segments.SegmentInvalid as exc:
                raise ApiError(400, "Invalid input.", fields=exc.fields) from exc
            return Response(SegmentSerializer(segment).data, status=201)
        return idempotent(request, handler)

    @extend_schema(request=SegmentUpdateSerializer, responses={200: SegmentSerializer})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        """Rename a segment or change its rules (checked as on create)."""
        segment = self.get_object()
        serializer = SegmentUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            segment = segments.segment_update(segment=segment, name=data.get("name"),
                                              rules=data.get("rules"),
                                              actor=actor_of(request, "api"))
        except segments.SegmentInvalid as exc:
            raise ApiError(400, "Invalid input.", fields=exc.fields) from exc
        return Response(SegmentSerializer(segment).data)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Delete a segment (409 while another segment includes it; broadcasts made from it
        keep their rules)."""
        segment = self.get_object()
        try:
            segments.segment_delete(segment=segment, actor=actor_of(request, "api"))
        except segments.SegmentInUse as exc:
            raise ApiError(409, str(exc), code="segment_in_use") from exc
        return Response(status=204)

    @extend_schema(responses={200: SegmentPreviewSerializer})
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def preview(self, request: Request, pk: str | None = None) -> Response:
        """Count the segment's contacts now and show the first 20."""
        segment = self.get_object()
        count, first = segments.segment_preview(segment=segment)
        data: dict[str, Any] = {"count": count, "contacts": first}
        return Response(SegmentPreviewSerializer(data).data)
