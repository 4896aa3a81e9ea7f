"""The older flow builder's node names and data fields, accepted as aliases of the engine's.

Graphs saved by the older builder name their nodes `send-message`, `send-email`, `delay` and
`condition` and keep their settings in the builder's own fields (`messageText`, `imageUrl`,
...). Flows store such graphs as given; graph validation translates each aliased node into
an engine-typed copy (`engine_node`), so the engine, the walker and the dry run only ever see
engine types, and words the problems it finds in the builder's names (`check`).

ALIASES is the only list: one Alias per builder name, with the engine node type it stands
for and a table of the builder's data fields (the engine key each fills and how its value
converts). The builder's integration plan (an SMS+MMS node with `messageText` and
`imageUrl`, email as `{to, subject, body}` sent as html, delays in milliseconds) fixes most
of the table; where it is silent the obvious mapping is taken and listed in the README's
Flows section.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flows.nodes import condition, delay, send
from flows.nodes.base import NodeType
from flows.nodes.checks import is_url


class Unfit(ValueError):
    """Raised by a field's conversion with how the builder's value must look instead."""


# Convert a builder value into the engine's: (value, the node's whole data) -> engine value.
Convert = Callable[[Any, dict], Any]
# A conversion's answer for a field that is left out of the engine's data.
OMIT = object()


def _same(value: Any, data: dict) -> Any:
    """Return the value unchanged: most builder fields only rename an engine key."""
    return value


@dataclass(frozen=True)
class Field:
    """One builder data field: the engine key it fills and how its value converts."""

    engine: str | None  # None: another field's conversion reads it (a unit, a match type)
    convert: Convert = _same
    # (engine text, builder text) for problem messages; by default data.<engine> -> data.<name>
    wording: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Alias:
    """A builder node name standing for an engine node type, with its data-field table."""

    name: str
    engine: NodeType
    fields: dict[str, Field] = field(default_factory=dict)

    def applies(self, data: dict) -> bool:
        """Return True when the node is builder-shaped (a builder name, or builder fields
        under a name the engine shares), so a plain engine node is left alone."""
        return self.name != self.engine.name or any(key in data for key in self.fields)


# Send nodes ------------------------------------------------------------------------------------


def _image_urls(value: Any, data: dict) -> Any:
    """Return one image URL as the one-item media_urls list (a list passes as it is)."""
    if value in ("", None):
        return OMIT  # the builder saves an empty field when no image was chosen
    if isinstance(value, list):
        return value
    if not is_url(value, ("https",)):
        raise Unfit("must be an https URL")
    return [value]


SEND_MESSAGE = Alias(name="send-message", engine=send.SEND_SMS, fields={
    "messageText": Field("body"),
    "imageUrl": Field("media_urls", _image_urls),
})
# The builder's email service sends its `body` as the html part.
SEND_EMAIL = Alias(name="send-email", engine=send.SEND_EMAIL, fields={"body": Field("html")})


# Delay -----------------------------------------------------------------------------------------

# Seconds per builder unit.
UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


def _seconds(amount: Any, scale: float, what: str) -> float:
    """Return amount * scale as engine seconds, refusing what the delay node would refuse."""
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise Unfit(f"must be a number of {what}")
    seconds = amount * scale
    if not 0 < seconds <= delay.MAX_DELAY_SECONDS:
        days = delay.MAX_DELAY_SECONDS // UNITS["days"]
        raise Unfit(f"must come to more than 0 and at most {days} days")
    return seconds


def _from_milliseconds(value: Any, data: dict) -> float:
    """Convert the builder's delayMs (its queue took delays in milliseconds) to seconds."""
    return _seconds(value, 0.001, "milliseconds")


def _from_duration(value: Any, data: dict) -> float:
    """Convert a duration in the node's unit to seconds; the unit has no default to guess."""
    unit = data.get("unit")
    if unit not in UNITS:
        raise Unfit(f"needs data.unit, one of {', '.join(UNITS)}")
    return _seconds(value, UNITS[unit], unit)


DELAY = Alias(name="delay", engine=delay.DELAY, fields={
    "delayMs": Field("seconds", _from_milliseconds),
    "duration": Field("seconds", _from_duration),
    "unit": Field(None),
})


# Condition -------------------------------------------------------------------------------------

# Builder operator -> rules operator; the engine's own names are accepted as they are.
OPERATORS = {"equals": "eq", "notEquals": "neq", "greaterThan": "gt",
             "greaterThanOrEqual": "gte", "lessThan": "lt", "lessThanOrEqual": "lte",
             "contains": "contains", "in": "in", "exists": "exists"}


