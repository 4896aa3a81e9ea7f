"""Reads behind the dead letters page."""
from __future__ import annotations

from django.urls import reverse

from core.models import DeadLetter
from monitoring.dashboard.selectors.common import as_uuid


def dead_letter_link(letter: DeadLetter) -> str:
    """Return the dashboard page of what a dead letter points at ("" when unknown)."""
    payload = letter.payload if isinstance(letter.payload, dict) else {}
    if letter.kind == DeadLetter.Kind.MESSAGE and as_uuid(letter.source_id):
        return reverse("dashboard:message-detail", args=[letter.source_id])
    execution_id = payload.get("execution_id")
    if letter.kind == DeadLetter.Kind.STEP and execution_id and as_uuid(execution_id):
        return reverse("dashboard:execution-detail", args=[execution_id])
    return ""
