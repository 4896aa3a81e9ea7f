"""How the API shows the records of the bottom layer (also the `data` of their events)."""
from __future__ import annotations

from rest_framework import serializers

from core.models import DeadLetter


class DeadLetterSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeadLetter
        fields = ["id", "kind", "source_id", "channel", "flow_id", "error", "error_code",
                  "attempts", "payload", "status", "replay_count", "replay_result",
                  "replayed_at", "replayed_by", "created_at"]
        read_only_fields = fields
