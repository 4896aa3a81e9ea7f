"""Contact imports REST API: upload a CSV or JSON Lines file, follow its progress, download
its error file (README.md, "Contact imports")."""
from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from audiences import imports
from audiences.models import ContactImport, ContactImportError
from audiences.selectors import contact_imports_list
from core.api import (
    ApiError,
    CSVRenderer,
    ExportNegotiation,
    PageRead,
    WorkspaceScoped,
    csv_stream,
)
from core.models import Workspace
from messaging.api.idempotency import idempotent


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The CSV (with a header row) or JSON Lines file.")
    format = serializers.ChoiceField(
        choices=ContactImport.Format.choices, required=False,
        help_text="csv or jsonl; by default from the file name (.jsonl, .ndjson: jsonl).")
    mapping = serializers.JSONField(
        required=False, help_text='Contact field -> column, e.g. {"phone": "Mobile", '
        '"attributes.city": "City"}; by default columns named as contact fields '
        '(and attributes.<name>) are read.')
    default_region = serializers.CharField(
        required=False, allow_blank=True, max_length=2,
        help_text="Region for phone numbers written without +country code (DE, US).")


class ImportRowErrorSerializer(serializers.ModelSerializer):
    class Meta:
        model = ContactImportError
        fields = ["row", "field", "message"]


class ContactImportSerializer(serializers.ModelSerializer):
    first_errors = serializers.SerializerMethodField(
        help_text=f"The first {imports.FIRST_ERRORS} failed rows (row 1 is the first row "
                  "after the header); all of them are in error_file.")
    error_file = serializers.SerializerMethodField(
        help_text="Where to download every failed row as CSV.")
    # The page's first errors, when a list answers (PageRead).
    errors_read: dict[Any, list[ContactImportError]] | None = None

    class Meta:
        model = ContactImport
        fields = ["id", "status", "filename", "format", "mapping", "default_region",
                  "size_bytes", "sha256", "rows_total", "rows_done", "rows_created",
                  "rows_updated", "rows_failed", "error", "first_errors", "error_file",
                  "created_at", "started_at", "finished_at"]
        read_only_fields = fields
        list_serializer_class = PageRead

    def page_read(self, rows: list[ContactImport]) -> None:
        """Read the page's first errors in one query."""
        self.errors_read = imports.first_errors_of(rows)

    @extend_schema_field(ImportRowErrorSerializer(many=True))
    def get_first_errors(self, job: ContactImport) -> list[dict[str, Any]]:
        errors = (self.errors_read or imports.first_errors_of([job]))[job.pk]
        return list(ImportRowErrorSerializer(errors, many=True).data)

    @extend_schema_field(serializers.URLField())
    def get_error_file(self, job: ContactImport) -> str:
        return reverse("contact-import-error-file", kwargs={"pk": job.pk},
                       request=self.context.get("request"))


class ContactImportFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ContactImport.Status.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = ContactImport
        fields = ["status", "format"]


def _format_of(filename: str, given: str | None) -> str:
    if given:
        return given
    lower = filename.lower()
    return (ContactImport.Format.JSONL if lower.endswith((".jsonl", ".ndjson"))
            else ContactImport.Format.CSV)


class ContactImportViewSet(WorkspaceScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                           viewsets.GenericViewSet):
    """The key's workspace's contact imports."""

    serializer_class = ContactImportSerializer
    filterset_class = ContactImportFilter
    ordering_fields = ["created_at"]
    search_fields = ["filename"]
    # The one body this viewset takes is the upload.
    parser_classes = [MultiPartParser]

    model = ContactImport

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[ContactImport]:
        return contact_imports_list(workspace=workspace)

    @extend_schema(request={"multipart/form-data": ImportUploadSerializer},
                   responses={202: ContactImportSerializer})
    def create(self, request: Request) -> Response:
        """Upload a file of contacts; the import runs in the background (poll the answer's
        id). The same file with the same Idempotency-Key is imported once."""
        def handler() -> Response:
            serializer = ImportUploadSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            upload = data["file"]
            name = upload.name or ""
            try:
                job = imports.import_create(
                    workspace=self.workspace, chunks=upload.chunks(imports.CHUNK_BYTES),
                    filename=name, file_format=_format_of(name, data.get("format")),
                    mapping=data.get("mapping"), default_region=data.get("default_region", ""),
                    size=upload.size or 0)
            except imports.ImportInvalid as exc:
                raise ApiError(400, str(exc), fields=exc.fields) from exc
            return Response(self.get_serializer(job).data, status=202)
        return idempotent(request, handler)

    @extend_schema(responses={(200, "text/csv"): OpenApiResponse(
        OpenApiTypes.STR, description="row, field, error, then the row's own columns "
                                      "(CSV) or the JSON line as `record`.")})
    @action(detail=True, methods=["get"], url_path="errors.csv", url_name="error-file",
            renderer_classes=[JSONRenderer, CSVRenderer],
            content_negotiation_class=ExportNegotiation)
    def error_file(self, request: Request, pk: str | None = None) -> StreamingHttpResponse:
        """Download the import's failed rows as CSV, with why each failed."""
        job = self.get_object()
        return csv_stream(imports.error_rows(job=job), f"import-{job.pk}-errors.csv")
