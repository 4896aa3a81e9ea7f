"""Helpers several dashboard pages share: the workspace's zone, ids, durations and JSON."""
from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import F, OuterRef, Q, QuerySet, Subquery

from core.models import Workspace
from messaging.models import Message


def workspace_tz(workspace: Workspace) -> ZoneInfo:
    """Return the workspace's time zone (UTC when the stored name is unusable)."""
    try:
        return ZoneInfo(workspace.timezone or "UTC")
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return ZoneInfo("UTC")


def workspace_with_latest_traffic(among: QuerySet[Workspace] | None = None
                                  ) -> Workspace | None:
    """Return the workspace (of `among`, default all) whose newest message is the newest
    (else the first by name): the one an operator opening the dashboard most likely came
    for. One index probe per workspace (workspace, -created_at), never a scan of every
    message."""
    latest = Message.objects.filter(workspace=OuterRef("pk")).order_by("-created_at")
    return ((Workspace.objects.all() if among is None else among)
            .annotate(last_message_at=Subquery(latest.values("created_at")[:1]))
            .order_by(F("last_message_at").desc(nulls_last=True), "name", "pk").first())


def as_uuid(text: str) -> uuid.UUID | None:
    """Return the UUID written in text, or None when it is not one."""
    try:
        return uuid.UUID(str(text).strip())
    except ValueError:
        return None


def contact_filter(text: str, prefix: str = "contact__") -> Q:
    """Return a filter matching a contact by id, external id, phone or email."""
    text = text.strip()
    query = (Q(**{f"{prefix}external_id": text}) | Q(**{f"{prefix}phone__startswith": text})
             | Q(**{f"{prefix}email__iexact": text}))
    contact_id = as_uuid(text)
    if contact_id is not None:
        query |= Q(**{f"{prefix}id": contact_id})
    return query


def seconds_of(value: timedelta | float | None) -> float | None:
    """Return seconds from a duration (databases return timedelta; be lenient)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def format_seconds(value: float | None) -> str:
    """Return a duration for people: 350 ms, 4.2 s, 3.5 min, 2.1 h, 1.5 d."""
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value / 60:.1f} min"
    if value < 86400:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def pretty_json(value: Any) -> str:
    """Return indented JSON for display ("" for empty values)."""
    if value in (None, "", {}, []):
        return ""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
