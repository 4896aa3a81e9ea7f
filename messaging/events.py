"""Events for the customer's systems: what happened, delivered to their endpoints.

An event is written in the transaction of the status change that causes it, as webhook
Messages of the delivery pipeline (one per subscribed endpoint, plus one to a message's own
status_callback_url), and published after commit; so an event inherits the pipeline's
signature, SSRF guard, retries, dead letters and zero loss (README.md, "Events").

Cost: one SELECT of the workspaces' enabled endpoints and one bulk INSERT per status-change
batch; nothing more when nobody listens.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from core.models import DeadLetter, new_webhook_secret
from messaging.api.serializers import MessageSerializer
from messaging.channels import WEBHOOK
from messaging.models import (
    CANCELLABLE_STATUSES,
    Category,
    Message,
    MessageStatus,
    WebhookEndpoint,
)
from messaging.providers.ssrf import UnsafeURL, check_url_literal
from messaging.providers.webhook import EVENT_ID_FIELD, signing_secrets
from messaging.publishing import publish

MESSAGE_QUEUED = "message.queued"
MESSAGE_SENT = "message.sent"
MESSAGE_DELIVERED = "message.delivered"
MESSAGE_UNDELIVERED = "message.undelivered"
MESSAGE_FAILED = "message.failed"
MESSAGE_SUPPRESSED = "message.suppressed"
MESSAGE_RECEIVED = "message.received"
EXECUTION_STARTED = "execution.started"
EXECUTION_COMPLETED = "execution.completed"
EXECUTION_FAILED = "execution.failed"
SCHEDULE_RUN_FAILED = "schedule.run_failed"
DEAD_LETTER_CREATED = "dead_letter.created"
# The only list of event types (the API refuses any other; "*" subscribes to all).
EVENT_TYPES: tuple[str, ...] = (
    MESSAGE_QUEUED, MESSAGE_SENT, MESSAGE_DELIVERED, MESSAGE_UNDELIVERED, MESSAGE_FAILED,
    MESSAGE_SUPPRESSED, MESSAGE_RECEIVED, EXECUTION_STARTED, EXECUTION_COMPLETED,
    EXECUTION_FAILED, SCHEDULE_RUN_FAILED, DEAD_LETTER_CREATED)
ALL_EVENTS = "*"
# Message sources of event deliveries: they emit no events of their own, or a failing
# endpoint would be sent its own failures, forever.
EVENT_SOURCE = "event"
CALLBACK_SOURCE = "callback"
QUIET_SOURCES = frozenset({EVENT_SOURCE, CALLBACK_SOURCE})
EVENT_TYPE_FIELD = "_event_type"
# Deliveries written per INSERT statement.
INSERT_BATCH = 500


@dataclass(frozen=True)
class Event:
    """One thing that happened in a workspace; `data` is the object as the API shows it."""

    workspace_id: Any
    type: str
    data: dict[str, Any]
    # A message's own status callback (message events only).
    callback_url: str = ""
    id: str = field(default_factory=lambda: f"evt_{uuid.uuid4().hex}")
    occurred_at: datetime = field(default_factory=timezone.now)

    def payload(self) -> dict[str, Any]:
        """Return the body every receiver gets: {type, timestamp, data}."""
        return {"type": self.type, "timestamp": self.occurred_at.isoformat(),
                "data": self.data}


# --- checking -------------------------------------------------------------------------------

def callback_url_check(url: str) -> str:
    """Return the URL if events may be sent there; raise ValidationError saying why not:
    not http(s), a private address (unless SSRF_ALLOWED_NETWORKS opens it), or
    credentials in the URL (they would be logged and shown back)."""
    if not url.lower().startswith(("https://", "http://")):
        raise ValidationError(f"{url} must be an http(s) URL.")
    try:
        check_url_literal(url)
        has_credentials = urlsplit(url).username is not None
    except (UnsafeURL, ValueError) as exc:
        raise ValidationError(f"{url}: {exc}") from exc
    if has_credentials:
        raise ValidationError(f"{url} must not carry credentials (user:password@).")
    return url


# --- emitting -------------------------------------------------------------------------------

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
        for endpoint in endpoints.get(str(event.workspace_id), ()):
            if subscribed(endpoint.events, event.type):
                deliveries.append(delivery_build(event, endpoint.url, endpoint))
        if event.callback_url:
            deliveries.append(delivery_build(event, event.callback_url, None))
    if deliveries:
        _insert(deliveries)
    return deliveries


def _insert(deliveries: list[Message]) -> None:
    with transaction.atomic():
        Message.objects.bulk_create(deliveries, batch_size=INSERT_BATCH)
        transaction.on_commit(lambda: publish(deliveries))


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


def delivery_build(event: Event, url: str, endpoint: WebhookEndpoint | None,
                   parent: Message | None = None) -> Message:
    """Return the unsaved webhook message carrying an event to one URL."""
    now = timezone.now()
    return Message(
        workspace_id=event.workspace_id, channel=WEBHOOK, to=url,
        content={"url": url, "payload": event.payload()},
        metadata={EVENT_ID_FIELD: event.id, EVENT_TYPE_FIELD: event.type},
        source=EVENT_SOURCE if endpoint is not None else CALLBACK_SOURCE,
        webhook_endpoint=endpoint, parent=parent, category=Category.TRANSACTIONAL,
        status=MessageStatus.QUEUED, due_at=now, enqueued_at=now,
        max_attempts=settings.MAX_ATTEMPTS.get(WEBHOOK, 5))


# --- what the pipeline emits ----------------------------------------------------------------

def messages_emit(*, changes: Sequence[tuple[Message, str]], fresh: bool = False,
                  endpoints: dict[str, list[WebhookEndpoint]] | None = None
                  ) -> list[Message]:
    """Emit a message event per (message, event type), in the caller's transaction.

    The messages are read again (one query) unless `fresh`, so `data` shows them as the
    API does after the change. Event deliveries themselves emit nothing. Nothing is read
    when neither an endpoint nor a status callback listens. `endpoints` is what
    `subscribers` answered for these workspaces, if the caller read it already.
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
    current = changes_read(changes, fresh)
    # One serializer for all (many=True): a serializer per message costs its field copies.
    shown = {row["id"]: row for row in MessageSerializer(current, many=True).data}
    events = [Event(workspace_id=m.workspace_id, type=kind, data=shown[str(m.pk)],
                    callback_url=m.status_callback_url)
              for m, kind in changes if str(m.pk) in shown]
    return events_emit(events=events, endpoints=endpoints)


