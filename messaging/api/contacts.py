"""Contacts REST API: list/filter/search, CRUD and upsert by external_id."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import CSVRenderer, ExportNegotiation, WorkspaceScoped, csv_stream
from core.models import Contact, Workspace, validate_locale, validate_timezone
from core.phones import normalize_phone
from core.services import contact_upsert
from messaging.api.topics import PreferencesSerializer, preferences_answer, preferences_update
from messaging.selectors import EXPORT_COLUMNS, contacts_export_rows, contacts_list


class ContactSerializer(serializers.ModelSerializer):
    phone = serializers.CharField(required=False, allow_blank=True, max_length=32)
    timezone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    locale = serializers.CharField(required=False, allow_blank=True, max_length=35,
                                   help_text='A language tag ("de", "de-AT"): the variant '
                                             "of a template the contact gets.")
    external_id = serializers.CharField(required=False, allow_null=True, max_length=200)

    class Meta:
        model = Contact
        fields = [
            "id", "external_id", "first_name", "last_name", "phone", "email", "timezone",
            "locale", "attributes", "sms_subscribed", "email_subscribed", "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_phone(self, value: str) -> str:
        if not value:
            return ""
        try:
            return normalize_phone(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages[0]) from exc

    def validate_timezone(self, value: str) -> str:
        return _model_checked(validate_timezone, value)

    def validate_locale(self, value: str) -> str:
        return _model_checked(validate_locale, value)

    def validate_attributes(self, value: object) -> dict:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value

    def validate_external_id(self, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        workspace = self.context["workspace"]
        taken = Contact.objects.filter(workspace=workspace, external_id=value)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError("A contact with this external_id already exists.")
        return value


class ContactUpsertSerializer(ContactSerializer):
    external_id = serializers.CharField(max_length=200)

    def validate_external_id(self, value: str | None) -> str | None:
        return value  # upsert targets the existing contact by design


class ContactFilter(django_filters.FilterSet):
    external_id = django_filters.CharFilter()
    email = django_filters.CharFilter(lookup_expr="iexact")
    phone = django_filters.CharFilter(method="filter_phone")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Contact
        fields = ["external_id", "email", "phone", "sms_subscribed", "email_subscribed"]

    def filter_phone(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        try:
            value = normalize_phone(value)
        except DjangoValidationError:
            return queryset.none()
        return queryset.filter(phone=value)


class ContactViewSet(WorkspaceScoped, viewsets.ModelViewSet):
    """Contacts of the key's workspace."""

    serializer_class = ContactSerializer
    filterset_class = ContactFilter
    search_fields = ["first_name", "last_name", "email", "phone", "external_id"]
    ordering_fields = ["created_at", "updated_at", "last_name"]

    model = Contact

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[Contact]:
        return contacts_list(workspace=workspace)

    @extend_schema(responses={(200, "text/csv"): OpenApiResponse(
        OpenApiTypes.STR, description="One row per contact: " + ", ".join(EXPORT_COLUMNS)
        + " (attributes as a JSON object).")})
    @action(detail=False, methods=["get"], url_path="export",
            renderer_classes=[JSONRenderer, CSVRenderer],
            content_negotiation_class=ExportNegotiation)
    def export(self, request: Request) -> StreamingHttpResponse:
        """Download the contacts as CSV, streamed; the list's filters, search and ordering
        apply."""
        contacts = self.filter_queryset(self.get_queryset())
        return csv_stream(contacts_export_rows(contacts=contacts), "contacts.csv")

    @extend_schema(request=ContactUpsertSerializer,
                   responses={200: ContactSerializer, 201: ContactSerializer})
    @action(detail=False, methods=["post"], url_path="upsert")
    def upsert(self, request: Request) -> Response:
        """Create the contact with this external_id, or update the existing one."""
        serializer = ContactUpsertSerializer(data=request.data,
                                             context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        external_id = data.pop("external_id")
        contact, created = contact_upsert(workspace=self.workspace,
                                          external_id=external_id, data=data)
        return Response(ContactSerializer(contact).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(methods=["GET"], operation_id="v1_contacts_preferences_retrieve",
                   request=None, responses={200: PreferencesSerializer})
    @extend_schema(methods=["PUT"], operation_id="v1_contacts_preferences_update",
                   request=PreferencesSerializer, responses={200: PreferencesSerializer})
    @action(detail=True, methods=["get", "put"], url_path="preferences")
    def preferences(self, request: Request, pk: str | None = None) -> Response:
        """The contact's preference per subscription topic and channel (README.md,
        "Subscription topics"). PUT sets the choices it lists; a topic not listed keeps its
        value. An unknown topic, or turning a critical topic off, answers 400 and changes
        nothing."""
        contact = self.get_object()
        if request.method == "PUT":
            return Response(preferences_update(contact, request.data))
        return Response(preferences_answer(contact))


def _model_checked(validator: Callable[[str], None], value: str) -> str:
    """Return a non-empty value the model's validator accepts, its first message as the
    field's error otherwise (blank stays blank)."""
    if value:
        try:
            validator(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages[0]) from exc
    return value
