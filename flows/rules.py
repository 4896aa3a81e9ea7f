"""Validate and evaluate the rule groups of `condition` nodes, without ever calling `eval`.

A group is `{"all": [...]}` or `{"any": [...]}` (`and`/`or` are accepted as aliases); its items
are groups or conditions `{"field": "contact.attributes.vip", "op": "eq", "value": true}`.
Fields are dotted lookups into the execution context (dicts, and list indexes).

Comparison semantics, chosen so that data typed in a builder behaves as a user expects:

* A number and a numeric string compare as numbers ("10" eq 10, "10" gt 9); for the ordering
  operators two numeric strings also compare as numbers, other strings compare as text (so
  ISO 8601 dates order correctly).
* Booleans are never numbers (true eq 1 is false).
* Incompatible types make a comparison false; nothing raises.
* A missing field makes every operator false except `neq` (true) and `exists` (false).
  `exists` also treats a null value as absent.
"""
from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from typing import Any

OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "contains", "in", "exists")
MAX_DEPTH = 10

# Aliases are normalised to the canonical combinator.
_GROUP_KEYS = {"all": "all", "any": "any", "and": "all", "or": "any"}
_ORDERING = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
# float() also accepts "nan", "inf" and "1_000"; only plain decimal notation counts as numeric.
_NUMERIC = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
# int() refuses strings above ~4300 digits; nothing legitimate comes close to this bound.
_MAX_NUMERIC_LENGTH = 100
_LIST_INDEX = re.compile(r"\d{1,9}", re.ASCII)


# The roots a field path may start with, per kind of rules: the keys of the context each is
# evaluated against (flows/engine.py `_context`, flows/services.py `trigger_filter_context`
# and `audience_context`; a test checks they agree). README.md has the table.
CONDITION_ROOTS = ("contact", "trigger", "steps", "execution")
TRIGGER_FILTER_ROOTS = ("event", "properties", "contact")
AUDIENCE_ROOTS = ("contact",)


def validate_rules(rules: Any, path: str = "rules") -> list[str]:
    """Return human-readable errors, each prefixed with its path (empty if the group is valid)."""
    return _validate_group(rules, path, depth=1)


def _validate_group(group: Any, path: str, depth: int) -> list[str]:
    if depth > MAX_DEPTH:
        return [f"{path}: groups nest deeper than {MAX_DEPTH} levels"]
    if not isinstance(group, dict) or len(group) != 1 or _group_key(group) is None:
        return [f'{path}: must be a group with exactly one key, "all" or "any"']
    key = next(iter(group))
    items = group[key]
    if not isinstance(items, list) or not items:
        return [f"{path}.{key}: must be a non-empty list"]
    errors: list[str] = []
    for index, item in enumerate(items):
        item_path = f"{path}.{key}[{index}]"
        if _is_condition(item):
            errors.extend(_validate_condition(item, item_path))
        elif isinstance(item, dict):
            errors.extend(_validate_group(item, item_path, depth + 1))
        else:
            errors.append(f"{item_path}: must be a group or a condition")
    return errors


def _group_key(group: dict) -> str | None:
    key = next(iter(group), None)
    return _GROUP_KEYS.get(key) if isinstance(key, str) else None


def _is_condition(item: Any) -> bool:
    return isinstance(item, dict) and ("field" in item or "op" in item)


def _validate_condition(condition: dict, path: str) -> list[str]:
    errors: list[str] = []
    field = condition.get("field")
    if not isinstance(field, str) or not all(field.split(".")):
        errors.append(f"{path}.field: must be a dotted path like 'contact.attributes.vip'")
    op = condition.get("op")
    if op is None:
        errors.append(f"{path}.op: missing operator")
    elif not isinstance(op, str) or op not in OPERATORS:
        errors.append(f"{path}.op: unknown operator {_short(op)}")
    else:
        errors.extend(_validate_value(condition, op, f"{path}.value"))
    return errors


def _validate_value(condition: dict, op: str, path: str) -> list[str]:
    if "value" not in condition:
        return [] if op == "exists" else [f"{path}: required for '{op}'"]
    value = condition["value"]
    if op == "exists" and not isinstance(value, bool):
        return [f"{path}: 'exists' takes true or false"]
    if op == "in" and not isinstance(value, list):
        return [f"{path}: 'in' needs a list"]
    if op in _ORDERING and not (_is_number(value) or isinstance(value, str)):
        return [f"{path}: '{op}' needs a number or a string"]
    return []


def unknown_roots(rules: Any, roots: tuple[str, ...], where: str,
                  path: str = "rules") -> list[str]:
    """Return an error per condition whose field starts outside `roots` (what `where` sees).

    Apart from validate_rules on purpose: saving a flow refuses such paths, but a version
    frozen before they were checked must still parse and run (the path is simply absent).
    """
    errors = []
    for item_path, field in _fields(rules, path, depth=1):
        root, _, rest = field.partition(".")
        if root in roots:
            continue
        hint = f"; did you mean '{rest}'?" if rest.partition(".")[0] in roots else ""
        errors.append(f"{item_path}.field: '{field}' starts with '{root}', which {where} "
                      f"does not see; paths start with {', '.join(roots)}{hint}")
    return errors


