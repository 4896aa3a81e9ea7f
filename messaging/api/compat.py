"""Endpoints in the shape of the older queue service, for its existing clients.

POST /api/schedule-sms, /api/schedule-email, /api/schedule-job and GET /api/job-status/{id}
answer `{"success": true, "jobId", "scheduledTime", "status", "ignored_fields"}` and run
through the same pipeline as /api/v1/messages. Fields an endpoint does not take are ignored,
as the older service did, but named in `ignored_fields` (always present, sorted, [] when
none) so a client can see that they changed nothing. A `workspaceId` that is not the API
key's (its id, slug or one of its `compat_workspace_ids`) answers 403.
"""
from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiError
from core.auth import workspace_of
from core.models import Contact, Scope
from core.workspace_settings import (
    CALLBACK_BASE_URL,
    CALLBACK_SHAPES,
    callback_base_url,
    compat_callback_shape,
    compat_workspace_ids,
    is_plain_id,
)
from messaging.api.idempotency import idempotent
from messaging.api.messages import error_fields, origin_of
from messaging.channels import EMAIL, MMS, SMS, WEBHOOK
from messaging.compose import MAX_DELAY_SECONDS, message_compose, metadata_key_reserved
from messaging.delivery import creation
from messaging.models import Message, MessageStatus
from messaging.providers.shared import CALLBACK_SHAPE_FIELD, COMPAT_IDS

# The older service's job states (BullMQ) for each message status.
JOB_STATES: dict[str, str] = {
    MessageStatus.SCHEDULED: "delayed", MessageStatus.RETRYING: "delayed",
    MessageStatus.QUEUED: "waiting", MessageStatus.SENDING: "active",
    MessageStatus.SENT: "completed", MessageStatus.DELIVERED: "completed",
    MessageStatus.UNDELIVERED: "failed", MessageStatus.FAILED: "failed",
    MessageStatus.CANCELLED: "cancelled",
    # Refused by the recipients' rules: the job ended without a send (error says why).
    MessageStatus.SUPPRESSED: "failed",
    MessageStatus.RECEIVED: "completed",
}
# Old field names for the v1 ones, to report errors in the client's own words.
OLD_NAMES = {"body": "message", "delay_seconds": "delay", "media_urls": "mediaUrl",
             "contact_id": "contactId", "url": "callbackEndpoint", "payload": "data",
             "send_at": "scheduledFor", "status_callback_url": "callbackUrl"}
# The fields each endpoint takes; any other is ignored and named in `ignored_fields`.
SMS_FIELDS = frozenset({"to", "phoneNumber", "message", "contactId", "workspaceId", "delay",
                        "scheduledFor", "metadata", "mediaUrl", "callbackUrl"})
EMAIL_FIELDS = frozenset({"to", "subject", "html", "text", "contactId", "workspaceId",
                          "delay", "scheduledFor", "metadata", "callbackUrl"})
JOB_FIELDS = frozenset({"type", "data", "callbackEndpoint", "delay", "callbackShape"})
# The ids the older engine's flat job callback carries at its top level, taken from `data`.
FLAT_JOB_IDS = ("nodeId", "executionId", "flowId", "contactId", "workspaceId")
# An ISO 8601 date and time (the time part required: a bare date is no instant).
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _invalid(field: str, message: str) -> ApiError:
    """Return the 400 that names one field in the client's words."""
    return ApiError(400, "Invalid input.", fields={field: [message]})


def _check_workspace(request: Request, workspace_id: Any) -> None:
    """Refuse a workspaceId that names another tenant: the key's workspace is known by its
    id, its slug and the older client's own ids for it (setting compat_workspace_ids)."""
    if workspace_id in (None, ""):
        return
    if not is_plain_id(workspace_id):
        raise _invalid("workspaceId", "Must be a string or an integer.")
    workspace = workspace_of(request)
    known = {str(workspace.id), workspace.slug, *compat_workspace_ids(workspace)}
    if str(workspace_id) not in known:
        raise ApiError(403, "workspaceId does not match the API key's workspace.",
                       code="workspace_mismatch")


