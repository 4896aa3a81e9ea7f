"""Compile audience rules (flows.rules over `audience_context`) into a filter on contacts.

An audience (segment count and preview, broadcast, bulk start) would otherwise read every
contact of the workspace to evaluate its rules in Python. `rules_filter` answers a `Q` and
whether it is exact: exact, the database selects the contacts alone; not exact, the `Q`
still holds for every matching contact (it only narrows) and flows.rules.evaluate decides
on what it selects. It never answers a `Q` that drops a contact the rules match.

What compiles exactly, with flows.rules' semantics kept (a test compares both on PostgreSQL
and SQLite): the contact's columns (as strings), its consent per channel (booleans) and its
attributes at a path of plain keys, for `exists`; `eq`, `neq` and `in` with a string that
is not numeric, a boolean or null; the ordering operators with a string that is not numeric
(compared by code point, as Python compares strings); `contains` with a string on the
columns. Numbers and numeric strings (which compare as numbers in either form), lists and
objects narrow the candidates by JSON type and leave the decision to Python.
"""
from __future__ import annotations

import re
from typing import Any

from django.db.models import CharField, F, Func, Q, Value
from django.db.models.expressions import Combinable
from django.db.models.functions import Coalesce, StrIndex
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IsNull,
    LessThan,
    LessThanOrEqual,
)

from flows.rules import OPERATORS, _as_number, _group_key, _is_condition
from messaging.delivery.templating import CONTACT_COLUMNS

# The columns audience_context shows as strings are contact_context's own (CONTACT_COLUMNS,
# and external_id); its id is left to Python (stored as a uuid on PostgreSQL, as 32 hex
# digits on SQLite).
_CONSENT = {"sms": "sms_subscribed", "email": "email_subscribed"}
# Attribute keys compiled into a JSON path: no quoting needed on either backend, and never a
# list index (flows.rules.lookup reads digits as one, PostgreSQL's #> too, SQLite's $ not).
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_ORDERING = {"gt": GreaterThan, "gte": GreaterThanOrEqual, "lt": LessThan,
             "lte": LessThanOrEqual}
NEVER = Q(pk__in=[])
_Sql = tuple[str, tuple[Any, ...]]


class _JsonKind(Func):
    """Name the JSON type at a path of the attributes alike on both backends: string,
    number, true, false, null, object or array; SQL NULL where the path is absent."""

    output_field = CharField()

    def __init__(self, path: tuple[str, ...]) -> None:
        super().__init__(F("attributes"))
        self.path = path

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> _Sql:
        column, params = compiler.compile(self.source_expressions[0])
        value = f"({column} #> %s::text[])"
        path = "{" + ",".join(self.path) + "}"
        return (f"CASE jsonb_typeof({value}) WHEN 'boolean' THEN {value} #>> '{{}}' "
                f"ELSE jsonb_typeof({value}) END", (*params, path) * 3)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> _Sql:
        column, params = compiler.compile(self.source_expressions[0])
        path = "$." + ".".join(self.path)
        return (f"CASE json_type({column}, %s) WHEN 'text' THEN 'string' WHEN 'integer' "
                f"THEN 'number' WHEN 'real' THEN 'number' ELSE json_type({column}, %s) END",
                (*params, path) * 2)


class _JsonText(_JsonKind):
    """Return the text of the string at a path of the attributes."""

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> _Sql:
        column, params = compiler.compile(self.source_expressions[0])
        return f"({column} #>> %s::text[])", (*params, "{" + ",".join(self.path) + "}")

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> _Sql:
        column, params = compiler.compile(self.source_expressions[0])
        return f"json_extract({column}, %s)", (*params, "$." + ".".join(self.path))


class _Binary(Func):
    """Order text by code point, as Python compares strings (UTF-8 bytes keep that order)."""

    output_field = CharField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> _Sql:
        return self.as_sql(compiler, connection, template='(%(expressions)s) COLLATE "C"')

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> _Sql:
        return self.as_sql(compiler, connection, template="(%(expressions)s) COLLATE BINARY")


class _Field:
    """A field of audience_context as two expressions: its JSON kind and its text."""

    def __init__(self, kind: Combinable, text: Combinable) -> None:
        self.kind, self.text = kind, text

    def of_kind(self, *kinds: str) -> Q:
        """Match where the field holds one of `kinds` (never SQL NULL, so it negates)."""
        return Q(IsNull(self.kind, False)) & Q(*(Q(Exact(self.kind, kind)) for kind in kinds),
                                               _connector=Q.OR)

    def text_is(self, lookup: type, value: str) -> Q:
        """Match where the field holds a string and `lookup` holds of it (compared by code
        point) and `value`."""
        return self.of_kind("string") & Q(lookup(_Binary(self.text), Value(value)))


