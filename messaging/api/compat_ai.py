"""The older AI response queue's job, for its existing clients: POST /api/schedule-ai-response.

The body is that queue's job payload (`workspace_id`, `contact_id`, `message_id`,
`message_text`, `callback_url`, `rate_limit_key`); unknown fields are ignored as that queue
did. It becomes an `ai` message answered like the other compatible endpoints; the reply goes
to `callback_url` as `{workspace_id, message_id, job_id, response_text}` in the client's own
ids, and `rate_limit_key` is the message's own rate key inside its workspace's `ai` limit.

The queue's other callback body, the SMS endpoint's `{to, message, workspaceId}`, is sent
when `callback_shape` is "sms" or the callback_url is a `/send-sms` endpoint; a job may also
come in that shape (`to`, `message`, `workspaceId` for `message_text` and `workspace_id`).
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiError
from core.auth import workspace_of
from core.models import Scope
from core.workspace_settings import is_plain_id
from messaging import ratelimit
from messaging.api.compat import (
    CompatResponse,
    _body,
    _check_workspace,
    _contact_ref,
    _ignored,
    _schedule,
)
from messaging.api.idempotency import idempotent
from messaging.channels import AI
from messaging.delivery.ai_callbacks import AI_RESPONSE_SHAPE, AI_SMS_SHAPE, CALLBACK_SHAPE_FIELD
from messaging.ratelimit import RATE_KEY_FIELD

REQUIRED = ("message_text", "callback_url")
# The client's own ids, kept to answer the callback in its words.
CLIENT_IDS = ("workspace_id", "contact_id", "message_id")
MAX_CLIENT_ID = 200
# The job payload's fields; any other is ignored and named in `ignored_fields`.
AI_FIELDS = frozenset({*REQUIRED, *CLIENT_IDS, "rate_limit_key", "callback_shape", "to",
                       "message", "workspaceId"})
# The SMS shape's names for the job payload's own (a job may come in either).
SMS_NAMES = {"message": "message_text", "workspaceId": "workspace_id"}
CALLBACK_SHAPES = (AI_RESPONSE_SHAPE, AI_SMS_SHAPE)
# The payload's names for the v1 fields, to report errors in the client's own words.
PAYLOAD_NAMES = {"prompt": "message_text"}


def _require(data: dict) -> None:
    """Refuse a job without the text to answer or the place to answer it (both named)."""
    missing = {name: ["This field is required."] for name in REQUIRED
               if data.get(name) in (None, "")}
    if missing:
        raise ApiError(400, "Invalid input.", fields=missing)


def _client_ids(request: Request, data: dict) -> dict[str, Any]:
    """Return the client's ids as sent (strings or numbers); workspace_id defaults to ours."""
    ids: dict[str, Any] = {"workspace_id": str(workspace_of(request).id)}
    errors: dict[str, list[str]] = {}
    for name in CLIENT_IDS:
        value = data.get(name)
        if value is None:
            continue
        if not is_plain_id(value) or len(str(value)) > MAX_CLIENT_ID:
            errors[name] = [f"Must be a string or number of at most {MAX_CLIENT_ID} characters."]
        ids[name] = value
    if errors:
        raise ApiError(400, "Invalid input.", fields=errors)
    return ids


def _from_sms_shape(data: dict) -> dict:
    """Return the job with the SMS shape's names read as the payload's own ones."""
    both = [old for old, new in SMS_NAMES.items()
            if data.get(old) is not None and data.get(new) is not None]
    if both:
        raise ApiError(400, "Invalid input.", fields={
            old: [f"Give {old} or {SMS_NAMES[old]}, not both."] for old in both})
    return {**data, **{new: data[old] for old, new in SMS_NAMES.items()
                       if data.get(old) is not None}}


def _callback_shape(data: dict) -> str:
    """Return the reply's callback body: as asked (callback_shape), the SMS one for a
    /send-sms endpoint (the older worker chose by the endpoint), the dedicated one otherwise."""
    shape = data.get("callback_shape")
    if shape is not None:
        if shape not in CALLBACK_SHAPES:
            raise ApiError(400, "Invalid input.", fields={"callback_shape": [
                f"Must be one of {', '.join(CALLBACK_SHAPES)}."]})
        return str(shape)
    url = data.get("callback_url")
    path = urlsplit(url).path if isinstance(url, str) else ""
    return AI_SMS_SHAPE if path.rstrip("/").endswith("/send-sms") else AI_RESPONSE_SHAPE


def _to(data: dict) -> dict[str, Any]:
    """Return the SMS shape's `to` as sent (a phone or the client's contact id)."""
    to = data.get("to")
    if to is None:
        return {}
    if not is_plain_id(to) or not str(to) or len(str(to)) > MAX_CLIENT_ID:
        raise ApiError(400, "Invalid input.", fields={"to": [
            f"Must be a string or number of 1 to {MAX_CLIENT_ID} characters."]})
    return {"to": to}


def _rate_key(data: dict) -> dict[str, str]:
    """Return the metadata naming the job's own rate key, if it gives a valid one."""
    key = data.get("rate_limit_key")
    if key in (None, ""):
        return {}
    if not ratelimit.client_key_valid(key):
        raise ApiError(400, "Invalid input.", fields={"rate_limit_key": [
            "Must be 1-100 characters of A-Z, a-z, 0-9, _ . : @ -."]})
    return {RATE_KEY_FIELD: key}


class ScheduleAiResponseView(APIView):
    write_scope = Scope.SEND  # sending, not configuration

    @extend_schema(request=None, responses={201: CompatResponse, 403: OpenApiResponse()})
    def post(self, request: Request) -> Response:
        """Schedule an AI reply to message_text, POSTed to callback_url as {workspace_id,
        message_id, job_id, response_text} like the older AI queue's worker did, or in the
        SMS shape {to, message, workspaceId, jobId} (callback_shape "sms", or a /send-sms
        callback_url)."""
        def handler() -> Response:
            sent = _body(request)
            data = _from_sms_shape(sent)
            _check_workspace(request, data.get("workspace_id"))
            _require(data)
            metadata = {**_client_ids(request, data), **_to(data)}
            reserved = {**_rate_key(data), CALLBACK_SHAPE_FIELD: _callback_shape(data)}
            v1 = {"channel": AI, "prompt": data["message_text"],
                  "callback_url": data["callback_url"], "metadata": metadata,
                  **_contact_ref(request, data.get("contact_id"))}
            return _schedule(request, v1, _ignored(sent, AI_FIELDS), reserved=reserved,
                             names=PAYLOAD_NAMES)
        return idempotent(request, handler)
