"""The rules evaluator of condition nodes: operators, missing fields, types, and validation."""
from __future__ import annotations

from typing import Any

import pytest

from flows.rules import OPERATORS, evaluate, lookup, validate_rules

CONTEXT: dict[str, Any] = {
    "contact": {
        "first_name": "Ada",
        "attributes": {"vip": True, "plan": "pro", "tags": ["beta", "eu"], "score": 42,
                       "cleared": None, "signup": "2024-03-01T10:00:00+00:00"},
    },
    "trigger": {"amount": 10, "amount_text": "10", "items": [{"sku": "A1"}, {"sku": "B2"}]},
    "steps": {"n1": {"output": {"status": "delivered"}}},
    "event": {"properties": {"plan": "team"}},
}


def check(field: str, op: str, value: Any = None, *, with_value: bool = True) -> bool:
    """Evaluate one condition against CONTEXT."""
    condition: dict[str, Any] = {"field": field, "op": op}
    if with_value:
        condition["value"] = value
    return evaluate({"all": [condition]}, CONTEXT)


@pytest.mark.parametrize(
    ("field", "op", "value", "expected"),
    [
        ("contact.attributes.vip", "eq", True, True),
        ("contact.attributes.vip", "eq", False, False),
        ("contact.attributes.plan", "eq", "pro", True),
        ("contact.attributes.plan", "eq", "Pro", False),
        ("contact.attributes.tags", "eq", ["beta", "eu"], True),
        ("contact.attributes.plan", "neq", "free", True),
        ("contact.attributes.plan", "neq", "pro", False),
        ("trigger.amount", "gt", 9, True),
        ("trigger.amount", "gt", 10, False),
        ("trigger.amount", "gte", 10, True),
        ("trigger.amount", "gte", 10.5, False),
        ("trigger.amount", "lt", 10.5, True),
        ("trigger.amount", "lt", 10, False),
        ("trigger.amount", "lte", 10, True),
        ("trigger.amount", "lte", 9, False),
        ("contact.attributes.signup", "gt", "2024-01-01", True),
        ("contact.attributes.signup", "lt", "2024-01-01", False),
        ("contact.first_name", "contains", "d", True),
        ("contact.first_name", "contains", "z", False),
        ("contact.attributes.tags", "contains", "eu", True),
        ("contact.attributes.tags", "contains", "us", False),
        ("contact.attributes.plan", "in", ["pro", "team"], True),
        ("contact.attributes.plan", "in", ["free"], False),
        ("steps.n1.output.status", "eq", "delivered", True),
        ("event.properties.plan", "in", ["team"], True),
        ("trigger.items.1.sku", "eq", "B2", True),
        ("contact.attributes.vip", "exists", True, True),
        ("contact.attributes.vip", "exists", False, False),
        ("contact.attributes.cleared", "exists", True, False),
        ("contact.attributes.cleared", "exists", False, True),
    ],
)
def test_operator_compares_field_with_value(field: str, op: str, value: Any,
                                            expected: bool) -> None:
    assert check(field, op, value) is expected


def test_exists_without_value_means_exists_true() -> None:
    assert check("contact.first_name", "exists", with_value=False) is True
    assert check("contact.last_name", "exists", with_value=False) is False


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [(op, "x" if op != "in" else ["x"], op == "neq") for op in OPERATORS if op != "exists"]
    + [("exists", True, False), ("exists", False, True)],
)
def test_missing_field_is_false_except_neq_and_not_exists(op: str, value: Any,
                                                          expected: bool) -> None:
    for field in ("contact.attributes.nope", "trigger.items.7.sku", "contact.first_name.more"):
        assert check(field, op, value) is expected


@pytest.mark.parametrize(
    ("actual", "op", "value"),
    [
        ("a", "gt", 3),
        (3, "lt", "a"),
        ({"a": 1}, "lt", 2),
        ([1], "gte", 0),
        (None, "gt", 1),
        (None, "eq", 0),
        (True, "eq", 1),
        (1, "eq", True),
        (0, "eq", False),
        ("", "eq", 0),
        (5, "contains", 5),
        ({"a": 1}, "contains", "a"),
        ("abc", "contains", 1),
        ("x", "in", "xyz"),
        ([1, 2], "in", [1, 2]),
        ("nan", "gt", 1),
        ("inf", "gt", 1),
        ("1_000", "eq", 1000),
        ("9" * 5000, "gt", 1),
        (float("nan"), "eq", float("nan")),
    ],
)
def test_incompatible_types_compare_false_without_raising(actual: Any, op: str,
                                                          value: Any) -> None:
    assert evaluate({"all": [{"field": "x", "op": op, "value": value}]}, {"x": actual}) is False


