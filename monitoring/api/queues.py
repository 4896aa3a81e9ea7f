"""Queue health, metrics and statistics (the older service's endpoints), and rate limits.

A workspace API key sees its own workspace's numbers (broker depth is shared by every
workspace, so it is global). A staff user logged in to the admin (session) sees every
workspace and is the only one who may reset rate-limit state: a reset also clears the
reservation keys, which lets the next sends through at once, and a tenant must not be able
to lift its own limiter on a shared provider account.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiError
from core.audit import actor_of
from core.auth import ApiKeyAuthentication, HasScope
from core.models import ApiKey, Workspace
from messaging import ratelimit
from messaging.delivery import pauses
from messaging.models import QueuePause
from monitoring import selectors, services

WINDOW = OpenApiParameter("window", OpenApiTypes.STR,
                          description="15m, 1h (default), 24h, 7d or seconds")


class IsWorkspaceKeyOrStaff(permissions.BasePermission):
    """Allow a workspace API key, or a logged-in active staff user."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiKey) or _is_staff(request)


class IsStaff(permissions.BasePermission):
    """Allow only a logged-in active staff user (operators)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return _is_staff(request)


def _is_staff(request: Request) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


class OperatorView(APIView):
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [IsWorkspaceKeyOrStaff, HasScope]

    def scope(self, request: Request) -> Workspace | None:
        """Return the key's workspace; for staff the ?workspace= one, or None for all."""
        if isinstance(request.auth, ApiKey):
            return request.auth.workspace
        wanted = request.query_params.get("workspace")
        if not wanted:
            return None
        workspace = selectors.workspace_find(wanted)
        if workspace is None:
            raise ApiError(404, "No such workspace.")
        return workspace

    @staticmethod
    def window(request: Request) -> Any:
        try:
            return selectors.parse_window(request.query_params.get("window"))
        except ValueError as exc:
            raise ApiError(400, str(exc), fields={"window": [str(exc)]}) from exc


