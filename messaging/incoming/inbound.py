"""Inbound messages: which workspaces a received message belongs to, storing it, and what it
does: a keyword changes consent and is answered, anything else becomes the contact's event
`message.received` (README.md, "Inbound SMS"). Any channel whose spec says `inbound` (sms,
mms) may be received; its spec says how its sender is matched to contacts and whether
keywords apply.

Routing (the Twilio webhook's), by the sms number that received the message:
- a number (or Twilio messaging service) named in workspaces' sms provider settings
  (`from_number`, `messaging_service_sid`) belongs to those workspaces;
- any other number is the environment's shared sender: the message goes to the workspace
  that last texted the phone from it (a workspace with no number of its own), else to every
  such workspace with a contact of that phone, else nowhere (logged).
A STOP or START applies to every workspace sending through the number (for the shared
number: every workspace with no number of its own); the reply and the event belong to the
routed workspaces only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from core.models import Contact, Workspace
from core.phones import normalize_phone
from messaging.channels import CHANNELS, CONTACT_FIELDS, MMS, SMS, ChannelSpec
from messaging.delivery.creation import message_create
from messaging.events.outbox import messages_emit
from messaging.events.types import MESSAGE_RECEIVED
from messaging.models import Category, Direction, Message, MessageStatus
from messaging.providers.registry import workspace_override
from messaging.recipients import keywords
from messaging.recipients.suppressions import NORMALIZERS
from messaging.signals import message_received

logger = logging.getLogger(__name__)

EVENT = "message.received"
SOURCE = "inbound"


@dataclass(frozen=True)
class Received:
    """One inbound message as a provider (or the API) handed it over."""

    channel: str
    sender: str  # the phone it came from (E.164 when it parses)
    to: str  # our number that received it
    body: str = ""
    media_urls: tuple[str, ...] = ()
    provider: str = ""
    provider_message_id: str = ""
    messaging_service_sid: str = ""


@dataclass
class Route:
    """Where a received message goes: stored in `workspaces` (the first one answers a
    keyword); a STOP or START applies to every workspace of `scope`."""

    workspaces: list[Workspace]
    scope: QuerySet[Workspace]


@dataclass
class Outcome:
    """What receiving did: the stored rows, the keyword, the reply, events raised."""

    messages: list[Message] = field(default_factory=list)
    keyword: str | None = None
    reply: Message | None = None
    events: int = 0
    duplicate: bool = False


def phone_or_raw(value: Any) -> str:
    """Return the value in E.164 when it is a phone number, else trimmed as given (short
    codes and alphanumeric senders are not E.164)."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        return normalize_phone(text) if text else ""
    except ValidationError:
        return text


# --- routing -----------------------------------------------------------------------------

def own_sender(workspace: Workspace) -> tuple[str, str]:
    """Return the workspace's own (number, messaging service sid), "" where it has none.
    Naming the environment's number or service is not owning it: that one is shared."""
    override = workspace_override(workspace, SMS, "twilio")
    number = phone_or_raw(override.get("from_number"))
    service = override.get("messaging_service_sid")
    service = service.strip() if isinstance(service, str) else ""
    shared_number = phone_or_raw(settings.TWILIO_FROM_NUMBER)
    return ("" if number == shared_number else number,
            "" if service == settings.TWILIO_MESSAGING_SERVICE_SID else service)


def own_senders() -> list[tuple[Workspace, str, str]]:
    """Return (workspace, number, service) for every workspace with a sender of its own."""
    named = Workspace.objects.filter(
        Q(settings__providers__sms__has_key="from_number")
        | Q(settings__providers__sms__has_key="messaging_service_sid"))
    return [(workspace, number, service) for workspace in named
            for number, service in [own_sender(workspace)] if number or service]


def owners(*, to: str, messaging_service_sid: str = "") -> list[Workspace]:
    """Return the workspaces whose own number is `to` or whose own messaging service is
    the one the message came through."""
    return [workspace for workspace, number, service in own_senders()
            if (number and number == to)
            or (service and messaging_service_sid and service == messaging_service_sid)]


def route_owned(workspaces: list[Workspace], sender: str) -> Route:
    """Route to the owners of the number, the one that last texted the phone first."""
    last = _last_texted(sender, Q(workspace_id__in=[w.pk for w in workspaces]))
    ordered = sorted(workspaces, key=lambda w: w.pk != last)
    return Route(workspaces=ordered,
                 scope=Workspace.objects.filter(pk__in=[w.pk for w in workspaces]))


def route_shared(sender: str) -> Route:
    """Route a message to the shared number: the workspace without a number of its own
    that last texted the phone, else every such workspace with a contact of that phone."""
    own_ids = [workspace.pk for workspace, _, _ in own_senders()]
    scope = Workspace.objects.exclude(pk__in=own_ids)
    if not sender:
        return Route(workspaces=[], scope=scope.none())
    last = _last_texted(sender, ~Q(workspace_id__in=own_ids))
    if last is not None:
        return Route(workspaces=list(scope.filter(pk=last)), scope=scope)
    with_contact = scope.filter(pk__in=Contact.objects.filter(phone=sender)
                                .values("workspace_id")).order_by("created_at")
    return Route(workspaces=list(with_contact), scope=scope)


def route_to(workspace: Workspace) -> Route:
    """Route to one workspace only (what an API key speaks for)."""
    return Route(workspaces=[workspace], scope=Workspace.objects.filter(pk=workspace.pk))


