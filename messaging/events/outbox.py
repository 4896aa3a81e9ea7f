"""Emitting events: one webhook delivery per event and subscribed endpoint (and per status
callback), written in the caller's transaction and published after commit.

Cost: one SELECT of the workspaces' enabled endpoints and one bulk INSERT per status-change
batch; nothing more when nobody listens.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from core.models import DeadLetter
from messaging.building import message_build
from messaging.channels import WEBHOOK
from messaging.events.payloads import dead_letter_data, message_data
from messaging.events.types import (
    ALL_EVENTS,
    CALLBACK_SOURCE,
    DEAD_LETTER_CREATED,
    EVENT_SOURCE,
    EVENT_TYPE_FIELD,
    QUIET_SOURCES,
    Event,
)
from messaging.models import Category, Message, TimelineKind, WebhookEndpoint
from messaging.providers.webhook import EVENT_ID_FIELD
from messaging.publishing import publish
from messaging.timeline import accepted, entries_write, entry

# Deliveries written per INSERT statement.
INSERT_BATCH = 500


def event_emit(*, workspace_id: Any, type: str, data: dict[str, Any],  # noqa: A002
               callback_url: str = "") -> list[Message]:
    """Emit one event (see events_emit)."""
    return events_emit(events=[Event(workspace_id=workspace_id, type=type, data=data,
                                     callback_url=callback_url)])


def events_emit(*, events: Sequence[Event],
                endpoints: dict[str, list[WebhookEndpoint]] | None = None) -> list[Message]:
    """Write one delivery per event and subscribed, enabled endpoint (and per status
    callback) in the caller's transaction; publish them after commit. Return them.
    `endpoints` is what `subscribers` answered for these workspaces, if already read."""
    if not events:
        return []
    if endpoints is None:
        endpoints = subscribers({event.workspace_id for event in events})
    deliveries: list[Message] = []
    for event in events:
        body = event.payload()
        for endpoint in endpoints.get(str(event.workspace_id), ()):
            if subscribed(endpoint.events, event.type):
                deliveries.append(delivery_build(event=event, body=body, url=endpoint.url,
                                                 endpoint=endpoint))
        if event.callback_url:
            deliveries.append(delivery_build(event=event, body=body, url=event.callback_url))
    if deliveries:
        deliveries_insert(deliveries=deliveries)
    return deliveries


def deliveries_insert(*, deliveries: list[Message]) -> None:
    """Insert event deliveries (in the caller's transaction, if any) and publish them after
    commit."""
    with transaction.atomic():
        Message.objects.bulk_create(deliveries, batch_size=INSERT_BATCH)
        entries_write(entries=accepted(deliveries, timezone.now(), origins={
            d.pk: {"event": d.metadata.get(EVENT_TYPE_FIELD), "event_id":
                   d.metadata.get(EVENT_ID_FIELD)} for d in deliveries}))
        transaction.on_commit(lambda: publish(deliveries))


def delivery_build(*, event: Event, body: Any, url: str,
                   endpoint: WebhookEndpoint | None = None,
                   parent: Message | None = None) -> Message:
    """Return the unsaved webhook message carrying an event's body to one URL (an
    endpoint's, or a message's status callback when there is no endpoint). The body is
    event.payload(), or for a replay the body first sent."""
    return message_build(
        workspace_id=event.workspace_id, channel=WEBHOOK, to=url,
        content={"url": url, "payload": body},
        metadata={EVENT_ID_FIELD: event.id, EVENT_TYPE_FIELD: event.type},
        source=EVENT_SOURCE if endpoint is not None else CALLBACK_SOURCE,
        webhook_endpoint=endpoint, parent=parent, category=Category.TRANSACTIONAL)


# Workspaces this process found without an enabled endpoint, and when (time.monotonic()):
# most have none, and a message then goes without the lookup for a short while.
_without_endpoints: dict[str, float] = {}


def subscribers(workspace_ids: Iterable[Any]) -> dict[str, list[WebhookEndpoint]]:
    """Return the enabled endpoints of these workspaces, by workspace id (one query, none
    when each was seen without any in the last EVENT_ENDPOINTS_RECHECK_SECONDS: an endpoint
    created or enabled in another process gets events from that long after at the latest;
    in this process at once). Endpoints found are never remembered, so one disabled or
    deleted gets nothing more."""
    now = time.monotonic()
    recheck = settings.EVENT_ENDPOINTS_RECHECK_SECONDS
    wanted = {str(workspace_id) for workspace_id in workspace_ids}
    wanted = {workspace_id for workspace_id in wanted
              if now - _without_endpoints.get(workspace_id, -recheck) >= recheck}
    found: dict[str, list[WebhookEndpoint]] = {}
    if not wanted:
        return found
    for endpoint in WebhookEndpoint.objects.filter(
            workspace_id__in=wanted, enabled=True).only(
            "id", "workspace_id", "url", "events").order_by("created_at"):
        found.setdefault(str(endpoint.workspace_id), []).append(endpoint)
    for workspace_id in wanted:
        if workspace_id in found:
            _without_endpoints.pop(workspace_id, None)
        else:
            _without_endpoints[workspace_id] = now
    return found


def subscribers_forget(**_: Any) -> None:
    """Look endpoints up again from now on (an endpoint of this process changed)."""
    _without_endpoints.clear()


post_save.connect(subscribers_forget, sender=WebhookEndpoint,
                  dispatch_uid="events.subscribers_forget.save")
post_delete.connect(subscribers_forget, sender=WebhookEndpoint,
                    dispatch_uid="events.subscribers_forget.delete")


def subscribed(wanted: Any, event_type: str) -> bool:
    """Tell whether an endpoint's event list takes this type."""
    return isinstance(wanted, list) and (ALL_EVENTS in wanted or event_type in wanted)


