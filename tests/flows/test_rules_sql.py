"""Audience rules compiled to SQL select exactly the contacts flows.rules.evaluate matches."""
from __future__ import annotations

from typing import Any

import pytest

from core.models import Contact
from flows.rules import OPERATORS, evaluate
from flows.rules_sql import rules_filter
from flows.services import audience_context
from messaging.delivery.templating import CONTACT_FIELDS
from tests.factories import ContactFactory

# Every JSON type, numbers and numeric strings in several spellings, text that orders
# differently by code point than by a locale, and nesting.
ATTRIBUTE_VALUES: list[Any] = [
    "gold", "Gold", "golden", "10", " 10", "10.0", 10, 10.0, 9, 11.5, True, False, None, "",
    ["gold", "x"], ["10"], [], {"level": "gold"}, {}, "2024-01-01", "2025-06-30T09:00:00Z",
    "zebra", "Zebra", "ärger", "_", "1e3"]
# Every field the contact context has (so a column it gains is checked too), and paths
# into them and beside them.
FIELDS = [f"contact.{name}" for name in CONTACT_FIELDS] + [
    "contact.attributes.tier", "contact.attributes.tier.level", "contact.attributes.other",
    "contact.consent.sms", "contact.consent.email", "contact.consent.push",
    "contact.consent", "contact.attributes.tier.0", "contact.missing",
    "contact.first_name.x", "trigger.amount", "contact.attributes.Tier"]
VALUES: list[Any] = [
    "gold", "Gold", "gol", "10", 10, 10.0, 9.5, "9", True, False, None, "", "2024-06-01",
    "Zebra", "ä", ["gold", "x"], {"level": "gold"}, "_", "de"]
# What must compile exactly (no evaluation in Python): (field, op, value).
EXACT = [
    ("contact.attributes.tier", "eq", "gold"), ("contact.attributes.tier", "neq", True),
    ("contact.attributes.tier", "eq", None), ("contact.attributes.tier", "in", ["gold", False]),
    ("contact.attributes.tier", "gt", "2024-06-01"), ("contact.attributes.tier", "exists", True),
    ("contact.attributes.tier.level", "lte", "gold"), ("contact.first_name", "contains", "ol"),
    ("contact.external_id", "eq", ""), ("contact.consent.sms", "eq", True),
    ("contact.missing", "neq", "gold"), ("contact.first_name", "gte", "Zebra"),
    ("contact.locale", "neq", "de")]


@pytest.fixture
def contacts(workspace) -> list[Contact]:
    made = [ContactFactory(workspace=workspace, attributes={"tier": value, "Tier": "x"},
                           sms_subscribed=index % 2 == 0, email_subscribed=index % 3 == 0,
                           first_name=["gold", "Gold", "golden", "10", "", "zebra", "Zebra",
                                       "ärger"][index % 8],
                           external_id=None if index % 4 == 0 else f"ext-{index}",
                           locale=["de", "en", "", "de-AT", "Zebra"][index % 5],
                           timezone=["", "Europe/Berlin", "UTC"][index % 3])
            for index, value in enumerate(ATTRIBUTE_VALUES)]
    made.append(ContactFactory(workspace=workspace, attributes={}, external_id=""))
    made.append(ContactFactory(workspace=workspace, attributes={"other": 1}, first_name="10"))
    made.append(ContactFactory(workspace=workspace, attributes=["tier"]))
    return made


def selected(rules: dict) -> set:
    """Return the contacts the compiled filter selects (then evaluated when not exact)."""
    where, exact = rules_filter(rules)
    chosen = Contact.objects.filter(where)
    return {c.pk for c in chosen if exact or evaluate(rules, audience_context(c))}


def evaluated(contacts: list[Contact], rules: dict) -> set:
    return {c.pk for c in Contact.objects.filter(pk__in=[c.pk for c in contacts])
            if evaluate(rules, audience_context(c))}


@pytest.mark.django_db
@pytest.mark.parametrize("op", OPERATORS)
def test_each_operator_selects_what_python_evaluates(contacts, op):
    values = [True, False] if op == "exists" else \
        [[value, "Gold"] for value in VALUES] + [[]] if op == "in" else VALUES
    for field in FIELDS:
        for value in values:
            rules = {"all": [{"field": field, "op": op, "value": value}]}
            where, exact = rules_filter(rules)
            matched = evaluated(contacts, rules)
            narrowed = {c.pk for c in Contact.objects.filter(where)}
            assert matched <= narrowed, rules
            assert not exact or narrowed == matched, rules
            assert selected(rules) == matched, rules


@pytest.mark.django_db
def test_groups_combine_compiled_and_evaluated_conditions(contacts):
    gold = {"field": "contact.attributes.tier", "op": "eq", "value": "gold"}
    numeric = {"field": "contact.attributes.tier", "op": "gte", "value": 10}
    opted_in = {"field": "contact.consent.sms", "op": "eq", "value": True}
    for rules in ({"all": [opted_in, numeric]}, {"any": [gold, numeric]},
                  {"any": [{"all": [gold, opted_in]}, {"all": [numeric]}]},
                  {"or": [gold, {"field": "contact.attributes.tier", "op": "exists"}]},
                  {"all": []}, {"any": []}):
        assert selected(rules) == evaluated(contacts, rules), rules
    assert rules_filter({"all": [gold, opted_in]})[1] is True
    assert rules_filter({"any": [gold, numeric]})[1] is False


@pytest.mark.parametrize(("field", "op", "value"), EXACT)
def test_what_sql_can_say_is_not_left_to_python(field, op, value):
    assert rules_filter({"all": [{"field": field, "op": op, "value": value}]})[1] is True


def test_malformed_rules_are_left_to_the_evaluator_that_refuses_them():
    context = {"contact": {"first_name": "Ada"}}
    for rules in ({"all": [], "any": []}, {"all": "x"},
                  {"all": [{"field": "contact.first_name", "op": "?"}]}):
        assert rules_filter(rules)[1] is False
        with pytest.raises(ValueError):
            evaluate(rules, context)
