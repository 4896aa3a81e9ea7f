"""Delivery status callbacks from providers."""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import parsers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiError
from messaging import events
from messaging.models import Message, MessageStatus
from messaging.providers import twilio
from messaging.providers.registry import provider_for

# A status callback may only move a message forward from `sent`.
FINAL_FROM = {
    "delivered": (MessageStatus.SENT, MessageStatus.UNDELIVERED),
    "undelivered": (MessageStatus.SENT,),
}


class TwilioStatusView(APIView):
    """Twilio's StatusCallback: verified by X-Twilio-Signature, updates delivery status."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []
    parser_classes = [parsers.FormParser]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        message = self._message(request)
        _, config = provider_for(message.workspace, message.channel)
        url = request.build_absolute_uri()
        if settings.PUBLIC_BASE_URL:
            url = settings.PUBLIC_BASE_URL.rstrip("/") + request.get_full_path()
        params: dict[str, str | list[str]] = {key: request.POST.getlist(key)
                                              for key in request.POST}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not twilio.validate_signature(config.get("auth_token", ""), url, params, signature):
            raise ApiError(403, "Invalid X-Twilio-Signature.", code="bad_signature")
        status = twilio.STATUS_MAP.get(request.POST.get("MessageStatus", ""))
        if status in FINAL_FROM:
            now = timezone.now()
            fields = {"delivered_at": now} if status == "delivered" else {
                "last_error": f"Twilio error {request.POST.get('ErrorCode', '')}".strip(),
                "error_code": request.POST.get("ErrorCode", "")}
            with transaction.atomic():
                if Message.objects.filter(pk=message.pk, status__in=FINAL_FROM[status]).update(
                        status=status, updated_at=now, **fields):
                    events.messages_emit(changes=[(message, f"message.{status}")])
        return Response(status=204)

    def _message(self, request: Request) -> Message:
        ref = request.query_params.get("message_id", "")
        queryset = Message.objects.select_related("workspace")
        try:
            message = queryset.filter(pk=uuid.UUID(ref)).first()
        except ValueError:
            sid = request.POST.get("MessageSid", "")
            message = queryset.filter(provider_message_id=sid).first() if sid else None
        if message is None:
            raise ApiError(404, "Unknown message.")
        return message
