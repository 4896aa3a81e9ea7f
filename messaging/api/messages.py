"""Messages REST API: send/schedule one or a batch, list, detail, cancel."""
from __future__ import annotations

from typing import Any, cast

import django_filters
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ApiError, WorkspaceScoped
from core.audit import actor_of
from core.models import Scope, Workspace
from core.publishing import in_background
from messaging.api.compose_fields import input_fields
from messaging.api.idempotency import idempotent
from messaging.api.serializers import (
    DeliveryAttemptSerializer,
    MessageSerializer,
    TimelineEntrySerializer,
)
from messaging.compose import MessageInvalid, message_compose
from messaging.delivery import creation
from messaging.models import (
    Category,
    Channel,
    Direction,
    Message,
    SuppressedReason,
)
from messaging.selectors import (
    RecipientField,
    messages_list,
    messages_to,
    timeline_list,
)


def origin_of(request: Request) -> dict[str, Any]:
    """Return what a message's `accepted` timeline entry says about the request: the
    prefix of the API key that sent it."""
    prefix = getattr(request.auth, "prefix", "")
    return {"api_key": prefix} if prefix else {}


def error_fields(exc: DjangoValidationError) -> dict[str, Any]:
    """Return a refused message's errors per field, as the API answers them."""
    return exc.fields if isinstance(exc, MessageInvalid) else exc.message_dict


# A shell around messaging.compose: the rules are the composer's, and so are the fields (built
# from its inputs by compose_fields, they describe the request in the API schema). No
# docstring: it would show in that schema.
class MessageCreateSerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        """Return the composer's input fields (for the schema and browsable forms)."""
        return input_fields()

    def to_internal_value(self, data: Any) -> dict:
        """Compose the message, answering the composer's errors field by field."""
        # One cache per request, shared by a batch's messages (the context is a plain dict).
        contacts: dict = cast(dict, self.context).setdefault("contacts", {})
        try:
            message = message_compose(workspace=self.context["workspace"], data=data,
                                      source=self.context.get("source", "api"),
                                      contacts_cache=contacts)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(error_fields(exc)) from exc
        return {"message": message}

    def run_validators(self, value: Any) -> None:
        """Run no validators: the composer checked everything in to_internal_value and this
        serializer declares none. DRF's default first builds every input field (for its
        read-only defaults), which cost more than half of a batch request's CPU."""

    def build(self) -> Message:
        """Return the unsaved message these validated fields describe."""
        return self.validated_data["message"]


class MessageDetailSerializer(MessageSerializer):
    attempts_log = DeliveryAttemptSerializer(source="delivery_attempts", many=True,
                                             read_only=True)

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "attempts_log"]
        read_only_fields = fields


class BatchSerializer(serializers.Serializer):
    messages = serializers.ListField(child=serializers.JSONField(), min_length=1,
                                     max_length=settings.MESSAGE_BATCH_LIMIT)


class BatchCreatedSerializer(serializers.Serializer):
    """The answer to a batch: how many were created, and each as POST /messages answers it."""

    count = serializers.IntegerField()
    messages = MessageSerializer(many=True)


class MessagePreviewSerializer(MessageSerializer):
    """A message as it would be created: not saved, so it has no created_at or updated_at."""

    created_at = serializers.DateTimeField(read_only=True, allow_null=True)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)


class ValidatedSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    message = MessagePreviewSerializer()


class RecipientFilter(django_filters.CharFilter):
    field_class = RecipientField