def _last_texted(phone: str, among: Q) -> Any:
    """Return the id of the workspace (of `among`) whose sms/mms to the phone is the most
    recent, or None (served by message_sms_to_recent_idx)."""
    return (Message.objects.filter(among, to=phone, direction=Direction.OUTBOUND,
                                   channel__in=[SMS, MMS])
            .order_by("-created_at").values_list("workspace_id", flat=True).first())


# --- receiving ---------------------------------------------------------------------------

def inbound_receive(*, received: Received, route: Route) -> Outcome:
    """Store the message in each routed workspace, then apply its keyword (and reply) or
    raise `message.received` for its contacts, all in one transaction: a failure keeps
    nothing, and a repeat of the same provider message id changes nothing. Raise
    ValueError for a channel whose spec does not say it receives (`inbound`)."""
    spec = CHANNELS.get(received.channel)
    if spec is None or not spec.inbound:
        raise ValueError(f"channel {received.channel!r} receives no messages")
    outcome = Outcome(keyword=keywords.keyword_of(received.body)
                      if spec.keyword_reply_channel else None)
    stored = _stored(received, route)
    if stored:
        return Outcome(messages=stored, keyword=outcome.keyword, duplicate=True)
    try:
        with transaction.atomic():
            outcome.messages = [_store(workspace, received, outcome.keyword)
                                for workspace in route.workspaces]
            # Subscribed endpoints hear of every inbound message, keywords included.
            messages_emit(changes=[(row, MESSAGE_RECEIVED)
                                          for row in outcome.messages], fresh=True)
            if outcome.keyword is not None:
                outcome.reply = _apply_keyword(outcome.keyword, received, route,
                                               outcome.messages)
            else:
                outcome.events = sum(_raise_event(row, received) for row in outcome.messages)
    except IntegrityError:
        stored = _stored(received, route)
        if not stored:
            raise
        # A concurrent repeat of the same provider message won: it did the work.
        return Outcome(messages=stored, keyword=outcome.keyword, duplicate=True)
    return outcome


def _stored(received: Received, route: Route) -> list[Message]:
    """Return the rows an earlier delivery of this provider message id left, if any."""
    if not received.provider_message_id or not route.workspaces:
        return []
    return list(Message.objects.filter(
        workspace__in=route.workspaces, direction=Direction.INBOUND,
        provider_message_id=received.provider_message_id[:200]))


def _senders_contacts(workspace: Workspace, received: Received) -> QuerySet[Contact]:
    """Return the workspace's contacts with the sender's address, in the Contact field of
    the channel's recipient kind (phone for sms and mms); none for a kind without one."""
    field = CONTACT_FIELDS.get(CHANNELS[received.channel].recipient)
    if not received.sender or field is None:
        return Contact.objects.none()
    return Contact.objects.filter(workspace=workspace, **{field: received.sender})


def _store(workspace: Workspace, received: Received, keyword: str | None) -> Message:
    contact = _senders_contacts(workspace, received).order_by("created_at").first()
    metadata: dict[str, Any] = {"keyword": keyword} if keyword else {}
    if received.messaging_service_sid:
        metadata["messaging_service_sid"] = received.messaging_service_sid
    return Message.objects.create(
        workspace=workspace, contact=contact, channel=received.channel, to=received.to,
        sender=received.sender, direction=Direction.INBOUND, status=MessageStatus.RECEIVED,
        content={"body": received.body, "media_urls": list(received.media_urls)},
        metadata=metadata, source=SOURCE, provider=received.provider,
        provider_message_id=received.provider_message_id[:200], max_attempts=0)


def _apply_keyword(kind: str, received: Received, route: Route,
                   rows: list[Message]) -> Message | None:
    """Change consent across the route's scope; answer from the first routed workspace, on
    the channel's keyword_reply_channel (an mms STOP is answered by sms)."""
    spec: ChannelSpec = CHANNELS[received.channel]
    try:
        address = NORMALIZERS.get(spec.recipient, str.strip)(received.sender)
    except ValidationError:
        logger.warning("keyword %s from %r ignored: not a valid %s", kind, received.sender,
                       spec.recipient)
        return None
    keywords.keyword_apply(kind=kind, channel=received.channel, address=address,
                           scope=route.scope, source=f"inbound {kind} to {received.to}"[:100])
    if not rows:
        return None
    inbound = rows[0]
    text = keywords.reply_text(inbound.workspace, kind)
    if text is None:
        return None
    return message_create(workspace=inbound.workspace, channel=spec.keyword_reply_channel,
                          to=address,
                          content={"body": text}, contact=inbound.contact, source="keyword",
                          category=Category.TRANSACTIONAL, parent=inbound,
                          metadata={"keyword": kind})


def _raise_event(row: Message, received: Received) -> int:
    """Send message.received for each contact of the phone in the row's workspace; return
    how many."""
    if not received.sender:
        return 0
    properties = {"body": received.body, "from": received.sender, "to": received.to,
                  "media_urls": list(received.media_urls), "message_id": str(row.pk)}
    contacts = list(_senders_contacts(row.workspace, received))
    for contact in contacts:
        message_received.send(sender=Message, workspace=row.workspace, contact=contact,
                              name=EVENT, properties=properties, message=row)
    return len(contacts)
