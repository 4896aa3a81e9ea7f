"""How the API shows messages (also the `data` of message events: messaging.events)."""
from __future__ import annotations

from rest_framework import serializers

from messaging.models import DeliveryAttempt, Message


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "provider", "task_id", "started_at", "finished_at", "outcome",
                  "status_code", "error", "error_code", "response", "possible_duplicate"]


class MessageSerializer(serializers.ModelSerializer):
    contact_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = ["id", "channel", "direction", "status", "status_reason", "suppressed_reason",
                  "category",
                  "to", "sender", "contact_id", "priority", "content",
                  "rendered", "metadata", "scheduled_for", "due_at", "attempts",
                  "max_attempts", "provider", "provider_message_id", "response", "last_error",
                  "error_code", "possible_duplicate", "source", "created_at", "updated_at",
                  "sent_at", "delivered_at", "failed_at", "cancelled_at"]
        read_only_fields = fields
