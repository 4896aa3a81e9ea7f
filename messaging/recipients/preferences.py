"""Subscription topics: what a contact chose to receive, per topic and channel.

A workspace's topics (messaging.models.Topic) each have a default (`default_opt_in`) and
may be `critical` (they cannot be turned off). A contact's TopicPreference rows hold the
choices made, per topic and channel list (sms covers mms); a topic the contact never chose
for follows its default. The pre-send policy asks `refused_by_preference` about a batch in
one query, and suppresses the messages it names (`suppressed_reason: preference`).

The hosted preference page opens at a signed link signed like the unsubscribe link
(recipients.unsubscribe, its own salt), naming the workspace and the contact.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import FilteredRelation, Q
from django.urls import reverse

from core.models import Contact
from messaging.channels import SUPPRESSION_LISTS, list_of
from messaging.models import Message, Topic, TopicPreference
from messaging.recipients import unsubscribe

# Keeps preference links apart from unsubscribe links (one cannot open the other's page).
SALT = "relay.preferences"


def preference_channels() -> list[str]:
    """Return the channels a preference is kept for: the suppression lists (sms, email)."""
    return list(SUPPRESSION_LISTS)


@dataclass(frozen=True)
class Preference:
    """A contact's effective choice for a topic on a channel (`chosen`: a row says so,
    rather than the topic's default)."""

    topic: Topic
    channel: str
    opted_in: bool
    chosen: bool


def preferences_of(contact: Contact) -> list[Preference]:
    """Return the contact's preference for each topic of its workspace on each channel, in
    topic key then channel order (two queries)."""
    topics = list(Topic.objects.filter(workspace_id=contact.workspace_id).order_by("key"))
    rows = {(row.topic_id, row.channel): row.opted_in
            for row in TopicPreference.objects.filter(contact=contact)}
    result = []
    for topic in topics:
        for channel in preference_channels():
            chosen = rows.get((topic.pk, channel))
            opted_in = topic.critical or (topic.default_opt_in if chosen is None else chosen)
            result.append(Preference(topic, channel, opted_in, chosen is not None))
    return result


class PreferencesInvalid(Exception):
    """Refuse a change of preferences: `errors` holds the errors of each item at fault by
    field, under the item's position ({"1": {"topic": [...]}}, as REST framework reports a
    list's items)."""

    def __init__(self, errors: dict[str, dict[str, list[str]]]) -> None:
        super().__init__("Invalid preferences.")
        self.errors = errors


def preferences_set(contact: Contact, items: Iterable[dict[str, Any]]) -> None:
    """Set the contact's choices: each item names a topic (its key), a channel and
    opted_in. Raise PreferencesInvalid and change nothing when a topic is unknown, a
    channel has no preferences, or an item turns a critical topic off. Choices not named
    keep their value."""
    items = list(items)
    topics = {topic.key: topic for topic in Topic.objects.filter(
        workspace_id=contact.workspace_id, key__in={str(i.get("topic")) for i in items})}
    errors: dict[int, dict[str, list[str]]] = {}
    wanted: dict[tuple[Any, str], bool] = {}
    for index, item in enumerate(items):
        topic = topics.get(str(item.get("topic")))
        if topic is None:
            errors[index] = {"topic": ["No such topic in this workspace."]}
        elif item.get("channel") not in preference_channels():
            errors[index] = {"channel": [
                f"Use one of {', '.join(preference_channels())}."]}
        elif topic.critical and not item.get("opted_in"):
            errors[index] = {"opted_in": [
                f"The topic {topic.key} is critical and cannot be turned off."]}
        else:
            wanted[(topic.pk, item["channel"])] = bool(item.get("opted_in"))
    if errors:
        raise PreferencesInvalid({str(index): item for index, item in errors.items()})
    with transaction.atomic():
        TopicPreference.objects.bulk_create(
            [TopicPreference(contact=contact, topic_id=topic_id, channel=channel,
                             opted_in=opted_in)
             for (topic_id, channel), opted_in in wanted.items()],
            update_conflicts=True, unique_fields=["contact", "topic", "channel"],
            update_fields=["opted_in", "updated_at"])


def refused_by_preference(messages: Iterable[Message]) -> set[Any]:
    """Return the ids of the messages whose topic their recipient opted out of on the
    message's channel, or whose topic defaults to out with no opt-in (critical topics always
    pass). One query for the batch, none without a topic."""
    with_topic = [m for m in messages if m.topic_id is not None and list_of(m.channel)]
    if not with_topic:
        return set()
    contact_ids = {m.contact_id for m in with_topic if m.contact_id is not None}
    rows = Topic.objects.filter(pk__in={m.topic_id for m in with_topic}).annotate(
        chosen=FilteredRelation("preferences", condition=Q(
            preferences__contact_id__in=contact_ids))).values_list(
        "id", "default_opt_in", "critical", "chosen__contact_id", "chosen__channel",
        "chosen__opted_in")
    defaults: dict[Any, bool | None] = {}  # None: critical
    chosen: dict[tuple[Any, Any, str], bool] = {}
    for topic_id, default_opt_in, critical, contact_id, channel, opted_in in rows:
        defaults[topic_id] = None if critical else default_opt_in
        if contact_id is not None:
            chosen[(topic_id, contact_id, channel)] = opted_in
    refused = set()
    for message in with_topic:
        default = defaults.get(message.topic_id)
        if default is None:  # critical, or the topic is gone
            continue
        opted_in = chosen.get((message.topic_id, message.contact_id,
                               list_of(message.channel) or ""), default)
        if not opted_in:
            refused.add(message.pk)
    return refused


# --- the hosted preference page ---------------------------------------------------------------

def preferences_token(*, workspace_id: Any, contact_id: Any, channel: str) -> str:
    """Return the signed token of a contact's preference page."""
    return unsubscribe.make_token(workspace_id=workspace_id, contact_id=contact_id,
                                  address="", channel=channel, salt=SALT)


def preferences_url(message: Message) -> str:
    """Return the preference page link of an email message's contact, or "" without a
    contact, an email channel or PUBLIC_BASE_URL."""
    if (not message.contact_id or unsubscribe.link_spec(message.channel) is None
            or not settings.PUBLIC_BASE_URL):
        return ""
    token = preferences_token(workspace_id=message.workspace_id,
                              contact_id=message.contact_id, channel=message.channel)
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("preferences", args=[token])


def contact_of(token: str) -> Contact:
    """Return the contact a preference token names; raise unsubscribe.BadToken when the
    token is invalid or its contact is gone."""
    try:
        recipient = unsubscribe.recipient_of(token, salt=SALT)
    except unsubscribe.BadToken as exc:
        raise unsubscribe.BadToken("This preferences link is not valid.") from exc
    if recipient.contact is None:
        raise unsubscribe.BadToken("This preferences link is no longer valid.")
    return recipient.contact
