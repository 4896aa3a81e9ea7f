"""The customer's endpoints: which URLs may receive events, each endpoint's health
(disabled after failing for days), its signing secrets, and replaying its deliveries."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.models import new_webhook_secret
from messaging.events.outbox import deliveries_insert, delivery_build, subscribers_forget
from messaging.events.types import EVENT_TYPE_FIELD, Event
from messaging.models import (
    CANCELLABLE_STATUSES,
    Message,
    MessageStatus,
    TimelineKind,
    WebhookEndpoint,
)
from messaging.providers.ssrf import UnsafeURL, check_url_literal
from messaging.providers.webhook import EVENT_ID_FIELD, signing_secrets
from messaging.timeline import entries_write, entry

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
        pending = list(Message.objects.select_for_update().filter(
            webhook_endpoint=endpoint, status__in=CANCELLABLE_STATUSES).values_list("pk",
                                                                                    "status"))
        Message.objects.filter(pk__in=[pk for pk, _ in pending]).update(
            status=MessageStatus.CANCELLED, cancelled_at=now, due_at=None, status_reason="",
            updated_at=now)
        entries_write(entries=[entry(
            message_id=pk, kind=TimelineKind.CANCELLED, at=now, from_status=status,
            reason=f"endpoint disabled: {reason}" if reason else "endpoint disabled")
            for pk, status in pending])
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
    deliveries_insert(deliveries=[copy])
    return copy


def _replay_build(delivery: Message) -> Message:
    """Return the copy of a delivery: same event id and body (as first sent, whatever its
    schema version), to the endpoint's URL of today."""
    endpoint = delivery.webhook_endpoint
    url = endpoint.url if endpoint is not None else delivery.to
    metadata = delivery.metadata or {}
    event = Event(workspace_id=delivery.workspace_id, type=metadata.get(EVENT_TYPE_FIELD, ""),
                  data={}, id=str(metadata.get(EVENT_ID_FIELD) or delivery.pk))
    return delivery_build(event=event, body=(delivery.content or {}).get("payload"),
                          url=url, endpoint=endpoint, parent=delivery)


def deliveries_replay_failed(*, endpoint: WebhookEndpoint, since: datetime,
                             limit: int = 1000) -> list[Message]:
    """Replay every failed delivery of the endpoint created since `since` (oldest first,
    at most `limit`); return the new deliveries."""
    failed = endpoint.deliveries.select_related("webhook_endpoint").filter(
        status=MessageStatus.FAILED, created_at__gte=since).order_by("created_at")[:limit]
    copies = [_replay_build(delivery) for delivery in failed]
    if copies:
        deliveries_insert(deliveries=copies)
    return copies
