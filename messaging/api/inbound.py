"""POST /api/v1/inbound: an incoming SMS/MMS handed over with an API key (the generic HTTP
SMS provider's webhook, and tests). The key speaks for its own workspace only: the message
goes there, unless another workspace owns the receiving number (403)."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiError, StrictCharField
from core.auth import workspace_of
from core.models import Scope
from core.phones import normalize_phone
from messaging.api.idempotency import idempotent
from messaging.api.messages import MessageSerializer
from messaging.channels import MMS, SMS
from messaging.incoming.inbound import Received, inbound_receive, owners, route_to


class PhoneField(StrictCharField):
    """A phone number, answered in E.164."""

    def to_internal_value(self, data: Any) -> str:
        try:
            return normalize_phone(super().to_internal_value(data))
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


class InboundSerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        """Return the fields ("from" is a Python keyword, so they are not attributes)."""
        return {
            "channel": serializers.ChoiceField(choices=[SMS, MMS]),
            "from": PhoneField(max_length=40),
            "to": PhoneField(max_length=40),
            "body": StrictCharField(max_length=1600, required=False, allow_blank=True,
                                    trim_whitespace=False, default=""),
            "media_urls": serializers.ListField(
                child=serializers.URLField(max_length=2048), max_length=10, required=False,
                default=list),
            # No default: "" would be a default the field itself refuses (minLength 1),
            # which openapi-spec-validator rejects; absent reads as "" in post().
            "provider_message_id": StrictCharField(max_length=200, required=False),
        }

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["channel"] == SMS and attrs["media_urls"]:
            raise serializers.ValidationError({"media_urls": ["An sms has no media: use mms."]})
        if attrs["channel"] == SMS and not attrs["body"].strip():
            raise serializers.ValidationError({"body": ["An sms needs a body."]})
        if attrs["channel"] == MMS and not attrs["media_urls"]:
            raise serializers.ValidationError({"media_urls": ["An mms needs media."]})
        return attrs


class InboundView(APIView):
    """Receive an SMS/MMS into the key's workspace: stored, then a keyword or an event."""

    write_scope = Scope.SEND  # traffic, not configuration

    @extend_schema(request=InboundSerializer, responses={201: None, 200: None})
    def post(self, request: Request) -> Response:
        return idempotent(request, lambda: self._receive(request))

    def _receive(self, request: Request) -> Response:
        serializer = InboundSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        workspace = workspace_of(request)
        owned = owners(to=data["to"])
        if owned and workspace not in owned:
            raise ApiError(403, f"{data['to']} is another workspace's number.",
                           fields={"to": ["Another workspace owns this number."]})
        received = Received(channel=data["channel"], sender=data["from"], to=data["to"],
                            body=data["body"], media_urls=tuple(data["media_urls"]),
                            provider="api",
                            provider_message_id=data.get("provider_message_id", ""))
        outcome = inbound_receive(received=received, route=route_to(workspace))
        return Response({
            "message": MessageSerializer(outcome.messages[0]).data,
            "keyword": outcome.keyword,
            "reply_id": str(outcome.reply.pk) if outcome.reply else None,
            "events": outcome.events, "duplicate": outcome.duplicate,
        }, status=status.HTTP_200_OK if outcome.duplicate else status.HTTP_201_CREATED)