def _fields(group: Any, path: str, depth: int) -> list[tuple[str, str]]:
    """Return (path, field) of every condition of a group that validate_rules accepts."""
    if depth > MAX_DEPTH or not isinstance(group, dict) or len(group) != 1:
        return []
    key = next(iter(group))
    items = group[key] if isinstance(group[key], list) else []
    found: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        item_path = f"{path}.{key}[{index}]"
        if _is_condition(item):
            if isinstance(item.get("field"), str):
                found.append((item_path, item["field"]))
        else:
            found.extend(_fields(item, item_path, depth + 1))
    return found


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def evaluate(rules: dict, context: dict) -> bool:
    """Evaluate a validated group against the context; raise ValueError on a malformed group."""
    return _evaluate(rules, context, None)


# What evaluate_seen records while it evaluates: the fields found, by value, and those
# absent, in the order the rules name them.
Seen = tuple[dict[str, Any], list[str]]


def evaluate_seen(rules: dict, context: dict) -> tuple[bool, dict[str, Any]]:
    """Evaluate a validated group as evaluate() does, and return with the answer what each
    of its fields held: its value, or absent fields under "missing" (an execution's timeline
    shows why a branch was taken). Every condition is evaluated (none skipped once its
    group's answer is known), so each field is looked up once for both: a condition node
    does this at every visit."""
    seen: Seen = ({}, [])
    matched = _evaluate(rules, context, seen)
    values, missing = seen
    return matched, {"values": values, "missing": missing} if missing else {"values": values}


def _evaluate(rules: Any, context: dict, seen: Seen | None) -> bool:
    """Evaluate a group; with `seen`, evaluate every condition and record its field there."""
    if not isinstance(rules, dict) or len(rules) != 1 or _group_key(rules) is None:
        raise ValueError(f"not a rules group: {_short(rules)}")
    items = next(iter(rules.values()))
    if not isinstance(items, list):
        raise ValueError(f"a rules group needs a list: {_short(rules)}")
    results: Iterable[bool] = (_evaluate_item(item, context, seen) for item in items)
    if seen is not None:
        results = list(results)
    return all(results) if _group_key(rules) == "all" else any(results)


def _evaluate_item(item: Any, context: dict, seen: Seen | None) -> bool:
    if not _is_condition(item):
        return _evaluate(item, context, seen)
    op, field = item.get("op"), item.get("field")
    found, actual = lookup(context, field)
    if seen is not None and isinstance(field, str):
        if found:
            seen[0][field] = actual
        elif field not in seen[1]:
            seen[1].append(field)
    if op == "exists":
        return (found and actual is not None) is bool(item.get("value", True))
    if not found:
        return op == "neq"
    compare = _COMPARISONS.get(op) if isinstance(op, str) else None
    if compare is None:
        raise ValueError(f"unknown operator {_short(op)}")
    return compare(actual, item.get("value"))


def lookup(context: dict, path: str) -> tuple[bool, Any]:
    """Return (found, value) for a dotted path through dicts (and list indexes)."""
    if not isinstance(path, str) or not path:
        return False, None
    value: Any = context
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and _LIST_INDEX.fullmatch(part) and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any) -> int | float | None:
    """Return the number a value or numeric string stands for, or None."""
    if _is_number(value):
        return value
    if not isinstance(value, str) or len(value) > _MAX_NUMERIC_LENGTH:
        return None
    text = value.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    return float(text) if _NUMERIC.fullmatch(text) else None


def _equals(actual: Any, expected: Any) -> bool:
    if _is_number(actual) or _is_number(expected):
        left, right = _as_number(actual), _as_number(expected)
        return left is not None and right is not None and left == right
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(map(_equals, actual, expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            _equals(actual[key], expected[key]) for key in actual
        )
    return type(actual) is type(expected) and actual == expected


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def check(actual: Any, expected: Any) -> bool:
        left, right = _as_number(actual), _as_number(expected)
        if left is not None and right is not None:
            return compare(left, right)
        if isinstance(actual, str) and isinstance(expected, str):
            return compare(actual, expected)
        return False

    return check


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list):
        return any(_equals(item, expected) for item in actual)
    return False


def _is_in(actual: Any, expected: Any) -> bool:
    return isinstance(expected, list) and any(_equals(actual, item) for item in expected)


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": _equals,
    "neq": lambda actual, expected: not _equals(actual, expected),
    **{op: _ordered(compare) for op, compare in _ORDERING.items()},
    "contains": _contains,
    "in": _is_in,
}
