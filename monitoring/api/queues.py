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
from monitoring import selectors

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