class QueueHealthView(OperatorView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        """Answer healthy, degraded or unhealthy (503) with each queue's state."""
        body = selectors.queue_health(workspace=self.scope(request))
        return Response(body, status=503 if body["status"] == "unhealthy" else 200)


class QueueMetricsView(OperatorView):
    @extend_schema(parameters=[WINDOW], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        """Return per queue: depth, waiting, active, scheduled, oldest waiting age,
        completed/failed and success rate over the window, paused, heartbeat age."""
        window = self.window(request)
        stats = selectors.queue_stats(workspace=self.scope(request), window=window)
        return Response({"window_seconds": int(window.total_seconds()), "queues": stats})


class QueueStatisticsView(OperatorView):
    @extend_schema(parameters=[WINDOW], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        """Return totals across queues, success rate, throughput and dispatcher lag."""
        return Response(selectors.queue_statistics(workspace=self.scope(request),
                                                   window=self.window(request)))


class RateLimitView(OperatorView):
    @extend_schema(parameters=[
        OpenApiParameter("limit", OpenApiTypes.INT, description="events per workspace "
                                                                "(default 100, max 1000)"),
        OpenApiParameter("since", OpenApiTypes.DATETIME),
        OpenApiParameter("workspace", OpenApiTypes.STR, description="staff only")],
        responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        """Return per workspace: limits in force, deferrals per channel, recent events."""
        limit = request.query_params.get("limit", "100")
        if not limit.isdigit() or not 0 < int(limit) <= ratelimit.EVENTS_KEEP:
            raise ApiError(400, f"limit must be 1 to {ratelimit.EVENTS_KEEP}.")
        since = self._since(request)
        scope = self.scope(request)
        workspaces = [scope] if scope is not None else list(Workspace.objects.all())
        reports = [selectors.rate_limit_report(workspace=workspace, limit=int(limit),
                                               since=since) for workspace in workspaces]
        return Response({"workspaces": reports})

    @staticmethod
    def _since(request: Request) -> datetime | None:
        raw = request.query_params.get("since")
        if raw is None:
            return None
        parsed = parse_datetime(raw) if raw else None
        if parsed is None or parsed.tzinfo is None:
            message = "since must be an ISO 8601 time with an offset."
            raise ApiError(400, message, fields={"since": [message]})
        return parsed


class RateLimitResetSerializer(serializers.Serializer):
    workspace = serializers.CharField(max_length=100, help_text="Workspace id or slug.")


class RateLimitResetView(OperatorView):
    permission_classes = [IsStaff]

    @extend_schema(request=RateLimitResetSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        """Clear a workspace's deferral counters, events and reservations (staff only)."""
        serializer = RateLimitResetSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        workspace = selectors.workspace_find(serializer.validated_data["workspace"])
        if workspace is None:
            raise ApiError(404, "No such workspace.")
        ratelimit.reset(str(workspace.pk))
        return Response({"reset": str(workspace.pk), "workspace": workspace.slug})


class QueuePauseSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500,
                                   help_text="Why (shown with the pause).")


def _checked_queue(queue: str) -> str:
    try:
        return pauses.check_queue(queue)
    except pauses.UnknownQueue as exc:
        raise ApiError(404, str(exc), fields={"queue": [str(exc)]}) from exc


def _pause_body(queue: str, workspace: Workspace | None, pause: QueuePause | None,
                **extra: Any) -> dict[str, Any]:
    return {"queue": queue, "scope": "global" if workspace is None else "workspace",
            "workspace": str(workspace.pk) if workspace is not None else None,
            "paused": pause is not None, "pause": selectors.pause_info(pause), **extra}


class QueuePauseView(OperatorView):
    """POST /api/v1/queues/{queue}/pause: the key's workspace; staff: ?workspace= or all."""

    @extend_schema(request=QueuePauseSerializer, responses={200: OpenApiTypes.OBJECT},
                   operation_id="queues_pause")
    def post(self, request: Request, queue: str) -> Response:
        """Pause a channel queue: its messages are accepted and wait, none is sent, until
        it is resumed (pausing a paused queue changes nothing: `changed` is false)."""
        queue = _checked_queue(queue)
        serializer = QueuePauseSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        workspace = self.scope(request)
        pause, changed = pauses.queue_pause(
            queue=queue, workspace=workspace, actor=actor_of(request, "api"),
            reason=serializer.validated_data.get("reason", ""))
        return Response(_pause_body(queue, workspace, pause, changed=changed))


class QueueResumeView(OperatorView):
    """POST /api/v1/queues/{queue}/resume: the key's workspace; staff: ?workspace= or all."""

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT},
                   operation_id="queues_resume")
    def post(self, request: Request, queue: str) -> Response:
        """Resume a paused queue: the messages it held go out in order, at the rate limit
        (`released` counts them; resuming a queue that is not paused changes nothing)."""
        queue = _checked_queue(queue)
        workspace = self.scope(request)
        released = pauses.queue_resume(queue=queue, workspace=workspace,
                                       actor=actor_of(request, "api"))
        still = pauses.pauses_of(workspace).get(queue)
        return Response(_pause_body(queue, workspace, still, changed=released is not None,
                                    released=released or 0))


# --- one queue: its jobs, retry failed, clean completed ----------------------------------------

class QueueJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    workspace = serializers.UUIDField()
    channel = serializers.CharField()
    to = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    last_error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    scheduled_for = serializers.DateTimeField(allow_null=True)
    due_at = serializers.DateTimeField(allow_null=True)


class QueueCountsSerializer(serializers.Serializer):
    waiting = serializers.IntegerField(help_text="queued: ready for a worker")
    active = serializers.IntegerField(help_text="sending: claimed by a worker")
    scheduled = serializers.IntegerField(help_text="scheduled or retrying: waiting for a time")
    failed = serializers.IntegerField(help_text="failed or undelivered")
    completed = serializers.IntegerField(help_text="sent or delivered")


class QueueJobsSerializer(serializers.Serializer):
    waiting = QueueJobSerializer(many=True)
    active = QueueJobSerializer(many=True)
    scheduled = QueueJobSerializer(many=True)
    failed = QueueJobSerializer(many=True)


class QueueDetailSerializer(serializers.Serializer):
    queue = serializers.CharField()
    channels = serializers.ListField(child=serializers.CharField())
    paused = serializers.BooleanField()
    pause = serializers.DictField(allow_null=True, help_text="scope, since, by whom, why")
    counts = QueueCountsSerializer()
    messages = QueueJobsSerializer(help_text="The newest `limit` messages of each state.")


class QueueRetryFailedSerializer(serializers.Serializer):
    queue = serializers.CharField()
    matched = serializers.IntegerField(help_text="open dead letters of the queue's messages")
    replayed = serializers.IntegerField()
    refused = serializers.IntegerField()
    remaining = serializers.IntegerField(help_text="left for another request (at most "
                                                   f"{services.QUEUE_RETRY_LIMIT} a request)")
    refusals = serializers.ListField(child=serializers.DictField())


class QueueCleanSerializer(serializers.Serializer):
    older_than = serializers.CharField(max_length=20,
                                       help_text="30d, 12h, 90m, 45s or 2w")

    def validate_older_than(self, value: str) -> Any:
        try:
            return services.parse_age(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class QueueCleanedSerializer(serializers.Serializer):
    queue = serializers.CharField()
    older_than_seconds = serializers.IntegerField()
    deleted = serializers.IntegerField(help_text="completed messages deleted")


LIMIT = OpenApiParameter("limit", OpenApiTypes.INT,
                         description=f"messages listed per state (default "
                                     f"{selectors.QUEUE_DETAIL_LIMIT}, at most "
                                     f"{selectors.QUEUE_DETAIL_MAX})")


class QueueDetailView(OperatorView):
    """GET /api/v1/queues/{queue}: the key's workspace; staff: ?workspace= or all."""

    @extend_schema(parameters=[LIMIT], responses={200: QueueDetailSerializer},
                   operation_id="queues_retrieve_one")
    def get(self, request: Request, queue: str) -> Response:
        """Return one channel queue: its messages counted per state (waiting, active,
        scheduled, failed, completed) and the newest of each state but completed."""
        queue = _checked_queue(queue)
        raw = request.query_params.get("limit", str(selectors.QUEUE_DETAIL_LIMIT))
        if not raw.isdigit() or not 0 < int(raw) <= selectors.QUEUE_DETAIL_MAX:
            message = f"limit must be 1 to {selectors.QUEUE_DETAIL_MAX}."
            raise ApiError(400, message, fields={"limit": [message]})
        body = selectors.queue_detail(queue=queue, workspace=self.scope(request),
                                      limit=int(raw))
        return Response(QueueDetailSerializer(body).data)


class QueueRetryFailedView(OperatorView):
    """POST /api/v1/queues/{queue}/retry-failed: the key's workspace; staff: ?workspace= or
    all."""

    @extend_schema(request=None, responses={200: QueueRetryFailedSerializer},
                   operation_id="queues_retry_failed")
    def post(self, request: Request, queue: str) -> Response:
        """Replay the open dead letters of the queue's failed messages, oldest first: each
        is queued again under its own id, as a dead letter's replay is."""
        queue = _checked_queue(queue)
        report = services.queue_retry_failed(queue=queue, workspace=self.scope(request),
                                             actor=actor_of(request, "api"))
        return Response(QueueRetryFailedSerializer({"queue": queue, **report.as_dict()}).data)


class QueueCleanView(OperatorView):
    """POST /api/v1/queues/{queue}/clean: the key's workspace; staff: ?workspace= or all."""

    @extend_schema(request=QueueCleanSerializer, responses={200: QueueCleanedSerializer},
                   operation_id="queues_clean")
    def post(self, request: Request, queue: str) -> Response:
        """Delete the queue's completed messages (sent or delivered) older than
        `older_than`, with their delivery attempts (audited)."""
        queue = _checked_queue(queue)
        serializer = QueueCleanSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        older_than = serializer.validated_data["older_than"]
        deleted = services.queue_clean_completed(
            queue=queue, workspace=self.scope(request), older_than=older_than,
            actor=actor_of(request, "api"))
        return Response(QueueCleanedSerializer({
            "queue": queue, "older_than_seconds": int(older_than.total_seconds()),
            "deleted": deleted}).data)
