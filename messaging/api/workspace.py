"""The key's own workspace."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.auth import workspace_of
from messaging.models import Workspace


class WorkspaceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Workspace
        fields = ["id", "name", "slug", "timezone", "settings", "created_at"]


class WorkspaceView(APIView):
    @extend_schema(responses=WorkspaceSerializer)
    def get(self, request: Request) -> Response:
        """Return the workspace the API key belongs to."""
        return Response(WorkspaceSerializer(workspace_of(request)).data)
