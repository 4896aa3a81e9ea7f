"""Suppression list REST API: list, filter, add, remove (README.md, "Recipients' rules")."""
from __future__ import annotations

from typing import Any

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ApiError, StrictCharField, WorkspaceScoped
from core.models import Workspace
from messaging.models import Suppression
from messaging.recipients.suppressions import (
    LISTS,
    normalize_address,
    suppression_add,
    suppression_remove,
)
from messaging.selectors import suppressions_list


def list_choices() -> list[tuple[str, str]]:
    """Return the lists a suppression belongs to, as choices (each channel's spec names its
    list; sms covers mms), read when asked so a channel registered later counts."""
    return [(name, name) for name in LISTS]


class SuppressionSerializer(serializers.ModelSerializer):
    channel = serializers.ChoiceField(choices=list_choices())
    address = StrictCharField(max_length=320)
    reason = serializers.ChoiceField(choices=Suppression.Reason.choices,
                                     default=Suppression.Reason.MANUAL)

    class Meta:
        model = Suppression
        fields = ["id", "channel", "address", "reason", "source", "created_at"]
        read_only_fields = ["id", "source", "created_at"]

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        channel = fields["channel"]
        if isinstance(channel, serializers.ChoiceField):
            channel.choices = list_choices()
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            attrs["address"] = normalize_address(attrs["channel"], attrs["address"])
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"address": exc.messages}) from exc
        return attrs


class SuppressionFilter(django_filters.FilterSet):
    channel = django_filters.ChoiceFilter(choices=list_choices)
    reason = django_filters.ChoiceFilter(choices=Suppression.Reason.choices)
    address = django_filters.CharFilter(method="filter_address")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Suppression
        fields = ["channel", "reason"]

    def filter_address(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        """Match the address as stored (a phone in any format finds its E.164 row)."""
        channel = self.data.get("channel")
        for candidate in ([channel] if channel in LISTS else list(LISTS)):
            try:
                return queryset.filter(address=normalize_address(candidate, value))
            except DjangoValidationError:
                continue
        return queryset.none()


ADDRESS_QUERY = [OpenApiParameter("channel", str, enum=list(LISTS), required=True),
                 OpenApiParameter("address", str, required=True)]


class SuppressionViewSet(WorkspaceScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                         mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The key's workspace's suppression list."""

    serializer_class = SuppressionSerializer
    filterset_class = SuppressionFilter
    ordering_fields = ["created_at", "address"]
    search_fields = ["address", "source"]

    model = Suppression

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[Suppression]:
        return suppressions_list(workspace=workspace)

    def create(self, request: Request) -> Response:
        """Add an address (201), or answer the row already there (200)."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        auth = getattr(request, "auth", None)
        row, created = suppression_add(
            workspace=self.workspace, channel=data["channel"], address=data["address"],
            reason=data["reason"], source=f"api:{getattr(auth, 'prefix', '')}")
        return Response(SuppressionSerializer(row).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(operation_id="v1_suppressions_remove_by_address", parameters=ADDRESS_QUERY,
                   responses={204: None})
    def remove(self, request: Request) -> Response:
        """Take an address off the list by channel and address (204; 404 if absent)."""
        channel, address = (request.query_params.get("channel", ""),
                            request.query_params.get("address", ""))
        if channel not in LISTS:
            raise ApiError(400, f"Give channel ({' or '.join(LISTS)}) and address.",
                           fields={"channel": [f"Use one of {', '.join(LISTS)}."]})
        try:
            removed = suppression_remove(workspace=self.workspace, channel=channel,
                                         address=address)
        except DjangoValidationError as exc:
            raise ApiError(400, "Invalid address.", fields={"address": exc.messages}) from exc
        if not removed:
            raise ApiError(404, "That address is not on the list.", code="not_found")
        return Response(status=status.HTTP_204_NO_CONTENT)