def _rules(value: Any, data: dict) -> dict:
    """Return the builder's condition list as a rules group ("all" unless matchType says)."""
    match = data.get("matchType", "all")
    if match not in ("all", "any"):
        raise Unfit("needs data.matchType 'all' or 'any'")
    if not isinstance(value, list):
        raise Unfit("must be a list of {field, operator, value}")
    return {match: [_rule(item) for item in value]}


def _rule(item: Any) -> Any:
    """Return one builder condition with its operator renamed (anything else as it is)."""
    if not isinstance(item, dict) or "operator" not in item:
        return item
    rule = {key: value for key, value in item.items() if key != "operator"}
    operator = item["operator"]
    rule["op"] = OPERATORS.get(operator, operator) if isinstance(operator, str) else operator
    return rule


CONDITION = Alias(name="condition", engine=condition.CONDITION, fields={
    "conditions": Field("rules", _rules, wording=(
        ("data.rules.all", "data.conditions"), ("data.rules.any", "data.conditions"),
        ("data.rules", "data.conditions"), (".op:", ".operator:"))),
    "matchType": Field(None),
})

ALIASES: dict[str, Alias] = {alias.name: alias for alias in (
    SEND_MESSAGE, SEND_EMAIL, DELAY, CONDITION)}


# Translation -----------------------------------------------------------------------------------


def engine_type(node_type: Any) -> str | None:
    """Return the engine type a node type names (a builder alias resolved), None for junk."""
    if not isinstance(node_type, str):
        return None
    alias = _alias_of(node_type)
    return alias.engine.name if alias else node_type


def engine_node(node: dict) -> dict:
    """Return the node as the engine runs it: a builder-shaped node becomes an engine-typed
    copy (the stored graph keeps the builder's), any other node is returned as it is."""
    alias = _alias_of(node.get("type"))
    data = node.get("data") or {}
    if alias is None or not isinstance(data, dict) or not alias.applies(data):
        return node
    return {**node, "type": alias.engine.name, "data": translate(alias, data)[0]}


def check(alias: Alias, data: dict) -> list[str]:
    """Return the problems of an aliased node's data, in the builder's names where it used them."""
    if not alias.applies(data):
        return alias.engine.check(data)
    engine_data, problems = translate(alias, data)
    if problems:  # the engine's check would only repeat them in its own names
        return problems
    return [_reword(message, alias, data) for message in alias.engine.check(engine_data)]


def translate(alias: Alias, data: dict) -> tuple[dict, list[str]]:
    """Return the engine's data for a builder-shaped node and the builder fields that are unfit.

    Keys the table does not name pass on as they are; a builder field and the engine key it
    fills (or two builder fields filling one key) cannot both be given.
    """
    engine_data = {key: value for key, value in data.items() if key not in alias.fields}
    filled_by = {key: key for key in engine_data}
    problems: list[str] = []
    for name, spec in alias.fields.items():
        if name not in data or spec.engine is None:
            continue
        if spec.engine in filled_by:
            other = filled_by[spec.engine]
            problems.append(f"{alias.name} takes data.{other} or data.{name}, not both")
            continue
        try:
            value = spec.convert(data[name], data)
        except Unfit as exc:
            problems.append(f"{alias.name} data.{name} {exc}")
            continue
        filled_by[spec.engine] = name
        if value is not OMIT:
            engine_data[spec.engine] = value
    return engine_data, problems


def _alias_of(node_type: Any) -> Alias | None:
    """Return the alias a node type names (None for engine names and junk such as lists)."""
    return ALIASES.get(node_type) if isinstance(node_type, str) else None


def _reword(message: str, alias: Alias, data: dict) -> str:
    """Return an engine problem in the builder's names: its node name and, for each engine
    key, the builder field the node gave for it (else the first one the table declares)."""
    if message.startswith(f"{alias.engine.name} "):
        message = alias.name + message[len(alias.engine.name):]
    chosen: dict[str, tuple[str, Field]] = {}
    # Fields the node gave come first, so their names win over other fields for one key.
    for name, spec in sorted(alias.fields.items(), key=lambda item: item[0] not in data):
        if spec.engine is not None:
            chosen.setdefault(spec.engine, (name, spec))
    for engine_key, (name, spec) in chosen.items():
        for engine_text, builder_text in spec.wording or ((f"data.{engine_key}", f"data.{name}"),):
            message = message.replace(engine_text, builder_text)
    return message
