"""Compose a message from channel content: the rules every way of sending shares.

The v1 API, the older compatible endpoints and flow send nodes all hand a dict of fields
to `message_compose`, so a message is refused for the same reasons, with the same words,
whichever way it comes in. The checks run in three rounds, each reporting all it finds
before the next runs: field types and single-field rules; unknown fields and fields the
channel does not take; then contact, recipient and required content.

Field types are checked here, in plain Python, from one table of inputs (`message_inputs`,
built from the channel table): the domain does not depend on the API layer. The API builds
its REST framework fields (its request schema) from the same table
(messaging.api.compose_fields), and the type messages are word for word the ones REST
framework answers with, which the API has always answered with (a test holds them equal).
"""
from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from types import MappingProxyType
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.models import Contact, Workspace
from core.phones import normalize_phone
from messaging import ratelimit
from messaging.channels import CHANNELS, CONTENT_FIELDS, ChannelSpec, ContentField
from messaging.delivery import ai_callbacks, creation
from messaging.delivery.templating import variant_pick
from messaging.events.endpoints import callback_url_check
from messaging.events.types import EVENT_TYPE_FIELD
from messaging.models import (
    INTERNAL_METADATA_PREFIX,
    Category,
    Channel,
    Message,
    Priority,
    TemplateVersion,
    Topic,
)
from messaging.providers.shared import COMPAT_IDS
from messaging.providers.ssrf import UnsafeURL, check_url_literal
from messaging.providers.webhook import EVENT_ID_FIELD

MAX_DELAY_SECONDS = 366 * 24 * 3600
COMMON_FIELDS = ("channel", "to", "contact_id", "contact_external_id", "template", "send_at",
                 "delay_seconds", "metadata", "priority", "category", "topic",
                 "status_callback_url")
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

# Sizes the API has always had (its request schema says them too).
URL_MAX_LENGTH = 2048
MEDIA_MAX_ITEMS = 10
HEADER_MAX_LENGTH = 1000
# REST framework's guard against huge numbers written as text.
INTEGER_MAX_TEXT = 1000
# What a send_at that is no time is told (REST framework's words for its ISO 8601 input).
DATETIME_FORMAT_HINT = "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]"


