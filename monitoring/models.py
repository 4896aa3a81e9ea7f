"""Dead letters: what failed for good, with enough to replay it."""
from __future__ import annotations

from django.db import models


class DeadLetter(models.Model):
    class Kind(models.TextChoices):
        MESSAGE = "message"
        STEP = "step"

    class Status(models.TextChoices):
        OPEN = "open"
        REPLAYED = "replayed"
        DISCARDED = "discarded"

    workspace = models.ForeignKey("messaging.Workspace", on_delete=models.CASCADE,
                                  related_name="dead_letters")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    source_id = models.CharField(max_length=64, db_index=True)  # message or step id
    channel = models.CharField(max_length=10, blank=True, default="")
    flow_id = models.CharField(max_length=64, blank=True, default="")
    error = models.TextField(blank=True, default="")
    error_code = models.CharField(max_length=50, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    replay_count = models.PositiveIntegerField(default=0)
    replay_result = models.TextField(blank=True, default="")
    replayed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["workspace", "status", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.source_id} ({self.status})"