def changes_read(changes: Sequence[tuple[Message, str]], fresh: bool) -> list[Message]:
    if fresh:
        return [m for m, _ in changes]
    return list(Message.objects.filter(pk__in=[m.pk for m, _ in changes]))


def dead_letter_emit(*, letter: DeadLetter, source: str = "") -> list[Message]:
    """Emit dead_letter.created (not for a failed event delivery: see QUIET_SOURCES)."""
    if source in QUIET_SOURCES:
        return []
    from core.serializers import DeadLetterSerializer

    return event_emit(workspace_id=letter.workspace_id, type=DEAD_LETTER_CREATED,
                      data=dict(DeadLetterSerializer(letter).data))


# --- endpoint health ------------------------------------------------------------------------

def deliveries_recorded(*, outcomes: Iterable[tuple[Message, str]],
                        now: datetime | None = None) -> None:
    """Track each endpoint's health from its deliveries' outcomes (sent clears
    failing_since; a failed attempt sets it if unset); in the caller's transaction."""
    now = now or timezone.now()
    healthy, failing = set(), set()
    for message, outcome in outcomes:
        if message.webhook_endpoint_id is None:
            continue
        if outcome == "sent":
            healthy.add(message.webhook_endpoint_id)
        elif outcome in ("retrying", "failed"):
            failing.add(message.webhook_endpoint_id)
    if healthy:
        WebhookEndpoint.objects.filter(pk__in=healthy, failing_since__isnull=False).update(
            failing_since=None)
    if failing - healthy:
        WebhookEndpoint.objects.filter(pk__in=failing - healthy,
                                       failing_since__isnull=True).update(failing_since=now)


