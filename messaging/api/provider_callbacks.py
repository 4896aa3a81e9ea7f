"""Provider webhooks: Twilio's delivery status callback and incoming messages."""
from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.http import HttpResponse, QueryDict
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import parsers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiError
from core.models import Workspace
from messaging.channels import MMS, SMS
from messaging.incoming.inbound import (
    Received,
    Route,
    inbound_receive,
    owners,
    phone_or_raw,
    route_owned,
    route_shared,
)
from messaging.models import Message
from messaging.providers import twilio
from messaging.providers.registry import provider_named, workspace_override
from messaging.transitions import RECEIPT_STATUSES, receipt_apply

logger = logging.getLogger(__name__)


def bad_signature() -> ApiError:
    """Return the 403 every Twilio webhook answers to a request it cannot verify."""
    return ApiError(403, "Invalid X-Twilio-Signature.", code="bad_signature")


def twilio_signed(request: Request, auth_token: str) -> bool:
    """Return whether the request carries Twilio's signature made with this auth token,
    over the URL Twilio called (PUBLIC_BASE_URL's, behind a proxy) and the form fields."""
    url = request.build_absolute_uri()
    if settings.PUBLIC_BASE_URL:
        url = settings.PUBLIC_BASE_URL.rstrip("/") + request.get_full_path()
    params: dict[str, str | list[str]] = {key: request.POST.getlist(key)
                                          for key in request.POST}
    signature = request.headers.get("X-Twilio-Signature", "")
    return twilio.validate_signature(auth_token, url, params, signature)


class TwilioStatusView(APIView):
    """Twilio's StatusCallback: verified by X-Twilio-Signature, updates delivery status."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []
    parser_classes = [parsers.FormParser]

    @extend_schema(request=None, responses={204: None, 403: None, 404: None})
    def post(self, request: Request) -> Response:
        message = self._message(request)
        # The provider that sent it (failover may have passed over the first).
        _, config = provider_named(message.workspace, message.channel, message.provider)
        if not twilio_signed(request, config.get("auth_token", "")):
            raise bad_signature()
        status = twilio.STATUS_MAP.get(request.POST.get("MessageStatus", ""))
        if status in RECEIPT_STATUSES:
            # Only forward from sent (messaging.transitions), with its event.
            now = timezone.now()
            fields = {"delivered_at": now} if status == "delivered" else {
                "last_error": f"Twilio error {request.POST.get('ErrorCode', '')}".strip(),
                "error_code": request.POST.get("ErrorCode", "")}
            receipt_apply(message=message, status=status, fields=fields, now=now, report={
                "source": "twilio", "reported": request.POST.get("MessageStatus", ""),
                "error_code": request.POST.get("ErrorCode", "")})
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


# Twilio sends the TwiML answer's messages itself; an empty one asks for nothing (replies go
# out through the pipeline like any message, recorded and retried).
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
# Twilio sends at most 10 media items per message (NumMedia, MediaUrl0..MediaUrl9).
MAX_MEDIA = 10


def received_from_twilio(form: QueryDict) -> Received:
    """Return the incoming message described by Twilio's webhook form fields."""
    try:
        count = max(0, min(int(form.get("NumMedia") or 0), MAX_MEDIA))
    except ValueError:
        count = 0
    media = tuple(url for index in range(count) if (url := form.get(f"MediaUrl{index}", "")))
    return Received(channel=MMS if media else SMS, sender=phone_or_raw(form.get("From")),
                    to=phone_or_raw(form.get("To")), body=form.get("Body", ""),
                    media_urls=media, provider="twilio",
                    provider_message_id=form.get("MessageSid", ""),
                    messaging_service_sid=form.get("MessagingServiceSid", ""))


def twilio_token(workspace: Workspace) -> str:
    """Return the auth token Twilio signs a workspace's webhooks with: its own account's,
    else the environment's (as the status callback's provider config resolves it)."""
    token = workspace_override(workspace, SMS, "twilio").get("auth_token")
    return token if isinstance(token, str) and token else settings.TWILIO_AUTH_TOKEN


class TwilioInboundView(APIView):
    """Twilio's incoming-message webhook: verified by X-Twilio-Signature with the token of
    the workspaces owning the number (the environment's for the shared number), stored and
    acted on (messaging.incoming.inbound); always answered with empty TwiML once verified."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []
    parser_classes = [parsers.FormParser]

    @extend_schema(request=None, responses={(200, "text/xml"): str, 403: None})
    def post(self, request: Request) -> HttpResponse:
        received = received_from_twilio(request.POST)
        route = self._route(request, received)
        outcome = inbound_receive(received=received, route=route)
        if not route.workspaces:
            # Answer 200 all the same: an error would only make Twilio report or retry it.
            logger.warning("inbound %s from %s to %s matches no workspace (keyword: %s)",
                           received.provider_message_id, received.sender, received.to,
                           outcome.keyword)
        return HttpResponse(EMPTY_TWIML, content_type="text/xml")

    def _route(self, request: Request, received: Received) -> Route:
        """Route by the receiving number, after checking the signature with the token of
        whoever it routes to (a workspace claiming a number it cannot sign for gets
        nothing); raise 403 when no candidate's token verifies it."""
        owned = owners(to=received.to, messaging_service_sid=received.messaging_service_sid)
        if owned:
            verified = [w for w in owned if twilio_signed(request, twilio_token(w))]
            if not verified:
                raise bad_signature()
            return route_owned(verified, received.sender)
        if not twilio_signed(request, settings.TWILIO_AUTH_TOKEN):
            raise bad_signature()
        return route_shared(received.sender)
