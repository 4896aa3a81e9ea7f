"""Messages REST API: send/schedule one or a batch, list, detail, cancel."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import django_filters
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator
from django.db.models import Prefetch
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ApiError, StrictCharField
from core.auth import workspace_of
from core.models import Contact
from core.phones import normalize_phone
from messaging import pipeline
from messaging.api.idempotency import idempotent
from messaging.models import Channel, DeliveryAttempt, Message, Priority
from messaging.ssrf import UnsafeURL, check_url_literal

# Which content fields each channel takes; anything else is refused, not ignored.
CHANNEL_FIELDS = {
    "sms": {"body"},
    "mms": {"body", "media_urls"},
    "email": {"subject", "html", "text"},
    "ai": {"prompt", "system", "model", "callback_url"},
    "webhook": {"url", "payload", "headers"},
}
CONTENT_FIELDS = set().union(*CHANNEL_FIELDS.values())
COMMON_FIELDS = {"channel", "to", "contact_id", "contact_external_id", "send_at",
                 "delay_seconds", "metadata", "priority"}
MAX_DELAY_SECONDS = 366 * 24 * 3600


def safe_url(value: str, *, https_only: bool = False) -> str:
    """Refuse URLs that are not http(s), or (literally) point at private networks."""
    if https_only and not value.lower().startswith("https://"):
        raise serializers.ValidationError("Must be an https:// URL.")
    try:
        check_url_literal(value)
    except UnsafeURL as exc:
        raise serializers.ValidationError(str(exc)) from exc
    return value


class MessageCreateSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    to = StrictCharField(required=False, max_length=320)
    contact_id = serializers.UUIDField(required=False)
    contact_external_id = StrictCharField(required=False, max_length=200)
    body = StrictCharField(required=False, max_length=1600)
    media_urls = serializers.ListField(child=serializers.URLField(max_length=2048),
                                       required=False, min_length=1, max_length=10)
    subject = StrictCharField(required=False, max_length=998)
    html = StrictCharField(required=False, max_length=512_000)
    text = StrictCharField(required=False, max_length=512_000)
    prompt = StrictCharField(required=False, max_length=32_000)
    system = StrictCharField(required=False, max_length=32_000)
    model = StrictCharField(required=False, max_length=100)
    callback_url = serializers.URLField(required=False, max_length=2048)
    url = serializers.URLField(required=False, max_length=2048)
    payload = serializers.JSONField(required=False)
    headers = serializers.DictField(child=StrictCharField(max_length=1000),
                                    required=False)
    send_at = serializers.DateTimeField(required=False)
    delay_seconds = serializers.IntegerField(required=False, min_value=0,
                                             max_value=MAX_DELAY_SECONDS)
    metadata = serializers.DictField(required=False)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)

    def to_internal_value(self, data: Any) -> dict:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object."]})
        unknown = set(data) - COMMON_FIELDS - CONTENT_FIELDS
        value = super().to_internal_value(data)
        errors = {name: ["Unknown field."] for name in sorted(unknown)}
        channel = value.get("channel")
        for name in sorted((set(data) & CONTENT_FIELDS) - CHANNEL_FIELDS.get(channel, set())):
            errors[name] = [f"Not used by the {channel} channel."]
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def validate_send_at(self, value):
        raw = self.initial_data.get("send_at") if isinstance(self.initial_data, dict) else None
        if isinstance(raw, str) and not _has_offset(raw):
            raise serializers.ValidationError("Give an ISO 8601 time with an offset "
                                              "(2026-01-01T09:00:00+01:00 or ...Z).")
        tolerance = timedelta(seconds=settings.SEND_AT_PAST_TOLERANCE_SECONDS)
        if value < timezone.now() - tolerance:
            raise serializers.ValidationError("Is in the past.")
        return value

    def validate_media_urls(self, value: list[str]) -> list[str]:
        return [safe_url(url, https_only=True) for url in value]

    def validate_callback_url(self, value: str) -> str:
        return safe_url(value)

    def validate_url(self, value: str) -> str:
        return safe_url(value)

    def validate(self, attrs: dict) -> dict:
        if "send_at" in attrs and "delay_seconds" in attrs:
            raise serializers.ValidationError({"send_at": ["Give send_at or delay_seconds, "
                                                           "not both."]})
        attrs["contact"] = self._contact(attrs)
        attrs["to"] = self._recipient(attrs)
        self._require_content(attrs)
        return attrs

    def _contact(self, attrs: dict) -> Contact | None:
        cache: dict = self.context.setdefault("contacts", {})
        workspace = self.context["workspace"]
        for field, lookup in (("contact_id", "pk"), ("contact_external_id", "external_id")):
            if field in attrs:
                ref = (lookup, str(attrs[field]))
                if ref not in cache:
                    cache[ref] = Contact.objects.filter(workspace=workspace,
                                                        **{lookup: attrs[field]}).first()
                if cache[ref] is None:
                    raise serializers.ValidationError({field: ["No such contact."]})
                return cache[ref]
        return None

    def _recipient(self, attrs: dict) -> str:
        channel, contact, to = attrs["channel"], attrs["contact"], attrs.get("to", "")
        if channel in ("sms", "mms"):
            to = to or (contact.phone if contact else "")
            if not to:
                raise serializers.ValidationError({"to": ["A phone number is required "
                                                          "(to, or a contact with a phone)."]})
            try:
                return normalize_phone(to)
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"to": exc.messages}) from exc
        if channel == "email":
            to = to or (contact.email if contact else "")
            try:
                EmailValidator()(to)
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"to": ["A valid email address is required "
                                                          "(to, or a contact with an email)."]}
                                                  ) from exc
            return to
        if channel == "webhook":
            return attrs.get("url", "")
        return to

    def _require_content(self, attrs: dict) -> None:
        channel = attrs["channel"]
        required = {"sms": ["body"], "mms": ["media_urls"], "email": ["subject"],
                    "ai": ["prompt"], "webhook": ["url", "payload"]}[channel]
        errors = {name: ["This field is required."] for name in required if name not in attrs}
        if channel == "email" and not (attrs.get("html") or attrs.get("text")):
            errors["html"] = ["Give html and/or text."]
        if errors:
            raise serializers.ValidationError(errors)

    def build(self) -> Message:
        """Return the unsaved message these validated fields describe."""
        data = self.validated_data
        send_at = data.get("send_at")
        if data.get("delay_seconds"):
            send_at = timezone.now() + timedelta(seconds=data["delay_seconds"])
        content = {k: data[k] for k in CHANNEL_FIELDS[data["channel"]] if k in data}
        return pipeline.message_build(
            workspace=self.context["workspace"], channel=data["channel"], to=data["to"],
            content=content, contact=data["contact"], send_at=send_at,
            metadata=data.get("metadata") or {}, priority=data["priority"],
            source=self.context.get("source", "api"))


def _has_offset(raw: str) -> bool:
    tail = raw.strip()[10:]
    return tail.endswith(("Z", "z")) or "+" in tail or "-" in tail


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "provider", "task_id", "started_at", "finished_at", "outcome",
                  "status_code", "error", "error_code", "response", "possible_duplicate"]


class MessageSerializer(serializers.ModelSerializer):
    contact_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = ["id", "channel", "status", "to", "contact_id", "priority", "content",
                  "rendered", "metadata", "scheduled_for", "due_at", "attempts",
                  "max_attempts", "provider", "provider_message_id", "response", "last_error",
                  "error_code", "possible_duplicate", "source", "created_at", "updated_at",
                  "sent_at", "delivered_at", "failed_at", "cancelled_at"]
        read_only_fields = fields


class MessageDetailSerializer(MessageSerializer):
    attempts_log = DeliveryAttemptSerializer(source="delivery_attempts", many=True,
                                             read_only=True)

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "attempts_log"]
        read_only_fields = fields


class BatchSerializer(serializers.Serializer):
    messages = serializers.ListField(child=serializers.JSONField(), min_length=1,
                                     max_length=settings.MESSAGE_BATCH_LIMIT)


class MessageFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Message._meta.get_field(
        "status").choices)
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    contact_id = django_filters.UUIDFilter(field_name="contact_id")
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

    def filter_metadata_key(self, queryset, name: str, value: str):
        """metadata_key=k has key k; with metadata_value=v, k equals v (as a string)."""
        wanted = self.data.get("metadata_value")
        if wanted is None:
            return queryset.filter(metadata__has_key=value)
        return queryset.filter(**{f"metadata__{value}": wanted})

    def filter_noop(self, queryset, name: str, value: str):
        return queryset  # read by filter_metadata_key


class MessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                     viewsets.GenericViewSet):
    """Messages of the key's workspace."""

    filterset_class = MessageFilter
    ordering_fields = ["created_at", "scheduled_for", "sent_at"]
    search_fields = ["to"]

    def get_queryset(self):
        queryset = Message.objects.filter(workspace=workspace_of(self.request))
        if self.action == "retrieve":
            queryset = queryset.prefetch_related(
                Prefetch("delivery_attempts", DeliveryAttempt.objects.order_by("number")))
        return queryset

    def get_serializer_class(self):
        return MessageDetailSerializer if self.action == "retrieve" else MessageSerializer

    def _context(self, source: str = "api") -> dict:
        return {"workspace": workspace_of(self.request), "request": self.request,
                "source": source}

    @extend_schema(request=MessageCreateSerializer, responses={201: MessageSerializer})
    def create(self, request: Request) -> Response:
        """Send or schedule one message (201; status queued or scheduled)."""
        def handler() -> Response:
            serializer = MessageCreateSerializer(data=request.data, context=self._context())
            serializer.is_valid(raise_exception=True)
            message = pipeline.message_create_many(messages=[serializer.build()])[0]
            return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)
        return idempotent(request, handler)

    @extend_schema(request=MessageCreateSerializer, responses={200: MessageSerializer})
    @action(detail=False, methods=["post"])
    def validate(self, request: Request) -> Response:
        """Check a message exactly as POST /messages would, creating nothing (200 or 400)."""
        serializer = MessageCreateSerializer(data=request.data, context=self._context())
        serializer.is_valid(raise_exception=True)
        return Response({"valid": True, "message": MessageSerializer(serializer.build()).data})

    @extend_schema(request=BatchSerializer, responses={201: MessageSerializer(many=True)})
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
            created = pipeline.message_create_many(messages=built)
            return Response({"count": len(created),
                             "messages": MessageSerializer(created, many=True).data},
                            status=status.HTTP_201_CREATED)
        return idempotent(request, handler)

    @extend_schema(request=None, responses={200: MessageSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel while scheduled, queued or retrying; 409 otherwise."""
        message = self.get_object()
        try:
            message = pipeline.message_cancel(message=message)
        except pipeline.NotCancellable as exc:
            raise ApiError(409, str(exc), code="not_cancellable") from exc
        return Response(MessageSerializer(message).data)