@pytest.mark.parametrize(
    ("actual", "op", "value", "expected"),
    [
        ("10", "gt", 9, True),
        ("10", "eq", 10, True),
        ("10.0", "eq", 10, True),
        (" 10 ", "eq", 10, True),
        (9, "lt", "10", True),
        ("1e3", "eq", 1000, True),
        ("-2.5", "lt", 0, True),
        ("10", "gt", "9", True),
        ("10", "eq", "10.0", False),
        ("10", "in", [10, 20], True),
        ([10, 20], "contains", "20", True),
        ("abc", "gt", 9, False),
    ],
)
def test_numeric_strings_compare_numerically(actual: Any, op: str, value: Any,
                                             expected: bool) -> None:
    assert evaluate({"all": [{"field": "x", "op": op, "value": value}]}, {"x": actual}) is expected


def test_nested_groups_three_levels_deep() -> None:
    rules = {"any": [
        {"field": "contact.attributes.plan", "op": "eq", "value": "free"},
        {"all": [
            {"field": "contact.attributes.vip", "op": "eq", "value": True},
            {"any": [
                {"field": "trigger.amount", "op": "gt", "value": 100},
                {"field": "contact.attributes.tags", "op": "contains", "value": "eu"},
            ]},
        ]},
    ]}
    assert validate_rules(rules) == []
    assert evaluate(rules, CONTEXT) is True
    rules["any"][1]["all"][1]["any"][1]["value"] = "us"
    assert evaluate(rules, CONTEXT) is False


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"and": [{"field": "trigger.amount", "op": "eq", "value": 10},
                  {"field": "contact.attributes.vip", "op": "eq", "value": False}]}, False),
        ({"or": [{"field": "trigger.amount", "op": "eq", "value": 10},
                 {"field": "contact.attributes.vip", "op": "eq", "value": False}]}, True),
        ({"and": [{"or": [{"field": "trigger.amount", "op": "lt", "value": 0},
                          {"field": "contact.attributes.score", "op": "gte", "value": 42}]}]},
         True),
    ],
)
def test_and_or_are_aliases_of_all_any(rules: dict, expected: bool) -> None:
    assert validate_rules(rules) == []
    assert evaluate(rules, CONTEXT) is expected


def test_empty_groups_evaluate_as_all_true_any_false() -> None:
    assert evaluate({"all": []}, CONTEXT) is True
    assert evaluate({"any": []}, CONTEXT) is False


def test_evaluate_refuses_a_malformed_group() -> None:
    with pytest.raises(ValueError, match="not a rules group"):
        evaluate({"all": [], "any": []}, CONTEXT)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("contact.first_name", (True, "Ada")),
        ("trigger.items.0.sku", (True, "A1")),
        ("contact.attributes.cleared", (True, None)),
        ("trigger.items.2", (False, None)),
        ("trigger.items.-1", (False, None)),
        ("trigger.items.x", (False, None)),
        ("trigger.amount.value", (False, None)),
        ("contact..first_name", (False, None)),
        ("", (False, None)),
    ],
)
def test_lookup_follows_dotted_paths(path: str, expected: tuple[bool, Any]) -> None:
    assert lookup(CONTEXT, path) == expected


