"""Workspace settings: the keys the service reads, their checks, and how a change merges.

Workspace.settings is JSON, written on the workspace's admin page (the whole object) and by
`PATCH /api/v1/workspace` (a partial update: each key given replaces the stored one, `null`
removes it). Both run the checks of this module, so they refuse the same values. The keys:

- `quiet_hours`: {"start": "HH:MM", "end": "HH:MM"}, start != end (may wrap midnight).
- `frequency_caps`: {"sms"|"email": "3/day"} (core.parsing.Cap; sms counts mms too).
- `frequency_cap_action`: "defer" (default) or "suppress".
- `keyword_replies`: {"stop"|"start"|"help": text of 1 to 320 characters}.
- `keyword_replies_by_provider`: true when the provider already answers STOP/START/HELP.
- `callback_base_url`: an http(s) URL without query or fragment; a relative
  `callbackEndpoint` on /api/schedule-job is appended to it.
- `compat_workspace_ids`: the older client's (a CRM's) own ids for this workspace, strings
  or integers; `workspaceId` may name one of them as well as the workspace's id or slug.
- `compat_callback_shape`: "job" (default: `{jobId, type, data}`) or "flat" (the older
  engine's `{jobId, result, nodeId, executionId, flowId, contactId, workspaceId}`): the body
  an /api/schedule-job callback gets when the request does not name one (`callbackShape`).
- `rate_limits`: {rate key: "5/s"} (core.parsing.Rate; "" means no limit).
- `require_two_factor`: true: every member must sign in with two-factor (core.twofactor).
- `providers`: {settings key: {"name": provider, ...its config}}; the name must be one of the
  channel's providers (settings.WORKSPACE_PROVIDER_NAMES, built from the channel table). A
  list of such entries (each naming a different provider) is the failover order.
- `failover_on_unknown_outcome`: true: a call whose outcome is unknown (a timeout after the
  request was sent) fails over to the next provider too, accepting that the recipient may
  get the message twice; false (default): it is retried on the same provider, whose
  idempotency key can deduplicate it.
- `delivery_weight`: an integer from 1 to 100 (default 1): the workspace's share of a
  delivery lane against the other workspaces with messages waiting in it (README.md,
  "Lanes"); 3 takes three turns for another's one.

Credentials (keys naming a token, key, password or secret) are write-only: `mask_secrets`
hides them from every reader, and a change that sends the mask back keeps the stored value.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from core.models import Workspace
from core.parsing import Cap, Rate, parse_clock

CALLBACK_BASE_URL = "callback_base_url"
COMPAT_WORKSPACE_IDS = "compat_workspace_ids"
COMPAT_CALLBACK_SHAPE = "compat_callback_shape"
QUIET_HOURS = "quiet_hours"
FREQUENCY_CAPS = "frequency_caps"
FREQUENCY_CAP_ACTION = "frequency_cap_action"
KEYWORD_REPLIES = "keyword_replies"
KEYWORD_REPLIES_BY_PROVIDER = "keyword_replies_by_provider"
RATE_LIMITS = "rate_limits"
PROVIDERS = "providers"
REQUIRE_TWO_FACTOR = "require_two_factor"
FAILOVER_ON_UNKNOWN_OUTCOME = "failover_on_unknown_outcome"
DELIVERY_WEIGHT = "delivery_weight"
MAX_DELIVERY_WEIGHT = 100

CAP_ACTIONS = ("defer", "suppress")
# The bodies an /api/schedule-job callback can get: today's, or the older engine's flat one.
CALLBACK_SHAPES = ("job", "flat")
CAP_LISTS = ("sms", "email")  # the suppression lists: sms counts mms too
KEYWORDS = ("stop", "start", "help")
MAX_KEYWORD_REPLY = 320  # two SMS segments
# A key naming one of these words holds a credential: never shown, kept when "***" comes back.
SECRET_WORDS = ("token", "key", "password", "secret")
MASK = "***"
# Provider config an API key may not change: where the provider connects (the provider
# calls skip the SSRF guard, since the operator chose the host) and whom it sends as (inbound
# routing trusts a workspace's own numbers). The admin page sets them.
OPERATOR_ONLY_PROVIDER_KEYS = frozenset({
    "api_url", "api_base", "host", "port", "use_tls", "use_ssl", "timeout", "public_base_url",
    "from_number", "messaging_service_sid", "from_email"})

Errors = dict[str, list[str]]  # "settings.quiet_hours.start" -> messages


class SettingsInvalid(ValidationError):
    """Refuse a settings change: `fields` maps each refused path to its messages."""

    def __init__(self, fields: Errors) -> None:
        super().__init__([f"{path}: {m}" for path, messages in fields.items()
                          for m in messages])
        self.fields = fields


def callback_base_url(workspace: Workspace) -> str:
    """Return the base a relative callback is joined to ("" when the setting is unset)."""
    return str((workspace.settings or {}).get(CALLBACK_BASE_URL) or "")


def compat_workspace_ids(workspace: Workspace) -> set[str]:
    """Return the older client's ids for the workspace, as text (10001 and "10001" match)."""
    ids = (workspace.settings or {}).get(COMPAT_WORKSPACE_IDS) or []
    return {str(value) for value in ids} if isinstance(ids, list) else set()


