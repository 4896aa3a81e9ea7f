"""The key's own workspace."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.auth import workspace_of
from core.models import Workspace
from core.services import workspace_rotate_webhook_secret
from messaging.api.webhook_endpoints import SecretSerializer, secret_answer

SECRET_WORDS = ("token", "key", "password", "secret")


def mask_secrets(value: Any) -> Any:
    """Return settings with credentials replaced by "***" (API keys must not read them)."""
    if isinstance(value, dict):
        return {k: "***" if isinstance(k, str) and any(w in k.lower() for w in SECRET_WORDS)
                and v else mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


class WorkspaceSerializer(serializers.ModelSerializer):
    settings = serializers.SerializerMethodField()

    class Meta:
        model = Workspace
        fields = ["id", "name", "slug", "timezone", "settings", "created_at"]

    def get_settings(self, workspace: Workspace) -> dict:
        return mask_secrets(workspace.settings or {})


class WorkspaceView(APIView):
    @extend_schema(responses=WorkspaceSerializer)
    def get(self, request: Request) -> Response:
        """Return the workspace the API key belongs to."""
        return Response(WorkspaceSerializer(workspace_of(request)).data)


class WebhookSecretRotateView(APIView):
    @extend_schema(request=None, responses=SecretSerializer)
    def post(self, request: Request) -> Response:
        """Rotate the secret that signs the webhook channel's messages; the old one also
        signs for 24 hours."""
        workspace = workspace_of(request)
        secret = workspace_rotate_webhook_secret(workspace=workspace)
        return Response(secret_answer(secret, workspace.webhook_secret_rotated_at))
