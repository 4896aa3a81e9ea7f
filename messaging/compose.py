"""Compose a message from channel content: the rules every way of sending shares.

The v1 API, the older compatible endpoints and flow send nodes all hand a dict of fields
to `message_compose`, so a message is refused for the same reasons, with the same words,
whichever way it comes in. The checks run in three rounds, each reporting all it finds
before the next runs: field types and single-field rules; unknown fields and fields the
channel does not take; then contact, recipient and required content.

Field types are checked with REST framework fields built from the channel table, so the
type messages are the ones the API has always answered with.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.utils import timezone
from rest_framework import serializers
from rest_framework.fields import SkipField, empty, get_error_detail

from core.api import StrictCharField
from core.models import Contact, Workspace
from core.phones import normalize_phone
from messaging import events, ratelimit
from messaging.channels import CHANNELS, CONTENT_FIELDS, ChannelSpec, ContentField
from messaging.delivery import ai_callbacks, creation
from messaging.models import Category, Channel, Message, Priority
from messaging.providers.shared import COMPAT_IDS
from messaging.providers.ssrf import UnsafeURL, check_url_literal
from messaging.providers.webhook import EVENT_ID_FIELD

MAX_DELAY_SECONDS = 366 * 24 * 3600
COMMON_FIELDS = ("channel", "to", "contact_id", "contact_external_id", "send_at",
                 "delay_seconds", "metadata", "priority", "category", "status_callback_url")
# (field, lookup) pairs that name a contact, in the order they are tried.
CONTACT_REFS = (("contact_id", "pk"), ("contact_external_id", "external_id"))


class MessageInvalid(ValidationError):
    """Refuse a message: `fields` maps each field to its errors as the API reports them
    (a bad list item or object value keeps its position: {"media_urls": {0: [...]}})."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__({name: _flat(errors) for name, errors in fields.items()})
        self.fields = fields


def _flat(errors: Any) -> list[str]:
    """Return the messages of a (possibly nested) error detail as one list."""
    if isinstance(errors, dict):
        return [message for nested in errors.values() for message in _flat(nested)]
    return [str(message) for message in errors]


# --- field types ----------------------------------------------------------------------------

def _content_field(spec: ContentField) -> serializers.Field:
    """Return the REST framework field that checks a content field's type."""
    if spec.kind == "text":
        return StrictCharField(required=False, max_length=spec.max_length)
    if spec.kind == "media":
        return serializers.ListField(child=serializers.URLField(max_length=2048),
                                     required=False, min_length=1, max_length=10)
    if spec.kind == "url":
        return serializers.URLField(required=False, max_length=2048)
    if spec.kind == "json":
        return serializers.JSONField(required=False)
    if spec.kind == "headers":
        return serializers.DictField(child=StrictCharField(max_length=1000), required=False)
    raise ValueError(f"unknown content field kind {spec.kind!r}")


def input_fields() -> dict[str, serializers.Field]:
    """Return a fresh field per input name, in the order errors are reported (the API's
    request schema is built from these too)."""
    return {
        "channel": serializers.ChoiceField(choices=Channel.choices),
        "to": StrictCharField(required=False, max_length=320),
        "contact_id": serializers.UUIDField(required=False),
        "contact_external_id": StrictCharField(required=False, max_length=200),
        **{name: _content_field(spec) for name, spec in CONTENT_FIELDS.items()},
        "send_at": serializers.DateTimeField(required=False),
        "delay_seconds": serializers.IntegerField(required=False, min_value=0,
                                                  max_value=MAX_DELAY_SECONDS),
        "metadata": serializers.DictField(required=False),
        "priority": serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL),
        "category": serializers.ChoiceField(choices=Category.choices, required=False),
        "status_callback_url": StrictCharField(required=False, max_length=2048),
    }


@functools.cache
def _parsers() -> dict[str, serializers.Field]:
    """Return the fields the composer checks types with (they keep no state per value)."""
    return input_fields()


# --- single-field rules ---------------------------------------------------------------------