def compat_callback_shape(workspace: Workspace) -> str:
    """Return the workspace's schedule-job callback body ("job" unless set to "flat")."""
    shape = (workspace.settings or {}).get(COMPAT_CALLBACK_SHAPE)
    return shape if shape in CALLBACK_SHAPES else CALLBACK_SHAPES[0]


def is_plain_id(value: Any) -> bool:
    """Tell whether a value is an id the older client could send: a string or an integer."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def is_secret_key(key: Any) -> bool:
    """Tell whether a settings key holds a credential."""
    return isinstance(key, str) and any(word in key.lower() for word in SECRET_WORDS)


def mask_secrets(value: Any) -> Any:
    """Return settings with credentials replaced by "***" (API keys must not read them)."""
    if isinstance(value, dict):
        return {k: MASK if is_secret_key(k) and _is_credential(v) else mask_secrets(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


def _is_credential(value: Any) -> bool:
    # Objects and flags under a secret-sounding name (keyword_replies) are not credentials.
    return bool(value) and not isinstance(value, dict | list | bool)


# --- the checks: each returns {path: [messages]} for one key's value ---------------------------

def _check_base_url(value: Any, path: str) -> Errors:
    """Refuse a callback base that is not an http(s) URL, or carries a query or fragment
    (a path appended after either would not be a path)."""
    error = {path: [f"{CALLBACK_BASE_URL} must be an http(s) URL without query or fragment."]}
    if not isinstance(value, str):
        return error
    if value == "":
        return {}  # unset
    try:
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError:
        return error
    parts = urlsplit(value)
    return error if parts.query or parts.fragment else {}


def _check_compat_ids(value: Any, path: str) -> Errors:
    """Refuse compat ids that are not a list of non-empty strings or integers."""
    if not isinstance(value, list) or not all(
            is_plain_id(item) and str(item).strip() for item in value):
        return {path: [f"{COMPAT_WORKSPACE_IDS} must be a list of non-empty strings "
                       "or integers."]}
    return {}


def _object(value: Any, path: str, keys: tuple[str, ...] | None, what: str,
            check: Callable[[Any, str], Errors]) -> Errors:
    """Check an object whose keys are among `keys` (any, when None) with `check` each."""
    if not isinstance(value, dict):
        return {path: [f"Must be a JSON object ({what})."]}
    errors: Errors = {}
    for key, item in value.items():
        if keys is not None and key not in keys:
            errors[f"{path}.{key}"] = [f"Unknown key; use {', '.join(keys)}."]
        else:
            errors.update(check(item, f"{path}.{key}"))
    return errors


def _parsed(parse: Callable[[str], Any], example: str) -> Callable[[Any, str], Errors]:
    """Return a check that the value is a string `parse` accepts."""
    def check(value: Any, path: str) -> Errors:
        if not isinstance(value, str):
            return {path: [f"Must be a string such as {example!r}."]}
        try:
            parse(value)
        except ValueError as exc:
            return {path: [str(exc)]}
        return {}
    return check


def _check_callback_shape(value: Any, path: str) -> Errors:
    """Refuse a callback shape the service does not build."""
    if value in CALLBACK_SHAPES:
        return {}
    return {path: [f"{COMPAT_CALLBACK_SHAPE} must be one of {', '.join(CALLBACK_SHAPES)}."]}


def _check_quiet_hours(value: Any, path: str) -> Errors:
    """Refuse quiet hours that are not {"start": "HH:MM", "end": "HH:MM"} with start != end."""
    clock = _parsed(parse_clock, "21:00")
    errors = _object(value, path, ("start", "end"), '{"start": "21:00", "end": "08:00"}',
                     clock)
    if errors:
        return errors
    for key in ("start", "end"):
        if key not in value:
            errors[f"{path}.{key}"] = ["This field is required."]
    if not errors and parse_clock(value["start"]) == parse_clock(value["end"]):
        errors[f"{path}.end"] = ["The window must end at another time than it starts."]
    return errors


def _check_frequency_caps(value: Any, path: str) -> Errors:
    return _object(value, path, CAP_LISTS, '{"sms": "3/day"}', _parsed(Cap.parse, "3/day"))


def _check_cap_action(value: Any, path: str) -> Errors:
    return {} if value in CAP_ACTIONS else {path: [f"Use {' or '.join(CAP_ACTIONS)}."]}


def _check_reply(value: Any, path: str) -> Errors:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_KEYWORD_REPLY:
        return {path: [f"Must be a text of 1 to {MAX_KEYWORD_REPLY} characters."]}
    return {}


def _check_keyword_replies(value: Any, path: str) -> Errors:
    return _object(value, path, KEYWORDS, '{"stop": "You are unsubscribed."}', _check_reply)


def _check_bool(value: Any, path: str) -> Errors:
    return {} if isinstance(value, bool) else {path: ["Must be true or false."]}


def _check_weight(value: Any, path: str) -> Errors:
    if isinstance(value, int) and not isinstance(value, bool) and \
            1 <= value <= MAX_DELIVERY_WEIGHT:
        return {}
    return {path: [f"Must be an integer from 1 to {MAX_DELIVERY_WEIGHT}."]}


def _check_rate(value: Any, path: str) -> Errors:
    return {} if value == "" else _parsed(Rate.parse, "5/s")(value, path)


def _check_rate_limits(value: Any, path: str) -> Errors:
    return _object(value, path, tuple(settings.RATE_LIMITS), '{"sms": "5/s"}', _check_rate)


def _check_provider(value: Any, path: str) -> Errors:
    """Refuse a provider entry whose name the channel does not have, or whose config is not
    flat JSON (providers read strings, numbers and flags)."""
    key = path.split(".")[path.split(".").index(PROVIDERS) + 1]
    names: tuple[str, ...] = settings.WORKSPACE_PROVIDER_NAMES[key]
    if not isinstance(value, dict):
        return {path: ['Must be a JSON object ({"name": "twilio", ...}).']}
    errors: Errors = {}
    for key, item in value.items():
        if key == "name":
            if item not in names:
                errors[f"{path}.name"] = [f"Unknown provider; use {', '.join(names)}."]
        elif key == "secrets":
            errors[f"{path}.secrets"] = ["Signing secrets are the workspace's webhook secret."]
        elif item is not None and not isinstance(item, str | int | float | bool):
            errors[f"{path}.{key}"] = ["Must be a string, a number or true/false."]
    return errors


def _check_provider_order(value: Any, path: str) -> Errors:
    """Check one provider entry, or a list of them: the failover order, each entry naming
    a different provider (each has its own idempotency key and breaker by name)."""
    if not isinstance(value, list):
        return _check_provider(value, path)
    if not value:
        return {path: ["List at least one provider."]}
    errors: Errors = {}
    for index, entry in enumerate(value):
        errors.update(_check_provider(entry, f"{path}.{index}"))
    names = [entry.get("name") for entry in value if isinstance(entry, dict)]
    if len(names) != len(value) or None in names:
        errors.setdefault(path, []).append("Each entry of a list names its provider.")
    elif len(set(names)) != len(names):
        errors.setdefault(path, []).append("Each provider may appear once.")
    return errors


def _check_providers(value: Any, path: str) -> Errors:
    return _object(value, path, tuple(settings.WORKSPACE_PROVIDER_NAMES),
                   '{"sms": {"name": "twilio"}}', _check_provider_order)


CHECKS: dict[str, Callable[[Any, str], Errors]] = {
    QUIET_HOURS: _check_quiet_hours,
    FREQUENCY_CAPS: _check_frequency_caps,
    FREQUENCY_CAP_ACTION: _check_cap_action,
    KEYWORD_REPLIES: _check_keyword_replies,
    KEYWORD_REPLIES_BY_PROVIDER: _check_bool,
    CALLBACK_BASE_URL: _check_base_url,
    COMPAT_WORKSPACE_IDS: _check_compat_ids,
    COMPAT_CALLBACK_SHAPE: _check_callback_shape,
    RATE_LIMITS: _check_rate_limits,
    PROVIDERS: _check_providers,
    REQUIRE_TWO_FACTOR: _check_bool,
    FAILOVER_ON_UNKNOWN_OUTCOME: _check_bool,
    DELIVERY_WEIGHT: _check_weight,
}


def settings_errors(value: Any, *, prefix: str = "settings") -> Errors:
    """Return what is wrong with settings (keys set to null count as unset)."""
    if not isinstance(value, dict):
        return {prefix: ["Settings must be a JSON object."]}
    errors: Errors = {}
    for key, item in value.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in CHECKS:
            errors[path] = [f"Unknown setting; the settings are {', '.join(CHECKS)}."]
        elif item is not None:
            errors.update(CHECKS[key](item, path))
    return errors


def validate_settings(value: Any) -> None:
    """Refuse settings the service would misread (the admin page's check)."""
    errors = settings_errors(value, prefix="")
    if "" in errors:
        raise ValidationError(errors[""])
    if errors:
        raise SettingsInvalid(errors)


# --- a change through the API ------------------------------------------------------------------

def settings_merge(current: dict, changes: Any, *, operator: bool = False) -> dict:
    """Return `current` with `changes` applied: each key given replaces the stored one, null
    removes it, and a credential sent back as "***" keeps its stored value. Raise
    SettingsInvalid naming every refused path (nothing is applied then). Without `operator`,
    provider connection and sender keys may not change (OPERATOR_ONLY_PROVIDER_KEYS)."""
    if not isinstance(changes, dict):
        raise SettingsInvalid({"settings": ["Settings must be a JSON object."]})
    merged = copy.deepcopy(current or {})
    errors: Errors = {}
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
            continue
        kept = _keep_secrets(value, merged.get(key), f"settings.{key}", errors)
        errors.update(settings_errors({key: kept}))
        merged[key] = kept
    if not operator:
        errors.update(_operator_only(current or {}, merged))
    if errors:
        raise SettingsInvalid(errors)
    return merged


def _keep_secrets(value: Any, stored: Any, path: str, errors: Errors) -> Any:
    """Return `value` with each credential given as "***" replaced by the stored one (in a
    list, the one stored at the same position)."""
    if isinstance(value, list):
        kept = stored if isinstance(stored, list) else []
        return [_keep_secrets(item, kept[index] if index < len(kept) else None,
                              f"{path}.{index}", errors) for index, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        before = stored.get(key) if isinstance(stored, dict) else None
        if is_secret_key(key) and item == MASK:
            if not _is_credential(before):
                errors[f"{path}.{key}"] = ['"***" stands for the stored value; none is stored.']
            out[key] = before
        else:
            out[key] = _keep_secrets(item, before, f"{path}.{key}", errors)
    return out


def _operator_only(current: dict, merged: dict) -> Errors:
    """Refuse changes to provider keys only an operator may set."""
    def entries(settings_: dict, name: str) -> dict[str, dict]:
        """Return {path suffix: entry}: "" for one entry, ".<index>" for each of a list."""
        providers = settings_.get(PROVIDERS)
        found = providers.get(name) if isinstance(providers, dict) else None
        if isinstance(found, list):
            return {f".{index}": item for index, item in enumerate(found)
                    if isinstance(item, dict)}
        return {"": found} if isinstance(found, dict) else {}

    def keys_of(settings_: dict, name: str) -> dict[str, Any]:
        return {f"{suffix}.{key}": entry.get(key)
                for suffix, entry in entries(settings_, name).items()
                for key in OPERATOR_ONLY_PROVIDER_KEYS if entry.get(key) is not None}

    names = {name for settings_ in (current, merged)
             if isinstance(settings_.get(PROVIDERS), dict) for name in settings_[PROVIDERS]}
    errors: Errors = {}
    for name in sorted(names):
        before, after = keys_of(current, name), keys_of(merged, name)
        for path in sorted(set(before) | set(after)):
            if before.get(path) != after.get(path):
                errors[f"settings.{PROVIDERS}.{name}{path}"] = [
                    "Set by an operator on the admin page."]
    return errors
