"""GET /api/v1/recipients/{address}: what the workspace sent to one phone number or email
address in a time range, its consent, suppressions and frequency-cap counts."""
from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.auth import workspace_of
from messaging.api.serializers import MessageSerializer
from messaging.api.suppressions import SuppressionSerializer
from messaging.recipients.profile import recipient_profile
from messaging.selectors import recipient_normalize

# Without `since`, the page covers this many days before `until`.
DEFAULT_DAYS = 30
# The newest messages answered inline; the messages list pages through all of them.
RECENT_SHOWN = 20


class RangeSerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict) -> dict:
        attrs.setdefault("until", timezone.now())
        attrs.setdefault("since", attrs["until"] - timedelta(days=DEFAULT_DAYS))
        if attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"since": ["Must be before until."]})
        return attrs


class MessageCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    by_channel = serializers.DictField(child=serializers.IntegerField())


class ConsentSerializer(serializers.Serializer):
    contact_id = serializers.UUIDField(source="contact.pk")
    external_id = serializers.CharField(source="contact.external_id", allow_null=True)
    subscribed = serializers.BooleanField(help_text="The contact's consent flag for the list "
                                          "(sms_subscribed, email_subscribed).")


class CapCountSerializer(serializers.Serializer):
    list = serializers.CharField(source="list_name")
    cap = serializers.CharField(help_text="As the workspace's settings say it, e.g. 3/day.")
    limit = serializers.IntegerField()
    period_seconds = serializers.IntegerField()
    counted = serializers.IntegerField(help_text="Messages counted in the window now.")
    contact_id = serializers.UUIDField(allow_null=True, help_text="null: the address's own "
                                       "window (messages sent without a contact).")


class RecipientSerializer(serializers.Serializer):
    address = serializers.CharField(help_text="Normalised: E.164, or the email lowercased.")
    list = serializers.CharField(source="list_name", help_text="The suppression list the "
                                 "address is on: sms (covers mms) or email.")
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    messages = MessageCountsSerializer()
    recent_messages = MessageSerializer(many=True, help_text=(
        f"The newest {RECENT_SHOWN} of the range; GET /api/v1/messages?recipient=…"
        "&created_after=…&created_before=… pages through all."))
    consent = ConsentSerializer(many=True)
    suppressions = SuppressionSerializer(many=True)
    caps = CapCountSerializer(many=True)


class RecipientView(APIView):
    @extend_schema(responses=RecipientSerializer, parameters=[
        OpenApiParameter("address", OpenApiTypes.STR, OpenApiParameter.PATH,
                         description="A phone number (any way written) or an email address."),
        OpenApiParameter("since", OpenApiTypes.DATETIME, description=(
            f"Messages created at or after (default: {DEFAULT_DAYS} days before until).")),
        OpenApiParameter("until", OpenApiTypes.DATETIME,
                         description="Messages created before (default: now)."),
    ])
    def get(self, request: Request, address: str) -> Response:
        """Return everything sent to (or received from) the address in the range, counted
        by status and channel, with its consent, suppressions and frequency-cap counts."""
        try:
            normalized = recipient_normalize(address)
        except ValidationError as exc:
            raise serializers.ValidationError({"address": exc.messages}) from exc
        window = RangeSerializer(data=request.query_params)
        window.is_valid(raise_exception=True)
        profile = recipient_profile(workspace=workspace_of(request), address=normalized,
                                    **window.validated_data)
        return Response(RecipientSerializer({
            **vars(profile), "recent_messages": profile.messages[:RECENT_SHOWN],
            "messages": {"total": profile.total, "by_status": profile.by_status,
                         "by_channel": profile.by_channel}}).data)
