"""Reads of messaging rows, one workspace at a time, shaped as the API shows them.

The API's viewsets get their rows here (through core.api.WorkspaceScoped, which passes the
key's workspace), so what a list joins, prefetches and filters is said once, beside the
other reads, and not inside a view.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db.models import Prefetch, Q, QuerySet
from django.db.models.functions import Lower

from core.models import Contact, Workspace
from core.phones import normalize_phone
from messaging.models import (
    RECIPIENT_CHANNELS,
    DeliveryAttempt,
    Direction,
    Message,
    Suppression,
    Template,
    TemplateVersion,
    TimelineEntry,
    Topic,
    WebhookEndpoint,
)


def _attempts_in_order() -> Prefetch:
    """Return the prefetch of each message's delivery attempts, first attempt first."""
    return Prefetch("delivery_attempts", DeliveryAttempt.objects.order_by("number"))


def contacts_list(*, workspace: Workspace) -> QuerySet[Contact]:
    """Return the workspace's contacts."""
    return Contact.objects.filter(workspace=workspace)


EXPORT_COLUMNS = ("id", "external_id", "first_name", "last_name", "phone", "email", "timezone",
                  "locale", "sms_subscribed", "email_subscribed", "attributes", "created_at",
                  "updated_at")
_ATTRIBUTES = EXPORT_COLUMNS.index("attributes")
_TIMES = (EXPORT_COLUMNS.index("created_at"), EXPORT_COLUMNS.index("updated_at"))
# Contacts read per round trip of an export: a server-side cursor keeps memory flat.
EXPORT_CHUNK = 2000


def contacts_export_rows(*, contacts: QuerySet[Contact]) -> Iterator[list[Any]]:
    """Yield the header, then one CSV row per contact (attributes as JSON)."""
    yield list(EXPORT_COLUMNS)
    for values in contacts.values_list(*EXPORT_COLUMNS).iterator(chunk_size=EXPORT_CHUNK):
        row = list(values)
        row[_ATTRIBUTES] = json.dumps(row[_ATTRIBUTES], ensure_ascii=False, sort_keys=True)
        for index in _TIMES:
            row[index] = row[index].isoformat()
        yield row


def messages_list(*, workspace: Workspace, with_attempts: bool = False) -> QuerySet[Message]:
    """Return the workspace's messages; with_attempts also fetches each one's delivery
    attempts in order (what a message's detail shows), in one more query."""
    queryset = (Message.objects.filter(workspace=workspace)
                .select_related("topic", "template_version"))
    if with_attempts:
        queryset = queryset.prefetch_related(_attempts_in_order())
    return queryset


def timeline_list(*, message: Message) -> QuerySet[TimelineEntry]:
    """Return a message's timeline entries in the order they were written."""
    return TimelineEntry.objects.filter(message=message).order_by("id")


def recipient_normalize(text: str) -> str:
    """Return a recipient as messages store it: an email address lowercased, a phone
    number in E.164 (however it was written); raise ValidationError when it is neither."""
    text = (text or "").strip()
    if "@" in text:
        EmailValidator(message=f"'{text}' is not a valid email address.")(text)
        return text.lower()
    return normalize_phone(text)


def messages_to(queryset: QuerySet[Message], recipient: str) -> QuerySet[Message]:
    """Return the messages of `queryset` sent to the recipient (as recipient_normalize
    returns it), whatever their status and channel, and those received from it."""
    return queryset.alias(to_lower=Lower("to")).filter(
        Q(to_lower=recipient, channel__in=RECIPIENT_CHANNELS)
        | Q(sender=recipient, direction=Direction.INBOUND))


def suppressions_list(*, workspace: Workspace) -> QuerySet[Suppression]:
    """Return the workspace's suppression list."""
    return Suppression.objects.filter(workspace=workspace)


def topics_list(*, workspace: Workspace) -> QuerySet[Topic]:
    """Return the workspace's subscription topics."""
    return Topic.objects.filter(workspace=workspace)


def templates_list(*, workspace: Workspace) -> QuerySet[Template]:
    """Return the workspace's templates with their current version (and its topic)."""
    return (Template.objects.filter(workspace=workspace, deleted_at__isnull=True)
            .select_related("current__topic"))


def template_versions_list(*, template: Template) -> QuerySet[TemplateVersion]:
    """Return a template's versions, newest first."""
    return TemplateVersion.objects.filter(template=template).select_related("topic")


def webhook_endpoints_list(*, workspace: Workspace) -> QuerySet[WebhookEndpoint]:
    """Return the workspace's webhook endpoints."""
    return WebhookEndpoint.objects.filter(workspace=workspace)


def deliveries_list(*, endpoint: WebhookEndpoint) -> QuerySet[Message]:
    """Return an endpoint's deliveries, newest first, with their attempts in order (the
    delivery log shows each one's last attempt)."""
    return endpoint.deliveries.order_by("-created_at").prefetch_related(_attempts_in_order())


class RecipientField(forms.CharField):
    """A phone number (any way written) or an email address, cleaned to how messages store
    it (recipient_normalize); the API's filter and the dashboard's form both use it."""

    def clean(self, value: Any) -> str:
        value = super().clean(value)
        if not value:
            return ""
        try:
            return recipient_normalize(value)
        except ValidationError as exc:
            raise forms.ValidationError(
                f"Not a phone number or an email address: {' '.join(exc.messages)}") from exc