# --- what the pipeline emits ----------------------------------------------------------------

def messages_emit(*, changes: Sequence[tuple[Message, str]], fresh: bool = False,
                  endpoints: dict[str, list[WebhookEndpoint]] | None = None
                  ) -> list[Message]:
    """Emit a message event per (message, event type), in the caller's transaction.

    The messages are read again (one query) unless `fresh`, so `data` shows them after the
    change. Event deliveries themselves emit nothing. Nothing is read when neither an
    endpoint nor a status callback listens. `endpoints` is what `subscribers` answered for
    these workspaces, if the caller read it already.
    """
    changes = [(m, kind) for m, kind in changes if m.source not in QUIET_SOURCES]
    if not changes:
        return []
    if endpoints is None:
        endpoints = subscribers({m.workspace_id for m, _ in changes})
    changes = [(m, kind) for m, kind in changes
               if endpoints.get(str(m.workspace_id)) or m.status_callback_url]
    if not changes:
        return []
    shown = {str(m.pk): message_data(m) for m in changes_read(changes, fresh)}
    raised = [(m, Event(workspace_id=m.workspace_id, type=kind, data=shown[str(m.pk)],
                        callback_url=m.status_callback_url))
              for m, kind in changes if str(m.pk) in shown]
    deliveries = events_emit(events=[event for _, event in raised], endpoints=endpoints)
    _raised_write(raised, deliveries)
    return deliveries


def _raised_write(raised: list[tuple[Message, Event]], deliveries: list[Message]) -> None:
    """Write on each message's timeline the event it raised and the deliveries made for it
    (one INSERT; an event nobody was subscribed to was not raised)."""
    by_event: dict[str, list[str]] = {}
    for delivery in deliveries:
        by_event.setdefault(delivery.metadata[EVENT_ID_FIELD], []).append(str(delivery.pk))
    entries_write(entries=[
        entry(message_id=message.pk, kind=TimelineKind.EVENT, at=event.occurred_at,
              type=event.type, event_id=event.id, deliveries=by_event[event.id])
        for message, event in raised if event.id in by_event])


def changes_read(changes: Sequence[tuple[Message, str]], fresh: bool) -> list[Message]:
    """Return the changed messages: as given when `fresh`, else read again (one query)."""
    if fresh:
        return [m for m, _ in changes]
    return list(Message.objects.filter(pk__in=[m.pk for m, _ in changes]))


def dead_letter_emit(*, letter: DeadLetter, source: str = "") -> list[Message]:
    """Emit dead_letter.created (not for a failed event delivery: see QUIET_SOURCES)."""
    if source in QUIET_SOURCES:
        return []
    return event_emit(workspace_id=letter.workspace_id, type=DEAD_LETTER_CREATED,
                      data=dead_letter_data(letter))
