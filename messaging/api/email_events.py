"""POST /api/v1/providers/email/events: bounces and complaints from an email provider
(the generic HTTP email API's event callback), authenticated with the workspace's API key."""
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
from messaging.channels import EMAIL
from messaging.incoming.email_events import BOUNCE, KINDS, WrongRecipient, email_event_record
from messaging.recipients.suppressions import normalize_address


class EmailEventSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=[(kind, kind) for kind in KINDS])
    address = StrictCharField(max_length=320)
    permanent = serializers.BooleanField(required=False)
    message_id = StrictCharField(max_length=200, required=False, allow_blank=True)

    def validate_address(self, value: str) -> str:
        try:
            return normalize_address(EMAIL, value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["type"] == BOUNCE and "permanent" not in attrs:
            raise serializers.ValidationError(
                {"permanent": ["Say whether the bounce is permanent (true) or soft (false)."]})
        return attrs


class EmailEventResultSerializer(serializers.Serializer):
    type = serializers.CharField()
    address = serializers.CharField()
    suppressed = serializers.CharField(help_text="The list reason added, or empty.")
    message = serializers.DictField(allow_null=True)


class EmailEventView(APIView):
    """Record one bounce or complaint: a hard bounce or a complaint suppresses every later
    email to the address; a soft bounce is accepted and changes nothing."""
    write_scope = Scope.SEND  # traffic, not configuration

    @extend_schema(request=EmailEventSerializer, responses={202: EmailEventResultSerializer})
    def post(self, request: Request) -> Response:
        serializer = EmailEventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            outcome = email_event_record(
                workspace=workspace_of(request), kind=data["type"], address=data["address"],
                permanent=data.get("permanent", False), message_ref=data.get("message_id", ""))
        except WrongRecipient as exc:
            raise ApiError(400, str(exc), fields={"message_id": [str(exc)]}) from exc
        message = outcome.message
        return Response({
            "type": data["type"], "address": data["address"], "suppressed": outcome.suppressed,
            "message": {"id": str(message.pk), "status": message.status} if message else None,
        }, status=status.HTTP_202_ACCEPTED)
