"""Idempotency-Key support for every POST that creates something.

Same key + same body within 24 h replays the stored answer (same status, same body);
same key + a different body answers 422; a request still running with that key answers 409.
Keys are scoped per workspace. Errors (4xx raised before anything is created, 5xx) are
not stored: the client may retry with the same key.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ApiError
from core.auth import workspace_of
from core.models import Workspace
from messaging.models import IdempotencyRecord

# An in-flight record older than this belongs to a request that died; it may be taken over.
ABANDONED_AFTER = timedelta(minutes=5)


def _fingerprint(request: Request) -> str:
    data = request.data
    if request.FILES:
        # An upload counts by its content, so another file under the same name is another
        # request (answered 422), the same file again a replay.
        data = {key: request.POST.getlist(key) for key in request.POST}
        data["files"] = {
            name: _digest(upload)
            for name, upload in request.FILES.items()
            if isinstance(upload, UploadedFile)
        }
    body = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def _digest(upload: UploadedFile) -> str:
    """Return the SHA-256 of an uploaded file, read in chunks and rewound after."""
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


def _claim(workspace: Workspace, key: str, fingerprint: str) -> IdempotencyRecord | Response:
    """Insert the in-flight record, or return the answer an existing one dictates."""
    now = timezone.now()
    for _ in range(3):
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(workspace=workspace, key=key,
                                                        request_hash=fingerprint)
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(workspace=workspace, key=key).first()
        if existing is None:
            continue  # deleted between our insert and read: try again
        expired = existing.created_at < now - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS)
        abandoned = existing.in_flight and existing.created_at < now - ABANDONED_AFTER
        if expired or abandoned:
            IdempotencyRecord.objects.filter(pk=existing.pk).delete()
            continue
        if existing.request_hash != fingerprint:
            raise ApiError(422, "This Idempotency-Key was used with a different request body.",
                           code="idempotency_key_reused")
        if existing.in_flight:
            raise ApiError(409, "A request with this Idempotency-Key is still in progress.",
                           code="idempotency_in_progress")
        replay = Response(existing.response_body, status=existing.status_code)
        replay["Idempotent-Replayed"] = "true"
        return replay
    raise ApiError(409, "Could not reserve this Idempotency-Key; retry.",
                   code="idempotency_in_progress")


def idempotent(request: Request, handler: Callable[[], Response]) -> Response:
    """Run the handler once per (workspace, Idempotency-Key); replay its answer after."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return handler()
    if len(key) > 255:
        raise ApiError(400, "Idempotency-Key must be at most 255 characters.",
                       fields={"Idempotency-Key": ["Too long."]})
    claimed = _claim(workspace_of(request), key, _fingerprint(request))
    if isinstance(claimed, Response):
        return claimed
    try:
        response = handler()
    except Exception:
        # Refused or crashed: nothing was created, so the client may retry with the key.
        claimed.delete()
        raise
    if response.status_code >= 500:
        claimed.delete()
        return response
    IdempotencyRecord.objects.filter(pk=claimed.pk).update(
        in_flight=False, status_code=response.status_code, response_body=response.data)
    return response
