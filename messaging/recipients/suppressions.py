"""The suppression lists: addresses a workspace must not send to (recipients.policy reads them).

Every way an address gets on the list (the API, admin, an inbound STOP, a provider refusing
the address, a bounce or complaint) goes through `suppression_add`, so the address is
always stored the way the policy looks it up: phones in E.164, emails lower-cased.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, transaction

from core.models import Workspace
from core.phones import normalize_phone
from messaging.channels import SUPPRESSION_LISTS
from messaging.models import Suppression

# The lists (each channel's spec names its own: sms and mms share "sms"), and the address
# kind each holds; the channel table keeps this dict current.
LISTS = SUPPRESSION_LISTS


def _email(value: str) -> str:
    value = value.lower()
    EmailValidator(message="Enter a valid email address.")(value)
    return value


# How each recipient kind of the channel table is stored; a kind not here (free) is kept
# as given, trimmed.
NORMALIZERS: dict[str, Callable[[str], str]] = {"phone": normalize_phone, "address": _email}


def normalize_address(channel: str, address: Any) -> str:
    """Return the address as the list `channel` stores it; raise ValidationError when it is
    not of the list's kind (a phone number for sms, an email address for email)."""
    if channel not in LISTS:
        raise ValidationError(f"'{channel}' is not a list: use one of {', '.join(LISTS)}.")
    if not isinstance(address, str) or not address.strip():
        raise ValidationError("An address is required.")
    normalize = NORMALIZERS.get(LISTS[channel])
    return normalize(address.strip()) if normalize else address.strip()


def suppression_add(*, workspace: Workspace, channel: str, address: str, reason: str,
                    source: str = "") -> tuple[Suppression, bool]:
    """Put the address on the workspace's list (once); return (row, created). An existing
    row keeps its first reason, except that a stronger one (bounce, complaint, STOP) takes
    over from an unsubscribe, which stops marketing email only."""
    address = normalize_address(channel, address)
    try:
        with transaction.atomic():
            row, created = Suppression.objects.get_or_create(
                workspace=workspace, channel=channel, address=address,
                defaults={"reason": reason, "source": source[:100]})
    except IntegrityError:  # a concurrent add won the race
        row, created = Suppression.objects.get(workspace=workspace, channel=channel,
                                               address=address), False
    if not created and row.reason == Suppression.Reason.UNSUBSCRIBED and \
            reason != Suppression.Reason.UNSUBSCRIBED:
        Suppression.objects.filter(pk=row.pk).update(reason=reason, source=source[:100])
        row.reason, row.source = reason, source[:100]
    return row, created


def suppression_add_many(*, workspaces: Iterable[Workspace], channel: str, address: str,
                         reason: str, source: str = "") -> list[Suppression]:
    """Put the address on each workspace's list; return the rows."""
    return [suppression_add(workspace=workspace, channel=channel, address=address,
                            reason=reason, source=source)[0] for workspace in workspaces]


def suppression_remove(*, workspace: Workspace, channel: str, address: str) -> int:
    """Take the address off the workspace's list; return how many rows went (0 or 1)."""
    address = normalize_address(channel, address)
    deleted, _ = Suppression.objects.filter(workspace=workspace, channel=channel,
                                            address=address).delete()
    return deleted


def suppression_remove_many(*, workspaces: Iterable[Workspace], channel: str, address: str,
                            reasons: Iterable[str]) -> int:
    """Take the address off each workspace's list where its row has one of these reasons
    (a START lifts a STOP, not a bounce); return how many rows went."""
    address = normalize_address(channel, address)
    deleted, _ = Suppression.objects.filter(workspace__in=workspaces, channel=channel,
                                            address=address, reason__in=list(reasons)).delete()
    return deleted
