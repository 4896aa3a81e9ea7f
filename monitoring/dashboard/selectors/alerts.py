"""Reads behind the alerts page."""
from __future__ import annotations

from typing import Any

from django.db.models import Count, Q

from core.models import Workspace
from monitoring import alerts
from monitoring.models import AlertEvent, AlertRule


def alerts_context(workspace: Workspace, *, events: int = 50) -> dict[str, Any]:
    """Return the workspace's alert rules (with open incidents) and its recent events."""
    rules = (AlertRule.objects.filter(workspace=workspace).select_related("flow")
             .annotate(open_events=Count("events", filter=Q(events__resolved_at__isnull=True)))
             .order_by("name", "pk"))
    recent = list(AlertEvent.objects.filter(workspace=workspace).select_related("rule")
                  .order_by("-triggered_at", "-pk")[:events])
    delivery = alerts.alert_event_delivery(events=recent)
    return {"rules": rules, "events": [(event, delivery.get(event.pk, {})) for event in recent]}
