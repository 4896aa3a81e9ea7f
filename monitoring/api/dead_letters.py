"""Dead letters REST API: list/filter, replay one or many, discard, export (CSV or JSON)."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, renderers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ApiError, CSVRenderer, ExportNegotiation, WorkspaceScoped
from core.audit import Actor, actor_of
from core.models import DeadLetter, Workspace
from core.serializers import DeadLetterSerializer
from messaging.models import Channel
from monitoring import services
from monitoring.selectors import dead_letters_list


class DeadLetterFilterSerializer(serializers.Serializer):
    """The filters shared by the list, the bulk replay and the export."""

    kind = serializers.ChoiceField(choices=DeadLetter.Kind.choices, required=False)
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    status = serializers.ChoiceField(choices=DeadLetter.Status.choices, required=False)
    error = serializers.CharField(required=False, max_length=200,
                                  help_text="Text the error or error code contains.")
    since = serializers.DateTimeField(required=False, help_text="Filed at or after.")
    until = serializers.DateTimeField(required=False, help_text="Filed before.")
    flow = serializers.CharField(required=False, max_length=64, help_text="Flow id.")
    source_id = serializers.CharField(required=False, max_length=64)

    def validate(self, attrs: dict) -> dict:
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": ["Must be after since."]})
        return attrs


class BulkReplaySerializer(DeadLetterFilterSerializer):
    limit = serializers.IntegerField(required=False, min_value=1,
                                     max_value=services.BULK_REPLAY_LIMIT)

    def to_internal_value(self, data: Any) -> dict:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


FILTER_PARAMETERS = [
    OpenApiParameter(name, OpenApiTypes.STR, description=description) for name, description in [
        ("kind", "message | step"), ("channel", "sms, mms, email, ai, webhook"),
        ("status", "open | replayed | discarded"), ("error", "text in the error"),
        ("since", "ISO time, inclusive"), ("until", "ISO time, exclusive"),
        ("flow", "flow id"), ("source_id", "message or step id")]]


def filtered(workspace: Any, data: Any) -> QuerySet:
    """Return the workspace's dead letters matching the filters in data (400 if invalid)."""
    serializer = DeadLetterFilterSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return _apply(workspace, serializer.validated_data)


def _apply(workspace: Any, values: dict, default_status: str = "") -> QuerySet:
    return services.dead_letters_filter(
        workspace=workspace, kind=values.get("kind", ""), channel=values.get("channel", ""),
        status=values.get("status", default_status), error_contains=values.get("error", ""),
        since=values.get("since"), until=values.get("until"), flow_id=values.get("flow", ""),
        source_id=values.get("source_id", ""))


def _actor(request: Request) -> Actor:
    return actor_of(request, "api")


class DeadLetterViewSet(WorkspaceScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                        viewsets.GenericViewSet):
    """The workspace's dead letters: failed messages and failed flow steps."""

    serializer_class = DeadLetterSerializer
    lookup_value_regex = r"\d+"
    filter_backends: list = []

    model = DeadLetter

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[DeadLetter]:
        if self.action == "list":
            return filtered(workspace, self.request.query_params)
        return dead_letters_list(workspace=workspace)

    @extend_schema(parameters=FILTER_PARAMETERS)
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """List dead letters, newest first, filtered and paginated."""
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Discard an open dead letter: kept for history, never replayed."""
        letter = self.get_object()
        if not services.dead_letter_discard(letter_id=letter.pk, actor=_actor(request)):
            raise ApiError(409, f"Only an open dead letter can be discarded; this one is "
                                f"{letter.status}.", code="not_discardable")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=DeadLetterSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Replay one dead letter (409 with the reason when it cannot be replayed)."""
        letter = self.get_object()
        outcome = services.dead_letter_replay(letter_id=letter.pk, actor=_actor(request))
        if not outcome.replayed:
            raise ApiError(409, outcome.reason, code="not_replayable")
        letter.refresh_from_db()
        return Response(DeadLetterSerializer(letter).data)

    @extend_schema(request=BulkReplaySerializer, parameters=FILTER_PARAMETERS,
                   responses={200: OpenApiTypes.OBJECT}, operation_id="dead_letters_retry_bulk")
    @action(detail=False, methods=["post"], url_path="retry")
    def retry_many(self, request: Request) -> Response:
        """Replay every open dead letter matching the filters (query or body), oldest first.

        Answers {matched, replayed, refused, remaining, refusals: [{id, reason}]}; at most
        `limit` (default and maximum 1000) are handled per call, so repeat while remaining.
        """
        data = {**request.query_params.dict(), **(request.data or {})} if isinstance(
            request.data, dict) else request.data
        serializer = BulkReplaySerializer(data=data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        queryset = _apply(self.workspace, values, default_status=DeadLetter.Status.OPEN)
        report = services.dead_letters_replay(
            queryset=queryset, actor=_actor(request),
            limit=values.get("limit", services.BULK_REPLAY_LIMIT))
        return Response(report.as_dict())

    @extend_schema(parameters=[*FILTER_PARAMETERS, OpenApiParameter(
        "format", OpenApiTypes.STR, enum=["csv", "json"])],
        responses={(200, "text/csv"): OpenApiTypes.STR,
                   # A plain array (not paginated): one object per dead letter.
                   (200, "application/json"): {"type": "array",
                                               "items": {"type": "object"}}})
    @action(detail=False, methods=["get"], content_negotiation_class=ExportNegotiation,
            renderer_classes=[renderers.JSONRenderer, CSVRenderer])
    def export(self, request: Request) -> StreamingHttpResponse:
        """Download the matching dead letters as CSV or a JSON array (streamed)."""
        fmt = request.query_params.get("format", "csv")
        if fmt not in ("csv", "json"):
            raise ApiError(400, "format must be csv or json.",
                           fields={"format": ["Use csv or json."]})
        params = request.query_params.copy()
        params.pop("format", None)
        queryset = filtered(self.workspace, params)
        response = StreamingHttpResponse(
            services.dead_letters_export(queryset=queryset, fmt=fmt),
            content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/json")
        response["Content-Disposition"] = f'attachment; filename="dead-letters.{fmt}"'
        return response