class MessageFilter(django_filters.FilterSet):
    # Everything sent to a phone or an email address (and received from it), any status
    # and channel: "+1 (415) 555-2671" finds +14155552671, "Ada@Example.com" ada@example.com.
    recipient = RecipientFilter(method="filter_recipient")
    provider_message_id = django_filters.CharFilter(field_name="provider_message_id")
    contact_external_id = django_filters.CharFilter(field_name="contact__external_id")
    status = django_filters.MultipleChoiceFilter(choices=Message._meta.get_field(
        "status").choices)
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    category = django_filters.ChoiceFilter(choices=Category.choices)
    direction = django_filters.ChoiceFilter(choices=Direction.choices)
    suppressed_reason = django_filters.ChoiceFilter(choices=SuppressedReason.choices)
    contact_id = django_filters.UUIDFilter(field_name="contact_id")
    topic = django_filters.CharFilter(field_name="topic__key", help_text="A topic's key.")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    scheduled_after = django_filters.IsoDateTimeFilter(field_name="scheduled_for",
                                                       lookup_expr="gte")
    scheduled_before = django_filters.IsoDateTimeFilter(field_name="scheduled_for",
                                                        lookup_expr="lt")
    metadata_key = django_filters.CharFilter(method="filter_metadata_key")
    metadata_value = django_filters.CharFilter(method="filter_noop")

    class Meta:
        model = Message
        fields = ["status", "channel", "contact_id", "source"]

    def filter_metadata_key(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        """metadata_key=k has key k; with metadata_value=v, k equals v (as a string)."""
        wanted = self.data.get("metadata_value")
        if wanted is None:
            return queryset.filter(metadata__has_key=value)
        return queryset.filter(**{f"metadata__{value}": wanted})

    def filter_recipient(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return messages_to(queryset, value) if value else queryset

    def filter_noop(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return queryset  # read by filter_metadata_key


class MessageViewSet(WorkspaceScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                     viewsets.GenericViewSet):
    """Messages of the key's workspace."""

    write_scope = Scope.SEND  # sending, not configuration

    filterset_class = MessageFilter
    ordering_fields = ["created_at", "scheduled_for", "sent_at"]
    search_fields = ["to"]

    model = Message

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[Message]:
        return messages_list(workspace=workspace, with_attempts=self.action == "retrieve")

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return MessageDetailSerializer if self.action == "retrieve" else MessageSerializer

    def _context(self, source: str = "api") -> dict:
        return {"workspace": self.workspace, "request": self.request,
                "source": source}

    @extend_schema(request=MessageCreateSerializer, responses={201: MessageSerializer})
    def create(self, request: Request) -> Response:
        """Send or schedule one message (201; status queued or scheduled)."""
        def handler() -> Response:
            serializer = MessageCreateSerializer(data=request.data, context=self._context())
            serializer.is_valid(raise_exception=True)
            # Committed before the answer; the delivery task goes out from this process's
            # publishing thread, grouped with other requests' (core.publishing).
            with in_background():
                message = creation.message_create_many(messages=[serializer.build()],
                                                       origin=origin_of(request))[0]
            return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)
        return idempotent(request, handler)

    @extend_schema(request=MessageCreateSerializer, responses={200: ValidatedSerializer})
    @action(detail=False, methods=["post"])
    def validate(self, request: Request) -> Response:
        """Check a message exactly as POST /messages would, creating nothing (200 or 400)."""
        serializer = MessageCreateSerializer(data=request.data, context=self._context())
        serializer.is_valid(raise_exception=True)
        return Response(ValidatedSerializer({"valid": True, "message": serializer.build()}).data)

    @extend_schema(request=BatchSerializer, responses={201: BatchCreatedSerializer})
    @action(detail=False, methods=["post"])
    def batch(self, request: Request) -> Response:
        """Validate all (400 with errors by index, nothing created), then create all at once."""
        def handler() -> Response:
            outer = BatchSerializer(data=request.data)
            outer.is_valid(raise_exception=True)
            context = self._context()
            built, errors = [], {}
            for index, item in enumerate(outer.validated_data["messages"]):
                serializer = MessageCreateSerializer(data=item, context=context)
                if serializer.is_valid():
                    built.append(serializer.build())
                else:
                    errors[str(index)] = serializer.errors
            if errors:
                raise ApiError(400, f"{len(errors)} of {len(built) + len(errors)} messages are "
                                    "invalid; nothing was created.", fields={"messages": errors})
            with in_background():
                created = creation.message_create_many(messages=built,
                                                       origin=origin_of(request))
            answer = BatchCreatedSerializer({"count": len(created), "messages": created})
            return Response(answer.data, status=status.HTTP_201_CREATED)
        return idempotent(request, handler)

    @extend_schema(request=None, responses={200: MessageSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel while scheduled, queued or retrying; 409 otherwise."""
        message = self.get_object()
        try:
            message = creation.message_cancel(message=message, actor=actor_of(request, "api"))
        except creation.NotCancellable as exc:
            raise ApiError(409, str(exc), code="not_cancellable") from exc
        return Response(MessageSerializer(message).data)

    @extend_schema(responses={200: TimelineEntrySerializer(many=True)})
    @action(detail=True, methods=["get"], filter_backends=[])
    def timeline(self, request: Request, pk: str | None = None) -> Response:
        """List what happened to the message and why, oldest first (README.md,
        "Timelines")."""
        page = self.paginate_queryset(timeline_list(message=self.get_object()))
        return self.get_paginated_response(TimelineEntrySerializer(page, many=True).data)