def safe_url(value: str, *, https_only: bool = False) -> str:
    """Refuse URLs that are not http(s), or (literally) point at private networks."""
    if https_only and not value.lower().startswith("https://"):
        raise ValidationError("Must be an https:// URL.")
    try:
        check_url_literal(value)
    except UnsafeURL as exc:
        raise ValidationError(str(exc)) from exc
    return value


def _check_send_at(value: datetime, raw: Any) -> datetime:
    """Refuse a send_at written without an offset, or already in the past."""
    if isinstance(raw, str) and not _has_offset(raw):
        raise ValidationError("Give an ISO 8601 time with an offset "
                              "(2026-01-01T09:00:00+01:00 or ...Z).")
    tolerance = timedelta(seconds=settings.SEND_AT_PAST_TOLERANCE_SECONDS)
    if value < timezone.now() - tolerance:
        raise ValidationError("Is in the past.")
    return value


def _has_offset(raw: str) -> bool:
    """Tell whether an ISO 8601 text names its UTC offset (a naive time is ambiguous)."""
    tail = raw.strip()[10:]
    return tail.endswith(("Z", "z")) or "+" in tail or "-" in tail


# Rules run on a field's parsed value (with the raw input at hand), by field kind.
KIND_RULES: dict[str, Callable[[Any, Any], Any]] = {
    "media": lambda value, raw: [safe_url(url, https_only=True) for url in value],
    "url": lambda value, raw: safe_url(value),
}


def _rule_for(name: str) -> Callable[[Any, Any], Any] | None:
    """Return the rule a field's parsed value must also pass, if any."""
    if name == "send_at":
        return _check_send_at
    if name == "status_callback_url":
        return lambda value, raw: events.callback_url_check(value)
    spec = CONTENT_FIELDS.get(name)
    return KIND_RULES.get(spec.kind) if spec else None


def _parse(data: dict) -> dict[str, Any]:
    """Return the typed values of the given fields; raise with every type or rule error."""
    values: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for name, parser in _parsers().items():
        raw = data.get(name, empty)
        rule = _rule_for(name)
        try:
            value = parser.run_validation(raw)
            values[name] = rule(value, raw) if rule else value
        except SkipField:
            continue
        except serializers.ValidationError as exc:
            errors[name] = exc.detail
        except ValidationError as exc:
            errors[name] = get_error_detail(exc)
    if errors:
        raise MessageInvalid(errors)
    return values


# --- whole-message rules --------------------------------------------------------------------

def _check_field_names(data: dict, spec: ChannelSpec) -> None:
    """Refuse fields nobody takes, and content fields this channel does not take."""
    unknown = set(data) - set(COMMON_FIELDS) - set(CONTENT_FIELDS)
    errors: dict[str, Any] = {name: ["Unknown field."] for name in sorted(unknown)}
    for name in sorted((set(data) & set(CONTENT_FIELDS)) - set(spec.field_names)):
        errors[name] = [f"Not used by the {spec.name} channel."]
    if errors:
        raise MessageInvalid(errors)


# Metadata keys only the older endpoints write: the client ids providers send as the
# contact's and workspace's (another client could speak for a stranger), a message's own
# rate key (another client could split its limit into many), the AI callback's shape and
# an event delivery's event (it is the webhook-id receivers deduplicate on).
RESERVED_METADATA = (COMPAT_IDS, ratelimit.RATE_KEY_FIELD, ai_callbacks.CALLBACK_SHAPE_FIELD,
                     EVENT_ID_FIELD, events.EVENT_TYPE_FIELD)


def _check_reserved_metadata(values: dict) -> None:
    """Refuse reserved metadata keys in what a sender wrote: only the endpoints that own
    them add them, through message_compose's `reserved`."""
    metadata = values.get("metadata") or {}
    taken = [key for key in RESERVED_METADATA if key in metadata]
    if taken:
        raise MessageInvalid({"metadata": [f"{taken[0]} is a reserved key."]})


