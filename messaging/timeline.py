"""A message's timeline: what happened to it and why, one append-only row per fact
(README.md, "Timelines").

Each writer adds its entries in the transaction of the status change they describe, so the
timeline and the status never disagree, and a batch's entries go in one INSERT. A fact that
repeats (a rate-limit deferral) is counted on the message's latest entry when that entry is
the same fact, instead of being written again.

It sits low in messaging (it reads only models and settings) because every room writes it:
creation and the delivery pipeline, the events outbox, the receipts' transitions.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import F, Max

from messaging.models import Message, TimelineEntry, TimelineKind

# Metadata keys of a flow send that say where it comes from (flows.nodes.send).
FLOW_KEYS = ("flow_id", "execution_id", "node_id")


def enabled() -> bool:
    """Tell whether timelines are written (TIMELINE_ENABLED; off only to measure the cost)."""
    return bool(settings.TIMELINE_ENABLED)


@dataclass(slots=True)
class Entry:
    """An entry to write: a plain record, not a TimelineEntry, because building a model
    instance per entry cost more CPU on the delivery path than writing the row."""

    message_id: Any
    kind: str
    at: datetime
    detail: dict[str, Any] = field(default_factory=dict)
    count: int = 1


def entry(*, message_id: Any, kind: str, at: datetime, **detail: Any) -> Entry:
    """Return an entry to write; detail values that are None or "" are left out."""
    return Entry(message_id, kind, at, {
        key: value for key, value in detail.items() if value is not None and value != ""})


def entries_write(*, entries: Sequence[Entry]) -> None:
    """Insert the entries in one statement (in the caller's transaction).

    On PostgreSQL one INSERT ... SELECT FROM unnest(arrays), without RETURNING: on the hot
    path Django's bulk_create (a placeholder per value, ids returned) cost several times
    more than the row writes themselves."""
    if not entries or not enabled():
        return
    if connection.vendor != "postgresql":
        TimelineEntry.objects.bulk_create([TimelineEntry(
            message_id=e.message_id, kind=e.kind, at=e.at, detail=e.detail, count=e.count)
            for e in entries])
        return
    sql, params = insert_sql(entries)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def insert_sql(entries: Sequence[Entry]) -> tuple[str, list[Any]]:
    """Return PostgreSQL's INSERT of the entries and its parameters, for a caller that runs
    it inside a statement of its own (WITH timeline AS (...) ...): each statement costs a
    round trip, and on the delivery path the timeline's would be one per transaction."""
    encode = DjangoJSONEncoder().encode
    return (f'INSERT INTO "{TimelineEntry._meta.db_table}" '
            '("message_id", "kind", "at", "count", "detail") SELECT * FROM '
            "unnest(%s::uuid[], %s::varchar[], %s::timestamptz[], %s::integer[], %s::jsonb[])",
            [[e.message_id for e in entries], [e.kind for e in entries],
             [e.at for e in entries], [e.count for e in entries],
             [encode(e.detail) for e in entries]])


def counted_write(*, entries: Sequence[Entry]) -> None:
    """Write entries of facts that repeat: where a message's latest entry is the same kind,
    count one more on it (and its last time); else insert the entry. Three statements per
    batch whatever its size: find the latest entries, count on them, insert the rest."""
    if not entries or not enabled():
        return
    ids = {e.message_id for e in entries}
    latest = (TimelineEntry.objects.filter(message_id__in=ids).values("message_id")
              .annotate(last=Max("id")).values_list("last", flat=True))
    same: dict[tuple[Any, str], int] = {
        (str(message_id), kind): pk for pk, message_id, kind in TimelineEntry.objects.filter(
            pk__in=list(latest)).values_list("pk", "message_id", "kind")}
    counted: list[tuple[Any, Entry]] = []
    fresh: list[tuple[Any, Entry]] = []
    for e in entries:
        pk = same.get((str(e.message_id), e.kind))
        (counted if pk is not None else fresh).append((pk, e))
    if counted:
        TimelineEntry.objects.filter(pk__in=[pk for pk, _ in counted]).update(
            count=F("count") + 1, last_at=max(e.at for _, e in counted))
    entries_write(entries=[e for _, e in fresh])


def accepted(messages: Iterable[Message], at: datetime, origin: dict[str, Any] | None = None,
             origins: dict[Any, dict[str, Any]] | None = None) -> list[Entry]:
    """Return the `accepted` entries of new messages: their source, the caller's `origin`
    for all (the API key's prefix) or `origins` per message id (what started a flow's
    execution), a flow send's flow, execution and node, and a send_at they wait for.
    None when timelines are off: building them is part of what they cost."""
    if not enabled():
        return []
    made = []
    for message in messages:
        own = (origins or {}).get(message.pk) or {}
        metadata = message.metadata or {}
        detail = {key: metadata[key] for key in FLOW_KEYS if metadata.get(key)}
        made.append(entry(message_id=message.pk, kind=TimelineKind.ACCEPTED, at=at,
                          source=message.source, status=message.status,
                          send_at=message.scheduled_for, **detail, **(origin or {}), **own))
    return made
