"""The audit log of the key's workspace: GET /api/v1/audit-log (newest first, paginated)."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import WorkspaceScoped
from core.models import AuditEntry, Workspace
from monitoring.selectors import audit_entries


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["id", "created_at", "actor", "source", "ip", "action", "target_type",
                  "target_id", "detail"]
        read_only_fields = fields


class AuditFilterSerializer(serializers.Serializer):
    action = serializers.CharField(required=False, max_length=50)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class AuditLogViewSet(WorkspaceScoped, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Who paused, resumed, replayed, discarded, cancelled or changed settings."""

    serializer_class = AuditEntrySerializer
    filter_backends: list = []

    model = AuditEntry

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[AuditEntry]:
        filters = AuditFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        return audit_entries(workspace=workspace,
                             action=values.get("action", ""),
                             after=values.get("created_after"),
                             before=values.get("created_before"))

    @extend_schema(parameters=[
        OpenApiParameter("action", OpenApiTypes.STR,
                         description="queue.pause, message.cancel, ... (exact)"),
        OpenApiParameter("created_after", OpenApiTypes.DATETIME),
        OpenApiParameter("created_before", OpenApiTypes.DATETIME)])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """List the workspace's audit entries, newest first, filtered and paginated."""
        return super().list(request, *args, **kwargs)
