"""The OpenAPI schema the service serves is a valid OpenAPI document (openapi-spec-validator),
so tools that trust the specification (client generators, validators) can read it."""
from __future__ import annotations

import pytest
from openapi_spec_validator import validate
from rest_framework.test import APIClient


@pytest.fixture
def served_schema(db) -> dict:  # noqa: ARG001
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


def test_the_served_schema_passes_openapi_spec_validator(served_schema):
    validate(served_schema)  # raises OpenAPIValidationError naming the first problem


def test_no_default_breaks_its_own_field_rules(served_schema):
    """The validator checks defaults against their schema: a refused default is a lie."""
    inbound = served_schema["components"]["schemas"]["InboundRequest"]["properties"]
    assert "default" not in inbound["provider_message_id"]
