"""Reads of messaging rows, one workspace at a time, shaped as the API shows them.

The API's viewsets get their rows here (through core.api.WorkspaceScoped, which passes the
key's workspace), so what a list joins, prefetches and filters is said once, beside the
other reads, and not inside a view.
"""
from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from core.models import Contact, Workspace
from messaging.models import (
    DeliveryAttempt,
    Message,
    Suppression,
    TimelineEntry,
    WebhookEndpoint,
)


def _attempts_in_order() -> Prefetch:
    """Return the prefetch of each message's delivery attempts, first attempt first."""
    return Prefetch("delivery_attempts", DeliveryAttempt.objects.order_by("number"))


def contacts_list(*, workspace: Workspace) -> QuerySet[Contact]:
    """Return the workspace's contacts."""
    return Contact.objects.filter(workspace=workspace)


def messages_list(*, workspace: Workspace, with_attempts: bool = False) -> QuerySet[Message]:
    """Return the workspace's messages; with_attempts also fetches each one's delivery
    attempts in order (what a message's detail shows), in one more query."""
    queryset = Message.objects.filter(workspace=workspace)
    if with_attempts:
        queryset = queryset.prefetch_related(_attempts_in_order())
    return queryset


def timeline_list(*, message: Message) -> QuerySet[TimelineEntry]:
    """Return a message's timeline entries in the order they were written."""
    return TimelineEntry.objects.filter(message=message).order_by("id")


def suppressions_list(*, workspace: Workspace) -> QuerySet[Suppression]:
    """Return the workspace's suppression list."""
    return Suppression.objects.filter(workspace=workspace)


def webhook_endpoints_list(*, workspace: Workspace) -> QuerySet[WebhookEndpoint]:
    """Return the workspace's webhook endpoints."""
    return WebhookEndpoint.objects.filter(workspace=workspace)


def deliveries_list(*, endpoint: WebhookEndpoint) -> QuerySet[Message]:
    """Return an endpoint's deliveries, newest first, with their attempts in order (the
    delivery log shows each one's last attempt)."""
    return endpoint.deliveries.order_by("-created_at").prefetch_related(_attempts_in_order())