class _Missing:
    """The type of MISSING (a field not given at all, which is not a given null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FieldInvalid(Exception):
    """Refuse one field's value: `detail` lists its messages, or maps a list item's position
    or an object's key to that item's messages."""

    def __init__(self, detail: list[str] | dict[Any, Any]) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class InputField:
    """One field a message takes. `kind` picks its type check: the content kinds of
    messaging.channels.ContentField (text, url, media, json, headers) and choice, uuid,
    datetime, integer, object (a JSON object of anything)."""

    name: str
    kind: str
    required: bool = False
    # The value of a field left out (None: it stays out).
    default: str | None = None
    max_length: int | None = None
    choices: tuple[tuple[str, str], ...] = ()
    min_value: int | None = None
    max_value: int | None = None

    def parse(self, raw: Any) -> Any:
        """Return the typed value of `raw` (MISSING given: the default, or MISSING when the
        field stays out), or raise FieldInvalid with REST framework's words for the same
        mistake, so every way of sending answers as the API always has."""
        if raw is MISSING:
            if self.required:
                raise FieldInvalid(["This field is required."])
            return MISSING if self.default is None else self.default
        return KIND_PARSERS[self.kind](self, raw)


def _not_null(raw: Any) -> None:
    """Refuse a null (no input field allows one)."""
    if raw is None:
        raise FieldInvalid(["This field may not be null."])


_SURROGATE = re.compile("[\ud800-\udfff]")


def _string(raw: Any, max_length: int | None, *, url: bool = False) -> str:
    """Return the trimmed text; numbers and booleans are refused, not turned into text."""
    if isinstance(raw, str) and not raw.strip():
        raise FieldInvalid(["This field may not be blank."])
    _not_null(raw)
    # A URL field takes a number as its text (then refuses it as no URL) and calls any other
    # non-text "no URL", as the API's URLField always has; the other text fields refuse
    # numbers outright.
    number = isinstance(raw, int | float) and not isinstance(raw, bool)
    if not (isinstance(raw, str) or (url and number)):
        raise FieldInvalid(["Enter a valid URL." if url else "Not a valid string."])
    value = str(raw).strip()
    errors = []
    if max_length is not None and len(value) > max_length:
        errors.append(f"Ensure this field has no more than {max_length} characters.")
    if "\x00" in value:
        errors.append("Null characters are not allowed.")
    if surrogate := _SURROGATE.search(value):
        errors.append(f"Surrogate characters are not allowed: U+{ord(surrogate.group()):X}.")
    if url:
        try:
            URLValidator()(value)
        except ValidationError as exc:
            errors.extend(exc.messages)
    if errors:
        raise FieldInvalid(errors)
    return value


def _media(field: InputField, raw: Any) -> list[str]:
    """Return a list of 1 to MEDIA_MAX_ITEMS URLs; a bad URL is reported at its position."""
    _not_null(raw)
    if isinstance(raw, str | Mapping) or not hasattr(raw, "__iter__"):
        raise FieldInvalid([f'Expected a list of items but got type "{type(raw).__name__}".'])
    values, errors = [], {}
    for index, item in enumerate(raw):
        try:
            values.append(_string(item, URL_MAX_LENGTH, url=True))
        except FieldInvalid as exc:
            errors[index] = exc.detail
    if errors:
        raise FieldInvalid(errors)
    if len(values) > MEDIA_MAX_ITEMS:
        raise FieldInvalid([f"Ensure this field has no more than {MEDIA_MAX_ITEMS} elements."])
    if not values:
        raise FieldInvalid(["Ensure this field has at least 1 elements."])
    return values


def _object(raw: Any) -> dict:
    """Return a JSON object (any other value, even a list, is refused)."""
    _not_null(raw)
    if not isinstance(raw, dict):
        raise FieldInvalid([f'Expected a dictionary of items but got type '
                            f'"{type(raw).__name__}".'])
    return raw


def _headers(field: InputField, raw: Any) -> dict[str, str]:
    """Return an object of short strings; a bad value is reported under its key."""
    values, errors = {}, {}
    for key, value in _object(raw).items():
        try:
            values[str(key)] = _string(value, HEADER_MAX_LENGTH)
        except FieldInvalid as exc:
            errors[str(key)] = exc.detail
    if errors:
        raise FieldInvalid(errors)
    return values


def _json(field: InputField, raw: Any) -> Any:
    """Return any value JSON can write (the payload goes out as JSON)."""
    _not_null(raw)
    try:
        json.dumps(raw)
    except (TypeError, ValueError) as exc:
        raise FieldInvalid(["Value must be valid JSON."]) from exc
    return raw


def _choice(field: InputField, raw: Any) -> str:
    """Return the choice `raw` names (compared as text, as the API always has)."""
    _not_null(raw)
    if isinstance(raw, Enum) and str(raw) != str(raw.value):
        raw = raw.value
    for value, _label in field.choices:
        if str(value) == str(raw):
            return value
    raise FieldInvalid([f'"{raw}" is not a valid choice.'])


def _uuid(field: InputField, raw: Any) -> uuid.UUID:
    """Return the UUID written as text (any of Python's notations) or as an integer."""
    _not_null(raw)
    try:
        if isinstance(raw, uuid.UUID):
            return raw
        if isinstance(raw, int):
            return uuid.UUID(int=raw)
        if isinstance(raw, str):
            return uuid.UUID(hex=raw)
    except ValueError:
        pass
    raise FieldInvalid(["Must be a valid UUID."])


# A trailing ".0" is allowed on a whole number (12.0), as REST framework allows it.
_DECIMAL_ZEROS = re.compile(r"\.0*\s*$")


def _integer(field: InputField, raw: Any) -> int:
    """Return a whole number (12, 12.0, "12" or "12.0") within the field's bounds."""
    _not_null(raw)
    if isinstance(raw, str) and len(raw) > INTEGER_MAX_TEXT:
        raise FieldInvalid(["String value too large."])
    try:
        value = int(_DECIMAL_ZEROS.sub("", str(raw)))
    except (ValueError, TypeError) as exc:
        raise FieldInvalid(["A valid integer is required."]) from exc
    if field.max_value is not None and value > field.max_value:
        raise FieldInvalid([f"Ensure this value is less than or equal to {field.max_value}."])
    if field.min_value is not None and value < field.min_value:
        raise FieldInvalid([f"Ensure this value is greater than or equal to "
                            f"{field.min_value}."])
    return value


def _datetime(field: InputField, raw: Any) -> datetime:
    """Return an aware time from ISO 8601 text (a naive one is taken in the current time
    zone here; _check_send_at then refuses text without an offset)."""
    _not_null(raw)
    if isinstance(raw, date) and not isinstance(raw, datetime):
        raise FieldInvalid(["Expected a datetime but got a date."])
    parsed = raw if isinstance(raw, datetime) else None
    if parsed is None:
        try:
            parsed = parse_datetime(raw)
        except (ValueError, TypeError):
            parsed = None
    if parsed is None:
        raise FieldInvalid([f"Datetime has wrong format. Use one of these formats instead: "
                            f"{DATETIME_FORMAT_HINT}."])
    zone = timezone.get_current_timezone()
    if timezone.is_aware(parsed):
        try:
            return parsed.astimezone(zone)
        except OverflowError as exc:
            raise FieldInvalid(["Datetime value out of range."]) from exc
    aware = timezone.make_aware(parsed, zone)
    # A local time that happens twice is ambiguous (one that never happens is let through).
    exists = aware.astimezone(UTC) == aware
    if exists and aware.replace(fold=not aware.fold).utcoffset() != aware.utcoffset():
        raise FieldInvalid([f'Invalid datetime for the timezone "{zone}".'])
    return aware


# How each kind of input is checked and typed (InputField.kind).
KIND_PARSERS: dict[str, Callable[[InputField, Any], Any]] = {
    "text": lambda field, raw: _string(raw, field.max_length),
    "url": lambda field, raw: _string(raw, URL_MAX_LENGTH, url=True),
    "media": _media,
    "json": _json,
    "headers": _headers,
    "object": lambda field, raw: {str(key): value for key, value in _object(raw).items()},
    "choice": _choice,
    "uuid": _uuid,
    "integer": _integer,
    "datetime": _datetime,
}


def message_inputs() -> Mapping[str, InputField]:
    """Return the fields a message takes, in the order their errors are reported (the API's
    request schema is built from these too). Rebuilt when a channel is registered."""
    return _inputs(tuple(CONTENT_FIELDS.values()))


@functools.lru_cache(maxsize=8)
def _inputs(content: tuple[ContentField, ...]) -> Mapping[str, InputField]:
    """Return the input table for these content fields (cached: a batch reads it per item)."""
    fields = (
        InputField("channel", "choice", required=True, choices=tuple(Channel.choices)),
        InputField("to", "text", max_length=320),
        InputField("contact_id", "uuid"),
        InputField("contact_external_id", "text", max_length=200),
        InputField("template", "uuid"),
        *(InputField(spec.name, spec.kind, max_length=spec.max_length) for spec in content),
        InputField("send_at", "datetime"),
        InputField("delay_seconds", "integer", min_value=0, max_value=MAX_DELAY_SECONDS),
        InputField("metadata", "object"),
        InputField("priority", "choice", choices=tuple(Priority.choices),
                   default=Priority.NORMAL),
        InputField("category", "choice", choices=tuple(Category.choices)),
        InputField("topic", "text", max_length=64),
        InputField("status_callback_url", "text", max_length=URL_MAX_LENGTH),
    )
    return MappingProxyType({field.name: field for field in fields})


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
        return lambda value, raw: callback_url_check(value)
    spec = CONTENT_FIELDS.get(name)
    return KIND_RULES.get(spec.kind) if spec else None


def _parse(data: dict) -> dict[str, Any]:
    """Return the typed values of the given fields; raise with every type or rule error."""
    values: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for name, field in message_inputs().items():
        raw = data.get(name, MISSING)
        rule = _rule_for(name)
        try:
            value = field.parse(raw)
            if value is MISSING:
                continue
            values[name] = rule(value, raw) if rule else value
        except FieldInvalid as exc:
            errors[name] = exc.detail
        except ValidationError as exc:
            errors[name] = exc.messages
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
# an event delivery's event (it is the webhook-id receivers deduplicate on). Every one
# starts with INTERNAL_METADATA_PREFIX, and a sender may write no key that does: a key the
# service adds later is then never one a sender already uses.
RESERVED_METADATA = (COMPAT_IDS, ratelimit.RATE_KEY_FIELD, ai_callbacks.CALLBACK_SHAPE_FIELD,
                     EVENT_ID_FIELD, EVENT_TYPE_FIELD)


def metadata_key_reserved(key: Any) -> bool:
    """Tell whether a top-level metadata key is the service's own (README.md, "Messages")."""
    return isinstance(key, str) and key.startswith(INTERNAL_METADATA_PREFIX)


def _check_reserved_metadata(values: dict) -> None:
    """Refuse reserved metadata keys in what a sender wrote, naming each: only the endpoints
    that own them add them, through message_compose's `reserved`."""
    taken = sorted(key for key in values.get("metadata") or {} if metadata_key_reserved(key))
    if taken:
        raise MessageInvalid({"metadata": [f"{key} is a reserved key." for key in taken]})


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


def _topic(workspace: Workspace, values: dict, cache: dict) -> Topic | None:
    """Return the workspace's topic the message names by key (looked up once per cache),
    or None when it names none."""
    key = values.get("topic")
    if not key:
        return None
    ref = ("topic", key)
    if ref not in cache:
        cache[ref] = Topic.objects.filter(workspace=workspace, key=key).first()
    if cache[ref] is None:
        raise MessageInvalid({"topic": ["No such topic in this workspace."]})
    return cache[ref]


def _template_version(workspace: Workspace, values: dict, cache: dict) -> TemplateVersion:
    """Return the current version of the workspace's template the message names (looked up
    once per cache: a sender to many contacts may put a pinned version there)."""
    ref = ("template", str(values["template"]))
    if ref not in cache:
        cache[ref] = (TemplateVersion.objects.select_related("template", "topic")
                      .filter(template__workspace=workspace, template__pk=values["template"],
                              template__deleted_at__isnull=True,
                              template__current=models.F("pk")).first())
    if cache[ref] is None:
        raise MessageInvalid({"template": ["No such template in this workspace."]})
    return cache[ref]


def _apply_template(workspace: Workspace, values: dict, spec: ChannelSpec, cache: dict,
                    contact: Contact | None) -> TemplateVersion | None:
    """Put the content of the named template's variant for the contact's locale into
    `values` and return its version (None when the message names no template)."""
    if "template" not in values:
        return None
    given = [name for name in spec.field_names if name in values]
    if given:
        raise MessageInvalid({"template": [f"Give a template or the content "
                                           f"({', '.join(given)}), not both."]})
    version = _template_version(workspace, values, cache)
    if version.template.channel != spec.name:
        raise MessageInvalid({"channel": [f"The template is for the "
                                          f"{version.template.channel} channel."]})
    _locale, content = variant_pick(version.variants, version.default_locale,
                                    contact.locale if contact else "")
    values.update(content)
    return version


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

def _fields_checked(data: Any) -> tuple[dict[str, Any], ChannelSpec]:
    """Return the parsed values of `data` and its channel's spec; raise MessageInvalid for
    what is not a JSON object, a bad value, a field the channel does not take or reserved
    metadata (the checks every message and every broadcast's content pass)."""
    if not isinstance(data, dict):
        raise MessageInvalid({"non_field_errors": ["Expected a JSON object."]})
    values = _parse(data)
    spec = CHANNELS[values["channel"]]
    _check_field_names(data, spec)
    _check_reserved_metadata(values)
    return values, spec


def content_check(*, data: Any, workspace: Workspace | None = None) -> None:
    """Raise MessageInvalid unless `data` (channel, content, category...) would make a
    message once a recipient is added: what a sender to many contacts checks once, before
    it composes for each (audiences.broadcasts). With the workspace, a `topic` must be
    one of its topics."""
    values, spec = _fields_checked(data)
    if workspace is not None:
        _topic(workspace, values, {})
        _apply_template(workspace, values, spec, {}, None)
    elif "template" in values:
        raise ValueError("a template needs the workspace")  # a caller's mistake
    _require_content(values, spec)


def message_compose(*, workspace: Workspace, data: Any, source: str = "api",
                    contacts_cache: dict | None = None,
                    reserved: dict[str, Any] | None = None) -> Message:
    """Return the unsaved message `data` describes, or raise MessageInvalid (a
    ValidationError mapping each field to its messages).

    `data` holds the v1 API fields (channel, to or a contact reference, the channel's
    content or a `template`, send_at or delay_seconds, metadata, priority). Pass one
    `contacts_cache` for many messages to look each contact (and template) up once.
    `reserved` holds the RESERVED_METADATA keys the calling endpoint itself writes; `data`
    may never carry them.
    """
    unknown = set(reserved or ()) - set(RESERVED_METADATA)
    if unknown:  # a caller's mistake, not the sender's
        raise ValueError(f"not reserved metadata keys: {sorted(unknown)}")
    values, spec = _fields_checked(data)
    send_at = _send_at(values)
    cache = {} if contacts_cache is None else contacts_cache
    contact = _contact(workspace, values, cache)
    topic = _topic(workspace, values, cache)
    version = _apply_template(workspace, values, spec, cache, contact)
    to = RECIPIENTS[spec.recipient](values, contact)
    _require_content(values, spec)
    message = creation.message_build(
        workspace=workspace, channel=spec.name, to=to, contact=contact, send_at=send_at,
        content={name: values[name] for name in spec.field_names if name in values},
        metadata={**(values.get("metadata") or {}), **(reserved or {})},
        priority=values["priority"], source=source, category=values.get("category"),
        status_callback_url=values.get("status_callback_url", ""))
    # A topic the send names wins over its template's.
    message.topic = topic or (version.topic if version else None)
    message.template_version = version
    return message
