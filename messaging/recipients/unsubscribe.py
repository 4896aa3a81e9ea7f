"""Email unsubscribe: signed links, the List-Unsubscribe headers, and the unsubscribe itself.

A token is signed with SECRET_KEY (django.core.signing, its own salt) and names the
workspace, the contact (or, for a message without one, the address) and the channel. It does
not expire: a recipient may use the link of a mail years old, and RFC 8058 asks that the
link keep working. Nothing but the signature makes it valid, so a token cannot name another
workspace's contact, and changing any character makes it fail (400, nothing changed).

Marketing email carries `List-Unsubscribe` (the HTTPS link and a mailto) and, when the link
is HTTPS, `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058); transactional
email carries neither, though its templates may still use `{{ unsubscribe_url }}`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from core.models import Contact, Workspace
from messaging.channels import CHANNELS, CONTACT_FIELDS, EMAIL, ChannelSpec
from messaging.models import Category, Message, Suppression
from messaging.recipients.suppressions import suppression_add

# Keeps these signatures apart from every other use of SECRET_KEY.
SALT = "relay.unsubscribe"
# The suppression row's source, so the list shows where an unsubscribe came from.
SOURCE = "list-unsubscribe"


class BadToken(Exception):
    """The token is malformed, tampered with, or names nothing this service knows."""


def link_spec(channel: str) -> ChannelSpec | None:
    """Return the channel's spec when its messages carry unsubscribe links (email), else
    None."""
    spec = CHANNELS.get(channel)
    return spec if spec is not None and spec.unsubscribe_link else None


@dataclass(frozen=True)
class Target:
    """Who a token unsubscribes: a workspace's contact and/or address, on a channel."""

    workspace_id: str
    contact_id: str
    address: str
    channel: str


def make_token(*, workspace_id: Any, contact_id: Any, address: str,
               channel: str = EMAIL, salt: str = SALT) -> str:
    """Return the signed, URL-safe token naming who to unsubscribe (or, with another salt,
    whose page another link opens: recipients.preferences)."""
    data = [str(workspace_id), str(contact_id or ""), address or "", channel]
    return signing.Signer(salt=salt).sign_object(data, compress=True)


def read_token(token: str, *, salt: str = SALT) -> Target:
    """Return the token's target; raise BadToken when it is malformed or tampered with."""
    try:
        data = signing.Signer(salt=salt).unsign_object(token)
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise BadToken("This unsubscribe link is not valid.") from exc
    if not (isinstance(data, list) and len(data) == 4 and all(isinstance(v, str) for v in data)
            and data[0] and link_spec(data[3]) is not None and (data[1] or data[2])):
        raise BadToken("This unsubscribe link is not valid.")
    return Target(workspace_id=data[0], contact_id=data[1], address=data[2], channel=data[3])


def token_for(message: Message) -> str:
    """Return the token of an email message's recipient, or "" when it has none. It names
    the contact when there is one (its address is then read at unsubscribe time, and the
    link does not carry it), else the address."""
    if link_spec(message.channel) is None or not (message.contact_id or message.to):
        return ""
    address = "" if message.contact_id else (message.to or "").strip().lower()
    return make_token(workspace_id=message.workspace_id, contact_id=message.contact_id,
                      address=address, channel=message.channel)


def unsubscribe_url(message: Message) -> str:
    """Return the message's unsubscribe link, or "" without a recipient or PUBLIC_BASE_URL."""
    token = token_for(message)
    if not token or not settings.PUBLIC_BASE_URL:
        return ""
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("unsubscribe", args=[token])


def mailto_address() -> str:
    """Return the address unsubscribe mail goes to: UNSUBSCRIBE_MAILTO, else unsubscribe@
    the domain of EMAIL_FROM ("" when switched off with "-")."""
    configured = settings.UNSUBSCRIBE_MAILTO
    if configured == "-":
        return ""
    if configured:
        return configured
    domain = parseaddr(settings.EMAIL_FROM)[1].rpartition("@")[2]
    return f"unsubscribe@{domain}" if domain else ""


def list_unsubscribe_headers(message: Message) -> dict[str, str]:
    """Return the List-Unsubscribe headers of a marketing email ({} for anything else).

    The token rides in the mailto's subject, not its local part: RFC 5321 caps a local part
    at 64 octets, shorter than a signed token.
    """
    if link_spec(message.channel) is None or message.category != Category.MARKETING:
        return {}
    token, url, mailbox = token_for(message), unsubscribe_url(message), mailto_address()
    if not token:
        return {}
    links = [f"<{url}>"] if url else []
    if mailbox:
        links.append(f"<mailto:{mailbox}?subject={quote('unsubscribe ' + token)}>")
    if not links:
        return {}
    headers = {"List-Unsubscribe": ", ".join(links)}
    if url.startswith("https://"):  # RFC 8058 one-click needs an HTTPS URI
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


@dataclass(frozen=True)
class Recipient:
    """What a valid token names, loaded: the workspace, its contact (if any), address and
    channel."""

    workspace: Workspace
    contact: Contact | None
    address: str
    channel: str = EMAIL


def recipient_of(token: str, *, salt: str = SALT) -> Recipient:
    """Return the workspace, contact and address a token names; raise BadToken when it is
    invalid or names nothing that still exists."""
    target = read_token(token, salt=salt)
    try:
        workspace = Workspace.objects.filter(pk=target.workspace_id).first()
        contact = Contact.objects.filter(pk=target.contact_id, workspace=workspace).first() \
            if target.contact_id and workspace else None
    except ValidationError as exc:  # signed by us, so only a changed key format gets here
        raise BadToken("This unsubscribe link is not valid.") from exc
    if workspace is None:
        raise BadToken("This unsubscribe link is no longer valid.")
    field = CONTACT_FIELDS.get(CHANNELS[target.channel].recipient, "")
    address = target.address or (
        str(getattr(contact, field, "") or "").strip().lower() if contact else "")
    if contact is None and not address:
        raise BadToken("This unsubscribe link is no longer valid.")
    return Recipient(workspace=workspace, contact=contact, address=address,
                     channel=target.channel)


def unsubscribe(*, token: str) -> Recipient:
    """Unsubscribe the token's recipient from marketing email (its channel's spec names
    the consent flag and list): the contact's email_subscribed goes off and the address
    goes on the list (reason unsubscribed). Idempotent. Raise BadToken (and change nothing)
    when the token is not valid."""
    recipient = recipient_of(token)
    spec = CHANNELS[recipient.channel]
    with transaction.atomic():
        if recipient.contact is not None and spec.consent_flag:
            Contact.objects.filter(pk=recipient.contact.pk).update(
                **{spec.consent_flag: False, "updated_at": timezone.now()})
            setattr(recipient.contact, spec.consent_flag, False)
        if recipient.address and spec.suppression_list is not None:
            # An address the list cannot hold (a contact's odd email): the flag suffices.
            with contextlib.suppress(ValidationError):
                suppression_add(workspace=recipient.workspace, channel=spec.suppression_list,
                                address=recipient.address,
                                reason=Suppression.Reason.UNSUBSCRIBED, source=SOURCE)
    return recipient
