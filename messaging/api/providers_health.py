"""GET /api/v1/providers/health: the state of the workspace's providers."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.auth import workspace_of
from messaging.providers import breaker
from messaging.providers.health import provider_health


class ProviderHealthSerializer(serializers.Serializer):
    channel = serializers.CharField(read_only=True, help_text="The providers key (sms covers mms).")
    position = serializers.IntegerField(read_only=True, help_text="0: tried first.")
    name = serializers.CharField(read_only=True)
    state = serializers.ChoiceField(choices=breaker.STATES,
                                    read_only=True)
    consecutive_failures = serializers.IntegerField(read_only=True)
    opened_at = serializers.DateTimeField(read_only=True, allow_null=True)
    sent = serializers.IntegerField(read_only=True, help_text="This workspace's accepted calls.")
    failed = serializers.IntegerField(read_only=True, help_text="This workspace's failed calls.")
    latency_p50_ms = serializers.FloatField(read_only=True, allow_null=True)
    latency_p95_ms = serializers.FloatField(read_only=True, allow_null=True)


class ProvidersHealthSerializer(serializers.Serializer):
    providers = ProviderHealthSerializer(many=True, read_only=True)


class ProvidersHealthView(APIView):
    @extend_schema(responses=ProvidersHealthSerializer)
    def get(self, request: Request) -> Response:
        """Return each provider's circuit breaker state, in failover order per channel, with
        this workspace's sent and failed counts and recent latency percentiles."""
        rows = provider_health(workspace=workspace_of(request))
        return Response(ProvidersHealthSerializer({"providers": rows}).data)