def _delay_ms(data: dict) -> float:
    """Return the older client's delay in milliseconds (null or absent: none)."""
    delay = data.get("delay", 0) or 0
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not (
            0 <= delay <= MAX_DELAY_SECONDS * 1000):
        raise _invalid("delay", f"Must be a number of milliseconds from 0 to "
                                f"{MAX_DELAY_SECONDS * 1000}.")
    return float(delay)


def _send_at(data: dict, *, scheduled_for: bool = True) -> dict[str, str]:
    """Return the v1 send_at for `delay` (ms from now) or `scheduledFor` (an ISO time; null
    is no schedule).

    As the older service did, a scheduledFor without an offset is UTC, and one already past
    sends at once. A delay other than 0 beside scheduledFor is refused (which one the client
    meant cannot be told); `delay: 0` is no delay, and QueueService.js sends it with every
    request.
    """
    when = data.get("scheduledFor") if scheduled_for else None
    if when is not None:
        if data.get("delay") not in (None, 0):
            raise _invalid("scheduledFor", "Give delay or scheduledFor, not both.")
        instant = _scheduled_for(when)
        return {"send_at": instant.isoformat()} if instant > timezone.now() else {}
    delay_ms = _delay_ms(data)
    if not delay_ms:
        return {}
    return {"send_at": (timezone.now() + timedelta(milliseconds=delay_ms)).isoformat()}


def _scheduled_for(when: Any) -> datetime:
    """Return the instant an older client's scheduledFor names (no offset: UTC)."""
    problem = _invalid("scheduledFor", "Must be an ISO 8601 date and time "
                                       "(2030-01-01T09:00:00+01:00, ...Z, or without an "
                                       "offset for UTC).")
    if not isinstance(when, str) or not ISO_DATETIME.match(when.strip()):
        raise problem
    try:
        instant = datetime.fromisoformat(when.strip())
    except ValueError:
        raise problem from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def _contact_ref(request: Request, contact_id: Any) -> dict:
    """Link our contact when the old contactId is one; otherwise keep it in metadata."""
    if not contact_id:
        return {}
    try:
        uuid.UUID(str(contact_id))
    except ValueError:
        return {}
    exists = Contact.objects.filter(workspace=workspace_of(request), pk=contact_id).exists()
    return {"contact_id": str(contact_id)} if exists else {}


def _client_ids(data: dict) -> dict[str, Any]:
    """Return the contactId and workspaceId the client sent, as sent, for providers to pass
    on (the older /send-sms contract carried the client's own ids)."""
    if data.get("contactId") is not None and not is_plain_id(data["contactId"]):
        raise _invalid("contactId", "Must be a string or an integer.")
    return {key: data[key] for key in ("contactId", "workspaceId")
            if data.get(key) not in (None, "")}


