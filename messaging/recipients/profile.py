"""A recipient's page: what a workspace sent to one address in a time range, and what its
rules hold about that address now: consent, suppressions, frequency-cap counts (README.md,
"Recipients' rules").

Support's first question is "why didn't she get it?"; the answer spans contacts (consent
flags), the suppression list, the caps in Redis and the messages. This reads them together,
for one workspace, without changing any (the caps are read, not counted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet

from core.models import Contact, Workspace
from messaging.channels import CHANNELS, EMAIL, SMS
from messaging.models import Message, Suppression
from messaging.recipients import caps
from messaging.recipients.policy import FREQUENCY_CAPS, cap_of_list
from messaging.selectors import messages_list, messages_to


@dataclass
class CapCount:
    """One frequency-cap window of the address (per contact, or the address itself for
    messages sent without a contact)."""

    list_name: str
    cap: str
    limit: int
    period_seconds: int
    counted: int
    contact_id: Any = None


@dataclass
class Consent:
    """A contact with the address and whether it takes the list's marketing."""

    contact: Contact
    subscribed: bool


@dataclass
class RecipientProfile:
    address: str
    list_name: str
    since: datetime
    until: datetime
    messages: QuerySet[Message]
    by_status: dict[str, int] = field(default_factory=dict)
    by_channel: dict[str, int] = field(default_factory=dict)
    consent: list[Consent] = field(default_factory=list)
    suppressions: list[Suppression] = field(default_factory=list)
    caps: list[CapCount] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


def recipient_profile(*, workspace: Workspace, address: str, since: datetime,
                      until: datetime) -> RecipientProfile:
    """Return the address's profile in the workspace; `address` as recipient_normalize
    returns it (E.164 phone or lowercased email). Messages are those created in
    [since, until), newest first; consent, suppressions and caps are as they stand now."""
    list_name = EMAIL if "@" in address else SMS
    messages = messages_to(messages_list(workspace=workspace), address).filter(
        created_at__gte=since, created_at__lt=until).order_by("-created_at", "-id")
    contacts = list(Contact.objects.filter(
        Q(email__iexact=address) if list_name == EMAIL else Q(phone=address),
        workspace=workspace).order_by("created_at"))
    flag = CHANNELS[list_name].consent_flag
    return RecipientProfile(
        address=address, list_name=list_name, since=since, until=until, messages=messages,
        by_status=_counts(messages, "status"), by_channel=_counts(messages, "channel"),
        consent=[Consent(contact=c, subscribed=bool(getattr(c, flag, True))) for c in contacts],
        suppressions=list(Suppression.objects.filter(workspace=workspace, channel=list_name,
                                                     address=address)),
        caps=_caps(workspace, list_name, address, contacts))


def _counts(messages: QuerySet[Message], column: str) -> dict[str, int]:
    rows = messages.order_by().values(column).annotate(n=Count("id")).values_list(column, "n")
    return {key: n for key, n in sorted(rows)}


def _caps(workspace: Workspace, list_name: str, address: str,
          contacts: list[Contact]) -> list[CapCount]:
    """Return the counts of the list's cap: one window per contact with the address, and
    one for the address itself (messages without a contact count there)."""
    cap = cap_of_list(workspace.settings or {}, list_name)
    if cap is None:
        return []
    owners: list[tuple[Any, str]] = [(c.pk, str(c.pk)) for c in contacts]
    owners.append((None, address))
    counted = caps.counted_many([(caps.cap_key(str(workspace.pk), list_name, who), cap)
                                 for _, who in owners])
    text = (workspace.settings or {}).get(FREQUENCY_CAPS, {}).get(list_name, "")
    return [CapCount(list_name=list_name, cap=str(text), limit=cap.count, period_seconds=cap.period,
                     counted=n, contact_id=contact_id)
            for (contact_id, _), n in zip(owners, counted, strict=True)]