def endpoints_disable_failing(*, now: datetime | None = None) -> list[str]:
    """Disable every enabled endpoint that has failed every delivery for the setting's
    days; return their ids. The workspace's endpoint_disabled alert rules then fire."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.WEBHOOK_ENDPOINT_DISABLE_AFTER_DAYS)
    disabled = []
    with transaction.atomic():
        for endpoint in WebhookEndpoint.objects.select_for_update(skip_locked=True).filter(
                enabled=True, failing_since__lte=cutoff):
            reason = (f"every delivery failed since {endpoint.failing_since:%Y-%m-%d %H:%M} "
                      f"UTC")
            endpoint_disable(endpoint=endpoint, reason=reason, now=now)
            disabled.append(str(endpoint.pk))
    return disabled


def endpoint_disable(*, endpoint: WebhookEndpoint, reason: str = "",
                     now: datetime | None = None) -> None:
    """Disable an endpoint and cancel its pending deliveries (a disabled endpoint receives
    nothing); `reason` empty means the customer did it."""
    now = now or timezone.now()
    with transaction.atomic():
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            enabled=False, disabled_at=now, disabled_reason=reason[:200], updated_at=now)
        Message.objects.filter(webhook_endpoint=endpoint,
                               status__in=CANCELLABLE_STATUSES).update(
            status=MessageStatus.CANCELLED, cancelled_at=now, due_at=None, updated_at=now)
    endpoint.enabled, endpoint.disabled_at, endpoint.disabled_reason = False, now, reason


def endpoint_enable(*, endpoint: WebhookEndpoint) -> None:
    """Enable an endpoint again, with a clean health record."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=True, disabled_at=None, disabled_reason="", failing_since=None,
        updated_at=timezone.now())
    subscribers_forget()
    endpoint.enabled, endpoint.disabled_at, endpoint.disabled_reason = True, None, ""
    endpoint.failing_since = None


# --- secrets --------------------------------------------------------------------------------

def overlap() -> timedelta:
    """Return how long a rotated-out secret keeps signing."""
    return timedelta(hours=settings.WEBHOOK_SECRET_OVERLAP_HOURS)


def endpoint_secrets(endpoint: WebhookEndpoint, now: datetime | None = None) -> list[str]:
    """Return the secrets an endpoint's deliveries are signed with now."""
    return signing_secrets(endpoint.secret, endpoint.secret_previous,
                           endpoint.secret_rotated_at, now or timezone.now(), overlap())


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> str:
    """Give the endpoint a new secret; the old one keeps signing for the overlap."""
    now = timezone.now()
    endpoint.secret_previous, endpoint.secret = endpoint.secret, new_webhook_secret()
    endpoint.secret_rotated_at = now
    endpoint.save(update_fields=["secret", "secret_previous", "secret_rotated_at",
                                 "updated_at"])
    return endpoint.secret


# --- the delivery log -----------------------------------------------------------------------

def delivery_replay(*, delivery: Message) -> Message:
    """Send a delivery's event again, as a new delivery with the same event id."""
    copy = _replay_build(delivery)
    _insert([copy])
    return copy


def _replay_build(delivery: Message) -> Message:
    endpoint = delivery.webhook_endpoint
    url = endpoint.url if endpoint is not None else delivery.to
    metadata = delivery.metadata or {}
    event = Event(workspace_id=delivery.workspace_id, type=metadata.get(EVENT_TYPE_FIELD, ""),
                  data={}, id=str(metadata.get(EVENT_ID_FIELD) or delivery.pk))
    copy = delivery_build(event, url, endpoint, parent=delivery)
    copy.content = {**copy.content, "payload": (delivery.content or {}).get("payload")}
    return copy


def deliveries_replay_failed(*, endpoint: WebhookEndpoint, since: datetime,
                             limit: int = 1000) -> list[Message]:
    """Replay every failed delivery of the endpoint created since `since` (oldest first,
    at most `limit`); return the new deliveries."""
    failed = endpoint.deliveries.select_related("webhook_endpoint").filter(
        status=MessageStatus.FAILED, created_at__gte=since).order_by("created_at")[:limit]
    copies = [_replay_build(delivery) for delivery in failed]
    if copies:
        _insert(copies)
    return copies
