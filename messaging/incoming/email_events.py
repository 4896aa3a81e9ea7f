"""Email provider events: hard bounces and complaints put the address on the suppression
list, so the policy stops every later email to it (README.md, "Bounces and complaints").

A soft bounce is accepted and changes nothing: the address may work tomorrow, and the
provider retries it itself.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction

from core.models import Workspace
from messaging.channels import EMAIL
from messaging.models import Message, MessageStatus, Suppression
from messaging.recipients.suppressions import normalize_address, suppression_add
from messaging.transitions import receipt_apply

BOUNCE, COMPLAINT = "bounce", "complaint"
KINDS = (BOUNCE, COMPLAINT)
REASONS = {BOUNCE: Suppression.Reason.BOUNCED, COMPLAINT: Suppression.Reason.COMPLAINED}
# The suppression row's source.
SOURCE = "provider-event"


class WrongRecipient(Exception):
    """The event's message was sent to another address than the event's."""


@dataclass(frozen=True)
class EventOutcome:
    """What an event did: the list reason it added (or "") and the message it named."""

    suppressed: str
    message: Message | None


def email_message_of(*, workspace: Workspace, ref: str) -> Message | None:
    """Return the workspace's email the reference names (the service's id, or the id the
    provider gave it: the SMTP Message-ID), or None."""
    if not ref:
        return None
    messages = Message.objects.filter(workspace=workspace, channel=EMAIL)
    try:
        found = messages.filter(pk=uuid.UUID(ref)).first()
    except ValueError:
        found = None
    return found or messages.filter(provider_message_id=ref).first()


def email_event_record(*, workspace: Workspace, kind: str, address: str,
                       permanent: bool = False, message_ref: str = "") -> EventOutcome:
    """Apply a bounce or complaint to the workspace: a hard bounce or a complaint suppresses
    the address (reason bounced/complained); a hard bounce also marks the named sent
    message undelivered. Raise WrongRecipient when the message went to another address."""
    address = normalize_address(EMAIL, address)
    message = email_message_of(workspace=workspace, ref=message_ref)
    if message is not None and message.to.strip().lower() != address:
        raise WrongRecipient(f"Message {message.pk} was sent to another address.")
    if kind == BOUNCE and not permanent:
        return EventOutcome(suppressed="", message=message)
    with transaction.atomic():
        suppression_add(workspace=workspace, channel=EMAIL, address=address,
                        reason=REASONS[kind], source=SOURCE)
        if message is not None and kind == BOUNCE:
            # Only from sent, emitting message.undelivered, like a status callback.
            receipt_apply(message=message, status=MessageStatus.UNDELIVERED,
                          fields={"last_error": "hard bounce", "error_code": "bounced"},
                          report={"source": SOURCE, "reported": "hard bounce"})
    if message is not None:
        message.refresh_from_db()
    return EventOutcome(suppressed=REASONS[kind], message=message)