def _field(path: Any) -> _Field | None:
    """Return the field at a dotted path of audience_context (None: absent for every
    contact); raise LookupError for a path that does not compile."""
    parts = path.split(".") if isinstance(path, str) else []
    if parts[:1] != ["contact"] or len(parts) == 1:
        if parts == ["contact"]:
            raise LookupError(path)
        return None
    name, rest = parts[1], parts[2:]
    if name == "attributes" and rest and all(_PLAIN_KEY.fullmatch(key) for key in rest):
        return _Field(_JsonKind(tuple(rest)), _JsonText(tuple(rest)))
    if name in ("attributes", "consent"):
        if not rest or name == "attributes":
            raise LookupError(path)
        if rest[0] not in _CONSENT or len(rest) > 1:
            return None
        flag = F(_CONSENT[rest[0]])
        kind = Func(flag, template="CASE WHEN %(expressions)s THEN 'true' ELSE 'false' END",
                    output_field=CharField())
        return _Field(kind, kind)
    if name == "id" and not rest:
        raise LookupError(path)
    if rest or name not in (*CONTACT_COLUMNS, "external_id"):
        return None
    text = Coalesce(F(name), Value("")) if name == "external_id" else F(name)
    return _Field(Value("string"), text)


def rules_filter(rules: Any) -> tuple[Q, bool]:
    """Return a filter every contact the rules match passes, and whether it is exact
    (else evaluate the rules on what it selects); malformed rules answer (Q(), False),
    so that evaluating them raises as it always did."""
    if not isinstance(rules, dict) or len(rules) != 1 or _group_key(rules) is None:
        return Q(), False
    items = next(iter(rules.values()))
    if not isinstance(items, list):
        return Q(), False
    parts = [_condition(item) if _is_condition(item) else rules_filter(item) for item in items]
    connector = Q.AND if _group_key(rules) == "all" else Q.OR
    if not parts:
        return (Q() if connector == Q.AND else NEVER), True
    return Q(*(q for q, _ in parts), _connector=connector), all(exact for _, exact in parts)


def _condition(condition: dict) -> tuple[Q, bool]:
    op, value = condition.get("op"), condition.get("value")
    if not isinstance(op, str) or op not in OPERATORS:
        return Q(), False
    try:
        field = _field(condition.get("field"))
    except LookupError:
        return Q(), False
    if field is None:  # absent: only neq and exists false match
        absent = op == "neq" or (op == "exists" and not bool(condition.get("value", True)))
        return (Q() if absent else NEVER), True
    if op == "exists":
        present = ~field.of_kind("null") & Q(IsNull(field.kind, False))
        return (present if bool(condition.get("value", True)) else ~present), True
    if op in ("eq", "neq"):
        equal, exact = _equals(field, value)
        if op == "eq":
            return equal, exact
        return (~equal, True) if exact else (Q(), False)
    if op == "in":
        parts = [_equals(field, item) for item in value] if isinstance(value, list) else []
        return (Q(*(q for q, _ in parts), _connector=Q.OR) if parts else NEVER,
                all(exact for _, exact in parts))
    return _compare(field, op, value)


def _equals(field: _Field, value: Any) -> tuple[Q, bool]:
    """Compile flows.rules._equals(field, value)."""
    if isinstance(value, bool):
        return field.of_kind("true" if value else "false"), True
    if value is None:
        return field.of_kind("null"), True
    if isinstance(value, str) and _as_number(value) is None:
        return field.text_is(Exact, value), True
    if isinstance(value, list | dict):
        return field.of_kind("array" if isinstance(value, list) else "object"), False
    return field.of_kind("number", "string"), False  # a number, or a numeric string


def _compare(field: _Field, op: str, value: Any) -> tuple[Q, bool]:
    """Compile the ordering operators and contains."""
    if not isinstance(value, str):
        return (field.of_kind("array") if op == "contains" else
                field.of_kind("number", "string")), False
    if op == "contains":
        found = field.of_kind("string") if not value else \
            field.of_kind("string") & Q(GreaterThan(StrIndex(field.text, Value(value)), 0))
        # Only an attribute can hold a list (whose items contains compares as eq does).
        return found | field.of_kind("array"), not isinstance(field.kind, _JsonKind)
    if _as_number(value) is not None:
        return field.of_kind("number", "string"), False
    return field.text_is(_ORDERING[op], value), True
