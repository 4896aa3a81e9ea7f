"""The message composer's inputs as REST framework fields: the API's request schema.

messaging.compose checks a message's fields itself, from its table of inputs
(`message_inputs`); this module turns the same table into REST framework fields so the
OpenAPI schema and the browsable forms describe exactly what the composer takes. The fields
check nothing on a request: MessageCreateSerializer hands the raw data to the composer.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework import serializers

from core.api import StrictCharField
from messaging.compose import (
    HEADER_MAX_LENGTH,
    MEDIA_MAX_ITEMS,
    URL_MAX_LENGTH,
    InputField,
    message_inputs,
)


def _options(spec: InputField) -> dict[str, Any]:
    """Return whether the field is required, or its default when it is left out."""
    if spec.default is not None:
        return {"default": spec.default}
    return {} if spec.required else {"required": False}


# The REST framework field that describes each kind of input (InputField.kind).
FIELD_BUILDERS: dict[str, Callable[[InputField, dict[str, Any]], serializers.Field]] = {
    "text": lambda spec, options: StrictCharField(max_length=spec.max_length, **options),
    "url": lambda spec, options: serializers.URLField(max_length=URL_MAX_LENGTH, **options),
    "media": lambda spec, options: serializers.ListField(
        child=serializers.URLField(max_length=URL_MAX_LENGTH), min_length=1,
        max_length=MEDIA_MAX_ITEMS, **options),
    "json": lambda spec, options: serializers.JSONField(**options),
    "headers": lambda spec, options: serializers.DictField(
        child=StrictCharField(max_length=HEADER_MAX_LENGTH), **options),
    "object": lambda spec, options: serializers.DictField(**options),
    "choice": lambda spec, options: serializers.ChoiceField(choices=list(spec.choices),
                                                            **options),
    "uuid": lambda spec, options: serializers.UUIDField(**options),
    "integer": lambda spec, options: serializers.IntegerField(
        min_value=spec.min_value, max_value=spec.max_value, **options),
    "datetime": lambda spec, options: serializers.DateTimeField(**options),
}


def input_fields() -> dict[str, serializers.Field]:
    """Return a fresh REST framework field per composer input, in the composer's order."""
    return {name: FIELD_BUILDERS[spec.kind](spec, _options(spec))
            for name, spec in message_inputs().items()}
