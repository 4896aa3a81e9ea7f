"""The composer checks field types without REST framework, and answers in its words.

messaging.compose types each input in plain Python; messaging.api.compose_fields builds the
REST framework fields of the API's request schema from the same table. Every probe below
must get the same answer from both: the same value, or the same messages (the API's 400
bodies have always been REST framework's words).
"""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.fields import SkipField, empty, get_error_detail

from messaging.api.compose_fields import input_fields
from messaging.compose import MISSING, FieldInvalid, message_compose, message_inputs

URL = "https://cdn.example.com/a.png"
PROBES: list[Any] = [
    MISSING, None, "", "   ", "sms", "email", "high", "normal", "marketing", "x", "  padded  ",
    5, 0, -1, 12.0, 12.5, True, False, 2**130, "12", "12.0", " 7 ", "1e3", "1" * 1001,
    "x" * 321, "x" * 2049, "a\x00b", "a\ud800b", URL, "ftp://example.com/a", "not a url",
    "https://" + "a" * 2050 + ".com", [], [URL], [URL] * 11, ["", None, 5, "nope", URL],
    ("https://a.example.com/x",), {}, {"a": "b"}, {"a": 5, "b": "", "c": None, 1: "x" * 1001},
    {"nested": {"k": [1, 2]}}, [1, "two", {"three": 3}], {1, 2},
    str(uuid.UUID(int=7)), uuid.UUID(int=7).hex, f"urn:uuid:{uuid.UUID(int=7)}",
    "2026-01-01T09:00:00Z", "2026-01-01T09:00:00+01:00", "2026-01-01T09:00", "2026-01-01",
    "2026-13-01T09:00:00Z", "0001-01-01T00:30:00+01:00", "tomorrow",
    datetime(2026, 1, 1, 9, tzinfo=UTC), datetime(2026, 1, 1, 9), date(2026, 1, 1),
]


def _rest_framework_answer(field: serializers.Field, raw: Any) -> tuple[str, Any]:
    """Return what the REST framework field makes of `raw` (a value, a skip or its errors)."""
    try:
        return "value", field.run_validation(empty if raw is MISSING else raw)
    except SkipField:
        return "left out", None
    except serializers.ValidationError as exc:
        return "errors", exc.detail
    except DjangoValidationError as exc:
        return "errors", get_error_detail(exc)


def _composer_answer(name: str, raw: Any) -> tuple[str, Any]:
    """Return what the composer's own check of input `name` makes of `raw`."""
    try:
        value = message_inputs()[name].parse(raw)
    except FieldInvalid as exc:
        return "errors", exc.detail
    return ("left out", None) if value is MISSING else ("value", value)


@pytest.mark.parametrize("name", list(message_inputs()))
def test_each_input_is_typed_as_the_apis_schema_field_types_it(name: str) -> None:
    field = input_fields()[name]
    for raw in PROBES:
        assert _composer_answer(name, raw) == _rest_framework_answer(field, raw), (name, raw)


def test_the_schema_fields_are_the_composers_inputs_in_its_order() -> None:
    assert list(input_fields()) == list(message_inputs())
    assert input_fields()["priority"].default == message_inputs()["priority"].default


def test_a_bad_value_in_a_list_or_an_object_keeps_its_place(workspace) -> None:
    with pytest.raises(DjangoValidationError) as caught:
        message_compose(workspace=workspace, data={
            "channel": "webhook", "url": "https://hooks.example.com/in", "payload": {},
            "headers": {"X-Ok": "yes", "X-Bad": 5}, "delay_seconds": "soon"})
    assert caught.value.fields == {"headers": {"X-Bad": ["Not a valid string."]},
                                   "delay_seconds": ["A valid integer is required."]}