def _contact(workspace: Workspace, values: dict, cache: dict) -> Contact | None:
    """Return the contact the message names (looked up once per cache), or None."""
    for field, lookup in CONTACT_REFS:
        if field in values:
            ref = (lookup, str(values[field]))
            if ref not in cache:
                cache[ref] = Contact.objects.filter(workspace=workspace,
                                                    **{lookup: values[field]}).first()
            if cache[ref] is None:
                raise MessageInvalid({field: ["No such contact."]})
            return cache[ref]
    return None


def _phone_recipient(values: dict, contact: Contact | None) -> str:
    """Return `to` or the contact's phone in E.164; a phone channel cannot go without."""
    to = values.get("to", "") or (contact.phone if contact else "")
    if not to:
        raise MessageInvalid({"to": ["A phone number is required "
                                     "(to, or a contact with a phone)."]})
    try:
        return normalize_phone(to)
    except ValidationError as exc:
        raise MessageInvalid({"to": exc.messages}) from exc


def _address_recipient(values: dict, contact: Contact | None) -> str:
    """Return `to` or the contact's email, which must be a valid address."""
    to = values.get("to", "") or (contact.email if contact else "")
    try:
        EmailValidator()(to)
    except ValidationError as exc:
        raise MessageInvalid({"to": ["A valid email address is required "
                                     "(to, or a contact with an email)."]}) from exc
    return to


# How each channel's `to` is found and checked (ChannelSpec.recipient).
RECIPIENTS: dict[str, Callable[[dict, Contact | None], str]] = {
    "phone": _phone_recipient,
    "address": _address_recipient,
    "url": lambda values, contact: values.get("url", ""),
    "free": lambda values, contact: values.get("to", ""),
}


def _require_content(values: dict, spec: ChannelSpec) -> None:
    """Refuse a message missing content its channel cannot go without."""
    errors = {name: ["This field is required."] for name in spec.required
              if name not in values}
    if spec.any_of and not any(values.get(name) for name in spec.any_of):
        errors[spec.any_of[0]] = [f"Give {' and/or '.join(spec.any_of)}."]
    if errors:
        raise MessageInvalid(errors)


def _send_at(values: dict) -> datetime | None:
    """Return when the message is due (None: now); a delay counts from now."""
    if "send_at" in values and "delay_seconds" in values:
        raise MessageInvalid({"send_at": ["Give send_at or delay_seconds, not both."]})
    if values.get("delay_seconds"):
        return timezone.now() + timedelta(seconds=values["delay_seconds"])
    return values.get("send_at")


# --- the composer ---------------------------------------------------------------------------

def message_compose(*, workspace: Workspace, data: Any, source: str = "api",
                    contacts_cache: dict | None = None,
                    reserved: dict[str, Any] | None = None) -> Message:
    """Return the unsaved message `data` describes, or raise MessageInvalid (a
    ValidationError mapping each field to its messages).

    `data` holds the v1 API fields (channel, to or a contact reference, the channel's
    content, send_at or delay_seconds, metadata, priority). Pass one `contacts_cache`
    for many messages to look each contact up once. `reserved` holds the RESERVED_METADATA
    keys the calling endpoint itself writes; `data` may never carry them.
    """
    unknown = set(reserved or ()) - set(RESERVED_METADATA)
    if unknown:  # a caller's mistake, not the sender's
        raise ValueError(f"not reserved metadata keys: {sorted(unknown)}")
    if not isinstance(data, dict):
        raise MessageInvalid({"non_field_errors": ["Expected a JSON object."]})
    values = _parse(data)
    spec = CHANNELS[values["channel"]]
    _check_field_names(data, spec)
    _check_reserved_metadata(values)
    send_at = _send_at(values)
    contact = _contact(workspace, values, {} if contacts_cache is None else contacts_cache)
    to = RECIPIENTS[spec.recipient](values, contact)
    _require_content(values, spec)
    return creation.message_build(
        workspace=workspace, channel=spec.name, to=to, contact=contact, send_at=send_at,
        content={name: values[name] for name in spec.field_names if name in values},
        metadata={**(values.get("metadata") or {}), **(reserved or {})},
        priority=values["priority"], source=source, category=values.get("category"),
        status_callback_url=values.get("status_callback_url", ""))
