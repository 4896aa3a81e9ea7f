"""How the API shows messages. Event payloads are built apart (messaging/events/payloads.py),
so a change here does not change the webhook contract."""
from __future__ import annotations

from typing import Any

from rest_framework import serializers

from messaging.delivery.failover import CALL_OUTCOMES
from messaging.models import (
    DeliveryAttempt,
    Message,
    SuppressedReason,
    TimelineEntry,
    WaitReason,
    metadata_public,
)


class BlankAsNullChoiceField(serializers.ChoiceField):
    """A choice the model stores as "" when there is none, answered as null: the schema then
    says "one of the choices, or null" (a nullable enum), which generated clients parse."""

    # Any, not str | None: the stubs type ChoiceField's answer as str, which null is not.
    def to_representation(self, value: Any) -> Any:
        return None if value in ("", None) else super().to_representation(value)


class PublicMetadataField(serializers.JSONField):
    """A message's metadata as its sender gave it: the service's own keys (those starting
    with INTERNAL_METADATA_PREFIX, which no sender can write) are for its pipeline alone
    (messaging.models.metadata_public)."""

    def to_representation(self, value: Any) -> Any:
        return super().to_representation(metadata_public(value))


class ProviderCallSerializer(serializers.Serializer):
    """One provider call of an attempt (several when it failed over)."""

    provider = serializers.CharField(read_only=True)
    idempotency_key = serializers.CharField(read_only=True)
    # skipped: not called, its circuit breaker was open.
    outcome = serializers.ChoiceField(choices=CALL_OUTCOMES, read_only=True)
    status_code = serializers.IntegerField(read_only=True, allow_null=True)
    error_code = serializers.CharField(read_only=True)
    error = serializers.CharField(read_only=True)
    ms = serializers.FloatField(read_only=True, allow_null=True)


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    provider_calls = ProviderCallSerializer(many=True, read_only=True)

    class Meta:
        model = DeliveryAttempt
        fields = ["number", "provider", "task_id", "started_at", "finished_at", "outcome",
                  "status_code", "error", "error_code", "response", "possible_duplicate",
                  "provider_calls"]


class MessageSerializer(serializers.ModelSerializer):
    contact_id = serializers.UUIDField(read_only=True, allow_null=True)
    # null, not "", when the message was not suppressed (README.md, "API").
    suppressed_reason = BlankAsNullChoiceField(choices=SuppressedReason.choices,
                                               read_only=True, allow_null=True)
    # Why a `scheduled` or `retrying` message waits (docs/glossary.md); null otherwise.
    waiting_for = BlankAsNullChoiceField(choices=WaitReason.choices, read_only=True,
                                         allow_null=True)
    # The subscription topic's key (README.md, "Subscription topics"), or null.
    topic: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="key", read_only=True, allow_null=True)
    # The template and version its content came from (README.md, "Templates"), or null.
    template_id = serializers.UUIDField(source="template_version.template_id", read_only=True,
                                        allow_null=True, default=None)
    template_version = serializers.IntegerField(source="template_version.number",
                                                read_only=True, allow_null=True, default=None)
    # Without the service's own keys (README.md, "Messages"); flow_context is not answered.
    metadata = PublicMetadataField(read_only=True)

    class Meta:
        model = Message
        fields = ["id", "channel", "direction", "status", "status_reason", "waiting_for",
                  "suppressed_reason",
                  "category", "topic", "template_id", "template_version",
                  "to", "sender", "contact_id", "priority", "content",
                  "rendered", "metadata", "scheduled_for", "due_at", "attempts",
                  "max_attempts", "provider", "provider_message_id", "response", "last_error",
                  "error_code", "possible_duplicate", "source", "created_at", "updated_at",
                  "sent_at", "delivered_at", "failed_at", "cancelled_at"]
        read_only_fields = fields


class TimelineEntrySerializer(serializers.ModelSerializer):
    """One fact of a message's life (README.md, "Timelines"). `count` > 1: the same fact
    happened that many times in a row (a rate-limit deferral), the last at `last_at`."""

    detail = serializers.DictField(read_only=True, help_text=(
        "What the entry says, by kind: accepted {source, status, api_key, flow_id, "
        "execution_id, node_id, execution_source, send_at, event, event_id}; deferred {until, "
        "check, reason}; suppressed {reason, check}; paused {reason, paused_by}; released "
        "{due, by}; rate_limited {until, rate, key}; provider_call {attempt, provider, "
        "status_code, latency_ms, outcome, error, error_code, possible_duplicate}; receipt "
        "{status, source, reported, error_code}; event {type, event_id, deliveries}; "
        "cancelled {by, from_status}. Keys without a value are left out."))

    class Meta:
        model = TimelineEntry
        fields = ["id", "kind", "at", "count", "last_at", "detail"]
        read_only_fields = fields