def _metadata(data: dict) -> dict:
    """Return the client's metadata with its contactId. Reserved keys (any starting with
    "_") the client put there itself are dropped, as the older service ignored what it did
    not know, rather than refused: its clients keep working; the ids it sent go in through
    `_compat_ids`."""
    metadata = data.get("metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise _invalid("metadata", "Must be an object.")
    metadata = {k: v for k, v in metadata.items() if not metadata_key_reserved(k)}
    if data.get("contactId"):
        metadata = {**metadata, "contactId": data["contactId"]}
    return metadata


def _compat_ids(data: dict) -> dict[str, Any]:
    """Return the reserved metadata holding the ids the client sent, as sent."""
    return {COMPAT_IDS: _client_ids(data)}


def _recipient(data: dict) -> dict[str, Any]:
    """Return the v1 `to` from `to`, or from `phoneNumber` (the older SMS schema's name)."""
    to, phone = data.get("to"), data.get("phoneNumber")
    if to and phone and to != phone:
        raise _invalid("phoneNumber", "Give to or phoneNumber, not two different numbers.")
    return {"to": to or phone} if (to or phone) else {}


def _callback_url(request: Request, endpoint: Any) -> Any:
    """Return the callback as given, or a relative one ("/api/job-completed", the older
    client's default) appended to the workspace's callback_base_url."""
    if not (isinstance(endpoint, str) and endpoint.startswith("/")
            and not endpoint.startswith("//")):
        return endpoint
    base = callback_base_url(workspace_of(request))
    if not base:
        raise _invalid("callbackEndpoint",
                       f"A relative URL needs the workspace setting {CALLBACK_BASE_URL}.")
    return base.rstrip("/") + endpoint


def _status_callback(data: dict) -> dict[str, Any]:
    """Return the v1 status_callback_url for the client's callbackUrl (its status events)."""
    url = data.get("callbackUrl")
    return {} if url in (None, "") else {"status_callback_url": url}


def _ignored(data: dict, known: frozenset[str]) -> list[str]:
    """Return the fields this endpoint does not take, sorted."""
    return sorted(set(data) - known)


def _schedule(request: Request, v1: dict, ignored: list[str], *, job: bool = False,
              reserved: dict[str, Any] | None = None,
              names: dict[str, str] = OLD_NAMES) -> Response:
    """Validate the translated payload like /api/v1/messages and create the message,
    reporting field errors under the client's `names` for the v1 ones.

    A job's callback carries its id ({jobId, type, data}) like the older service's did.
    """
    try:
        message = message_compose(workspace=workspace_of(request), data=v1, source="compat",
                                  reserved=reserved)
    except ValidationError as exc:
        fields = {names.get(k, k): v for k, v in error_fields(exc).items()}
        raise ApiError(400, "Invalid input.", fields=fields) from exc
    if job:
        message.content["payload"] = _job_body(message)
    creation.message_create_many(messages=[message], origin=origin_of(request))
    scheduled = message.scheduled_for or message.created_at
    return Response({"success": True, "jobId": str(message.id),
                     "scheduledTime": scheduled.isoformat().replace("+00:00", "Z"),
                     "status": JOB_STATES[message.status], "ignored_fields": ignored},
                    status=201)


def _job_shape(request: Request, data: dict) -> str:
    """Return the callback body a job asked for (callbackShape), else the workspace's."""
    shape = data.get("callbackShape")
    if shape is None:
        return compat_callback_shape(workspace_of(request))
    if shape not in CALLBACK_SHAPES:
        raise _invalid("callbackShape", f"Must be one of {', '.join(CALLBACK_SHAPES)}.")
    return str(shape)


def _job_body(message: Message) -> dict[str, Any]:
    """Return a job's callback body with its id: today's {jobId, type, data}, or the older
    engine's flat {jobId, result, nodeId, executionId, flowId, contactId, workspaceId}, whose
    ids come from `data` (null when it has none) and whose result is {type, data}."""
    job = message.content["payload"]
    if (message.metadata or {}).get(CALLBACK_SHAPE_FIELD) != "job_flat":
        return {"jobId": str(message.id), **job}
    ids = {name: job["data"].get(name) for name in FLAT_JOB_IDS}
    return {"jobId": str(message.id), "result": job, **ids}


def _body(request: Request) -> dict:
    if not isinstance(request.data, dict):
        raise ApiError(400, "Expected a JSON object.")
    return request.data


class CompatResponse(serializers.Serializer):
    success = serializers.BooleanField()
    jobId = serializers.CharField()  # noqa: N815 (the older service's field name)
    scheduledTime = serializers.DateTimeField()  # noqa: N815
    status = serializers.CharField()
    ignored_fields = serializers.ListField(child=serializers.CharField())


class ScheduleSmsView(APIView):
    write_scope = Scope.SEND  # sending, not configuration

    @extend_schema(request=None, responses={201: CompatResponse, 403: OpenApiResponse()})
    def post(self, request: Request) -> Response:
        """Schedule an SMS (MMS with mediaUrl): to (or phoneNumber), message, contactId,
        workspaceId, delay or scheduledFor (past: at once; no offset: UTC), metadata."""
        def handler() -> Response:
            data = _body(request)
            _check_workspace(request, data.get("workspaceId"))
            media = data.get("mediaUrl")
            media_urls = [media] if isinstance(media, str) else media
            metadata, reserved = _metadata(data), _compat_ids(data)
            v1 = {"channel": MMS if media_urls else SMS, "body": data.get("message"),
                  "metadata": metadata, **_contact_ref(request, data.get("contactId")),
                  **_send_at(data), **_status_callback(data)}
            v1.update(_recipient(data))
            if media_urls:
                v1["media_urls"] = media_urls
            return _schedule(request, v1, _ignored(data, SMS_FIELDS), reserved=reserved)
        return idempotent(request, handler)


class ScheduleEmailView(APIView):
    write_scope = Scope.SEND  # sending, not configuration

    @extend_schema(request=None, responses={201: CompatResponse})
    def post(self, request: Request) -> Response:
        """Schedule an email: to, subject, html, contactId, workspaceId, delay or
        scheduledFor, metadata."""
        def handler() -> Response:
            data = _body(request)
            _check_workspace(request, data.get("workspaceId"))
            metadata, reserved = _metadata(data), _compat_ids(data)
            v1 = {"channel": EMAIL, "subject": data.get("subject"),
                  "metadata": metadata, **_contact_ref(request, data.get("contactId")),
                  **_send_at(data), **_status_callback(data)}
            for field in ("html", "text"):
                if data.get(field) is not None:
                    v1[field] = data[field]
            if data.get("to"):
                v1["to"] = data["to"]
            return _schedule(request, v1, _ignored(data, EMAIL_FIELDS), reserved=reserved)
        return idempotent(request, handler)


class ScheduleJobView(APIView):
    write_scope = Scope.SEND  # sending, not configuration

    @extend_schema(request=None, responses={201: CompatResponse})
    def post(self, request: Request) -> Response:
        """Schedule a generic job: when due, POST {jobId, type, data} to callbackEndpoint
        (an absolute URL, or a path joined to the setting callback_base_url), signed like
        every webhook; callbackShape "flat" (or the setting compat_callback_shape) posts the
        older engine's {jobId, result, nodeId, executionId, flowId, contactId,
        workspaceId}."""
        def handler() -> Response:
            data = _body(request)
            job_data = data.get("data")
            if not isinstance(job_data, dict) or not data.get("type"):
                raise ApiError(400, "Invalid input.", fields={
                    **({} if data.get("type") else {"type": ["This field is required."]}),
                    **({} if isinstance(job_data, dict) else {"data": ["Must be an object."]})})
            _check_workspace(request, job_data.get("workspaceId"))
            shape = _job_shape(request, data)
            v1 = {"channel": WEBHOOK,
                  "url": _callback_url(request, data.get("callbackEndpoint")),
                  "payload": {"type": data["type"], "data": job_data},
                  "metadata": {"jobType": str(data["type"])[:100]},
                  **_send_at(data, scheduled_for=False)}
            reserved = {CALLBACK_SHAPE_FIELD: "job_flat" if shape == "flat" else "job"}
            return _schedule(request, v1, _ignored(data, JOB_FIELDS), job=True,
                             reserved=reserved)
        return idempotent(request, handler)


def _job_error(message: Message) -> str | None:
    """Return why the job did not succeed, in one line (None when nothing went wrong)."""
    if message.status == MessageStatus.SUPPRESSED:
        return f"suppressed: {message.suppressed_reason}"
    return message.last_error or None


class JobStatusView(APIView):
    @extend_schema(responses={200: OpenApiResponse(description='{"success", "status", '
                                                               '"result"}')})
    def get(self, request: Request, job_id: str) -> Response:
        """Return a job's state in the older service's words, with the message's details."""
        try:
            uuid.UUID(job_id)
        except ValueError:
            raise ApiError(404, "No such job.") from None
        message = Message.objects.filter(workspace=workspace_of(request), pk=job_id).first()
        if message is None:
            raise ApiError(404, "No such job.")
        result = {"messageStatus": message.status, "attempts": message.attempts,
                  "providerMessageId": message.provider_message_id or None,
                  "error": _job_error(message), "response": message.response,
                  "sentAt": message.sent_at.isoformat() if message.sent_at else None}
        return Response({"success": True, "status": JOB_STATES[message.status],
                         "result": result})
