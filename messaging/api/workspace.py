"""The key's own workspace: read it, and change its name, time zone and settings."""
from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiError, StrictCharField
from core.audit import actor_of, audit
from core.auth import workspace_of
from core.models import Workspace
from core.services import workspace_rotate_webhook_secret, workspace_update
from core.workspace_settings import SettingsInvalid, mask_secrets
from messaging.api.webhook_endpoints import SecretSerializer, secret_answer


class WorkspaceSerializer(serializers.ModelSerializer):
    settings = serializers.SerializerMethodField()

    class Meta:
        model = Workspace
        fields = ["id", "name", "slug", "timezone", "settings", "created_at"]

    def get_settings(self, workspace: Workspace) -> dict:
        return mask_secrets(workspace.settings or {})


class WorkspacePatchSerializer(serializers.Serializer):
    """What PATCH takes: every field optional; settings are checked by the service."""

    name = StrictCharField(required=False, max_length=200)
    timezone = StrictCharField(required=False, max_length=64)
    # A JSONField, not a DictField: the service names every bad path itself.
    settings = serializers.JSONField(required=False)

    def validate(self, attrs: dict) -> dict:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


class WorkspaceView(APIView):
    @extend_schema(responses=WorkspaceSerializer)
    def get(self, request: Request) -> Response:
        """Return the workspace the API key belongs to."""
        return Response(WorkspaceSerializer(workspace_of(request)).data)

    @extend_schema(request=WorkspacePatchSerializer, responses=WorkspaceSerializer)
    def patch(self, request: Request) -> Response:
        """Change the name, time zone or settings (a partial update: null removes a key)."""
        if not isinstance(request.data, dict):
            raise ApiError(400, "Expected a JSON object.")
        serializer = WorkspacePatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "settings" in data and not isinstance(data["settings"], dict):
            raise ApiError(400, "settings: Must be a JSON object.",
                           fields={"settings": ["Must be a JSON object."]})
        try:
            workspace = workspace_update(
                workspace=workspace_of(request), name=data.get("name"),
                timezone_name=data.get("timezone"), settings_changes=data.get("settings"),
                actor=actor_of(request, "api"))
        except SettingsInvalid as exc:
            first = next(iter(exc.fields.items()))
            raise ApiError(400, f"{first[0]}: {first[1][0]}", fields=exc.fields) from exc
        return Response(WorkspaceSerializer(workspace).data)

class WebhookSecretRotateView(APIView):
    @extend_schema(request=None, responses=SecretSerializer)
    def post(self, request: Request) -> Response:
        """Rotate the secret that signs the webhook channel's messages; the old one also
        signs for 24 hours."""
        workspace = workspace_of(request)
        with transaction.atomic():
            secret = workspace_rotate_webhook_secret(workspace=workspace)
            audit(actor=actor_of(request, "api"), action="webhook_secret.rotate",
                  workspace=workspace, target_type="workspace", target_id=workspace.pk)
        return Response(secret_answer(secret, workspace.webhook_secret_rotated_at))