@pytest.mark.parametrize(
    "rules",
    [
        {"all": [{"field": "contact.attributes.vip", "op": "eq", "value": True}]},
        {"any": [{"field": "a", "op": "exists"}, {"field": "b", "op": "exists", "value": False}]},
        {"all": [{"field": "a", "op": "in", "value": []},
                 {"field": "a", "op": "lte", "value": "z"}]},
        {"all": [{"field": "a", "op": "eq", "value": None}, {"field": "a", "op": "contains",
                                                              "value": {"k": 1}}]},
    ],
)
def test_valid_rules_have_no_errors(rules: dict) -> None:
    assert validate_rules(rules) == []


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"all": [{"field": "a", "op": "eq", "value": 1},
                  {"field": "b", "op": "like", "value": 1}]},
         ["rules.all[1].op: unknown operator 'like'"]),
        ({"all": [{"field": "a", "value": 1}]}, ["rules.all[0].op: missing operator"]),
        ({"all": [{"field": "a", "op": "eq"}]}, ["rules.all[0].value: required for 'eq'"]),
        ({"all": [{"field": "a", "op": "in", "value": "x"}]},
         ["rules.all[0].value: 'in' needs a list"]),
        ({"all": [{"field": "a", "op": "gt", "value": {"n": 1}}]},
         ["rules.all[0].value: 'gt' needs a number or a string"]),
        ({"all": [{"field": "a", "op": "lt", "value": True}]},
         ["rules.all[0].value: 'lt' needs a number or a string"]),
        ({"all": [{"field": "a", "op": "exists", "value": "yes"}]},
         ["rules.all[0].value: 'exists' takes true or false"]),
        ({"all": [{"field": "", "op": "exists"}]},
         ["rules.all[0].field: must be a dotted path like 'contact.attributes.vip'"]),
        ({"all": [{"field": "a..b", "op": "exists"}]},
         ["rules.all[0].field: must be a dotted path like 'contact.attributes.vip'"]),
        ({"all": [{"op": "exists"}]},
         ["rules.all[0].field: must be a dotted path like 'contact.attributes.vip'"]),
        ({"all": []}, ["rules.all: must be a non-empty list"]),
        ({"or": "x"}, ["rules.or: must be a non-empty list"]),
        ({"all": [], "any": []}, ['rules: must be a group with exactly one key, "all" or "any"']),
        ({"none": [{"field": "a", "op": "exists"}]},
         ['rules: must be a group with exactly one key, "all" or "any"']),
        ([], ['rules: must be a group with exactly one key, "all" or "any"']),
        ({"all": [3]}, ["rules.all[0]: must be a group or a condition"]),
        ({"any": [{"all": [{"field": "a", "op": "eq", "value": 1}, {"field": "a", "op": "~"}]}]},
         ["rules.any[0].all[1].op: unknown operator '~'"]),
        ({"any": [{"all": [{"nope": []}]}]},
         ['rules.any[0].all[0]: must be a group with exactly one key, "all" or "any"']),
    ],
)
def test_validate_rules_names_the_path_of_each_error(rules: Any, expected: list[str]) -> None:
    assert validate_rules(rules) == expected


def test_validate_rules_reports_every_error_under_the_given_path() -> None:
    rules = {"all": [{"field": "a", "op": "like", "value": 1}, {"field": 7, "op": "eq"}]}
    assert validate_rules(rules, "data.rules") == [
        "data.rules.all[0].op: unknown operator 'like'",
        "data.rules.all[1].field: must be a dotted path like 'contact.attributes.vip'",
        "data.rules.all[1].value: required for 'eq'",
    ]


def test_validate_rules_limits_nesting_depth() -> None:
    def nested(depth: int) -> dict:
        group: dict = {"all": [{"field": "a", "op": "exists"}]}
        for _ in range(depth - 1):
            group = {"any": [group]}
        return group

    assert validate_rules(nested(10)) == []
    errors = validate_rules(nested(11))
    assert errors == ["rules" + ".any[0]" * 10 + ": groups nest deeper than 10 levels"]
    # Validation stops at the limit, so absurd nesting costs no recursion.
    assert validate_rules(nested(5000)) == errors


@pytest.mark.parametrize(
    "junk",
    [None, "all", 5, 1.5, True, [], [[]], {}, {"all": None}, {"all": [None, [], "x", {}]},
     {1: []}, {("all",): []}, {"all": [{"field": ["a"], "op": ["eq"], "value": set()}]},
     {"all": [{"field": {}, "op": {}}]}],
)
def test_validate_rules_never_raises_on_junk(junk: Any) -> None:
    errors = validate_rules(junk)
    assert errors
    assert all(isinstance(error, str) for error in errors)
