"""API-wide pieces: one error shape, pagination, the workspace scope of every view."""
from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db.models import Model, QuerySet
from django.db.models.manager import BaseManager
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from rest_framework import exceptions, serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import exception_handler as drf_exception_handler

from core.auth import workspace_of
from core.models import ApiKey, Workspace
from core.outage import DATABASE_ERRORS

if TYPE_CHECKING:
    # Imported for the type checker only: loading DRF's generic views reads the pagination
    # setting, which names this module's Pagination, not yet defined while this one loads.
    from rest_framework.generics import GenericAPIView as _GenericView
else:
    _GenericView = object

logger = logging.getLogger(__name__)
# An unavailable database (core.outage) is transient: the answer is 503 with Retry-After,
# never a 500.
DATABASE_UNAVAILABLE = "The database is unavailable; try again shortly."

CODES = {
    400: "validation_error",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    503: "unavailable",
}


class Pagination(PageNumberPagination):
    """Page-number pagination with a client-chosen page size (capped)."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def __init__(self) -> None:
        from django.conf import settings

        self.page_size = settings.API_PAGE_SIZE

    def get_page_size(self, request: Any) -> int | None:
        """Return the asked page size (capped); refuse one that is not a whole number >= 1.

        DRF falls back to the default on a bad value, which hides a client's mistake.
        """
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            message = f"page_size must be a whole number from 1 to {self.max_page_size}."
            raise ApiError(400, message, fields={"page_size": [message]})
        return min(size, self.max_page_size)


def error_body(status_code: int, message: str, fields: Any = None, code: str | None = None) -> dict:
    """Return the one error shape the whole API uses."""
    body: dict[str, Any] = {"code": code or CODES.get(status_code, "error"), "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


class ApiError(exceptions.APIException):
    """An API error with an explicit status, code and optional field messages."""

    def __init__(self, status_code: int, message: str, code: str | None = None,
                 fields: Any = None, headers: dict | None = None) -> None:
        super().__init__(detail=message)
        self.status_code = status_code
        self.error_code = code
        self.fields = fields
        self.headers = headers or {}


def _message_for(exc: Exception) -> str:
    detail = getattr(exc, "detail", None)
    if isinstance(detail, str):
        return str(detail)
    if isinstance(exc, exceptions.ValidationError):
        return "Invalid input."
    return str(getattr(exc, "default_detail", "Error"))


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Turn every API exception into {"error": {"code", "message", "fields"}}."""
    if isinstance(exc, DATABASE_ERRORS):
        logger.warning("database unavailable, answering 503: %s", exc)
        return Response(error_body(503, DATABASE_UNAVAILABLE, code="database_unavailable"),
                        status=503, headers={"Retry-After": _retry_after()})
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body(400, "Request body is too large.", code="request_too_large"),
                        status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        body = error_body(exc.status_code, str(exc.detail), exc.fields, exc.error_code)
        response.data = body
        for key, value in exc.headers.items():
            response[key] = value
        return response
    fields = None
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if not isinstance(exc.detail, str) else None
        if isinstance(fields, dict) and set(fields) == {"non_field_errors"}:
            errors = next(iter(fields.values()))
            message = str(errors[0] if isinstance(errors, list) else errors)
            fields = None
            response.data = error_body(400, message)
            return response
    response.data = error_body(response.status_code, _message_for(exc), fields)
    return response


def json_400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:  # noqa: ARG001
    """Answer requests Django refuses before any view (e.g. a bad Host) with the error shape."""
    return JsonResponse(error_body(400, "Bad request.", code="bad_request"),
                        status=status.HTTP_400_BAD_REQUEST)


def json_404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:  # noqa: ARG001
    """Answer unknown URLs with the API's error shape."""
    return JsonResponse(error_body(404, "Not found."), status=status.HTTP_404_NOT_FOUND)


def json_500(request: HttpRequest) -> JsonResponse:
    """Answer unhandled errors with the API's error shape (details go to the log); one the
    database raised while it is unavailable (in a middleware, before any view) is a 503."""
    if isinstance(sys.exc_info()[1], DATABASE_ERRORS):
        return database_unavailable(request)
    return JsonResponse(error_body(500, "Internal server error.", code="server_error"),
                        status=500)


def _retry_after() -> str:
    return str(settings.DATABASE_RETRY_AFTER_SECONDS)


def database_unavailable(request: HttpRequest) -> JsonResponse:  # noqa: ARG001
    """503 with Retry-After and the error shape: the database is restarting or unreachable;
    nothing was written, so the client may send the same request again."""
    response = JsonResponse(error_body(503, DATABASE_UNAVAILABLE, code="database_unavailable"),
                            status=503)
    response["Retry-After"] = _retry_after()
    return response


class DatabaseUnavailableMiddleware:
    """Answer 503 with Retry-After, not 500, when a view (the dashboard, admin, the older
    endpoints) meets a database that is unavailable; API views answer the same through
    exception_handler, and errors raised before any view through json_500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest,
                          exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_ERRORS):
            return None
        logger.warning("database unavailable, answering 503: %s", exception)
        return database_unavailable(request)


class Router(SimpleRouter):
    """A router whose routes match with or without a trailing slash (no POST redirects)."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


class StrictBooleanField(serializers.BooleanField):
    """A BooleanField that takes JSON true and false only, not 0, 1 or "yes"."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of coercing them to text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class PageRead(serializers.ListSerializer):
    """A list serializer that lets its child read what its rows need for the whole page at
    once (child.page_read(rows), before any row is answered), instead of a query per row.

    A serializer opts in with `Meta.list_serializer_class = PageRead` and a `page_read`."""

    def to_representation(self, data: Any) -> list[Any]:
        rows = list(data.all() if isinstance(data, BaseManager) else data)
        self.child.page_read(rows)  # type: ignore[union-attr]
        return super().to_representation(rows)


class WorkspaceScoped(_GenericView):
    """Scope a generic view or viewset to the workspace of the key that authenticated the
    request (README.md, "API"); put it first among the bases.

    Every row the view lists, shows, changes or deletes comes from `scoped_queryset`, given
    the key's workspace, so another workspace's id is not there and answers 404 (a 403
    would confirm that it exists). Rows it creates belong to that workspace, and its
    serializers find the workspace in their context. A view declares only what differs:
    `model` and `scoped_queryset` (a selector call). tests/test_workspace_scoping.py checks
    that every /api/v1 route with an id is served through this class.
    """

    # What the schema generator's queryset is made of: it calls get_queryset with no key.
    model: type[Model]
    # The view's rows of a workspace: each view says which (a selector call), and a view
    # that does not say cannot be declared (__init_subclass__).
    scoped_queryset: Callable[..., QuerySet]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse, when the class is defined, a view that does not say which rows it serves."""
        super().__init_subclass__(**kwargs)
        missing = [name for name in ("model", "scoped_queryset")
                   if not any(name in vars(base) for base in cls.__mro__
                              if base is not WorkspaceScoped)]
        if missing:
            raise TypeError(f"{cls.__name__} must declare {' and '.join(missing)} "
                            "(core.api.WorkspaceScoped).")

    @property
    def workspace(self) -> Workspace:
        """Return the workspace of the key that authenticated the request."""
        return workspace_of(self.request)

    def get_queryset(self) -> QuerySet:
        """Return the view's rows of the key's workspace (none while the schema is built)."""
        if getattr(self, "swagger_fake_view", False):
            return self.model._default_manager.none()
        return self.scoped_queryset(workspace=self.workspace)

    def get_serializer_context(self) -> dict[str, Any]:
        """Add the key's workspace to DRF's context (absent while the schema is built)."""
        context = dict(super().get_serializer_context())
        if isinstance(getattr(self.request, "auth", None), ApiKey):
            context["workspace"] = self.workspace
        return context

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        """Save a new row into the key's workspace, whatever the body said."""
        serializer.save(workspace=self.workspace)


class ExportNegotiation(DefaultContentNegotiation):
    """Negotiation for the views that stream a download: always the first renderer (JSON),
    so an error (401, 403, 404) answers the API's JSON error shape as application/json,
    and `?format=` is left to the view (DRF would read it as its renderer override and
    answer 404 for a value it does not know). The download streams its own body."""

    def select_renderer(self, request: Any, renderers: Iterable[BaseRenderer],
                        format_suffix: str | None = None) -> tuple[BaseRenderer, str]:
        first = next(iter(renderers))
        return first, first.media_type


class CSVRenderer(BaseRenderer):
    """Names text/csv for the views that stream CSV; an error answer is still JSON text."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Mapping[str, Any] | None = None) -> bytes:
        return json.dumps(data).encode() if data is not None else b""


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a stream."""

    def write(self, value: str) -> str:
        return value


def csv_stream(rows: Iterator[list[Any]], filename: str) -> StreamingHttpResponse:
    """Answer rows as a streamed CSV download (one row in memory at a time)."""
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse((writer.writerow(row) for row in rows),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
