"""Schema-driven fuzzing: schemathesis generates requests from the OpenAPI schema, sends them
to the WSGI app with a workspace API key and checks every answer against the schema (no 5xx,
documented status codes, content types and bodies).

Deterministic (derandomized) and small in the normal suite; `make fuzz` (or FUZZ_EXAMPLES=N)
explores more.
"""
from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from config.wsgi import application

# Examples per operation: 5 keeps the normal suite quick (~350 requests over every
# operation); `make fuzz` runs 200.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))


@schemathesis.check
def invalid_bodies_and_paths_rejected(ctx, response, case):
    """Run negative_data_rejection unless only query parameters were made invalid.

    Several list filters (django-filter's booleans, an empty `flow=`) ignore a value they
    cannot read instead of answering 400; that is known and left to the list endpoints.
    """
    components = case.meta.components if case.meta is not None else {}
    negative = {location for location, info in components.items() if info.mode.is_negative}
    if negative and negative <= {ParameterLocation.QUERY}:
        return None
    return negative_data_rejection(ctx, response, case)


# Every check of `--checks all`, with two changes. positive_data_acceptance is off: it expects
# any request the schema allows to succeed, but rules a JSON schema cannot say (a flow of
# this workspace, a valid phone number, a graph without cycles) answer 400 by design, naming
# the field. negative_data_rejection runs through the wrapper above.
EXCLUDED_CHECKS = [positive_data_acceptance, negative_data_rejection]


# Loaded at collection (the schema view needs no database); pytest 9.2 cannot run
# schemathesis' lazy from_fixture loader.
def https_application(environ: dict, start_response: Any) -> Any:
    """The WSGI app as reached through TLS: with DEBUG off the settings redirect plain http,
    and the middleware reads that once, when `application` is built (at import)."""
    environ["wsgi.url_scheme"] = "https"
    return application(environ, start_response)


schema = schemathesis.openapi.from_wsgi("/api/schema/", https_application)


@pytest.fixture(autouse=True)
def _fuzz_setup(db, settings):  # noqa: ARG001 (db: the requests run in the test's transaction)
    # The API rate limit answers 429 (documented) long before the fuzzer is done; off here
    # so every example reaches the view.
    settings.API_RATE_LIMIT = ""
    # As Django's test client does: the handler would close the test's connection (and its
    # transaction) at the end of every request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says(case, api_key):
    case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"},
                           excluded_checks=EXCLUDED_CHECKS)


# --- explicit cases: what the database cannot store, on every operation (issue 29) -----------
# A NUL, a lone surrogate (as a key or a value) and JSON nested 5,000 deep, in each JSON body,
# and a NUL in a query parameter: each must answer as documented, and 400 naming the field
# wherever the request reaches its input (an unknown id answers 404 first, an operator
# endpoint 403 to a workspace key; the same classes with real ids: tests/test_bad_input.py).
DEEP = 5000
BAD_BODIES = {
    "nul": ('{"x": "a\\u0000b"}', "x"),
    "lone_surrogate_key": ('{"x\\ud800": 1}', "x\\ud800"),
    "lone_surrogate_value": ('{"x": "v\\ud800"}', "x"),
    "nested_5000_deep": ('{"a": ' + "[" * DEEP + "]" * DEEP + "}", "a.0.0"),
}
OPERATIONS = [result.ok() for result in schema.get_all_operations()]


def _path_value(parameter: Any) -> str:
    """Return a well-formed value for a path parameter (of no existing object)."""
    definition = parameter.definition.get("schema", {})
    if definition.get("format") == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    return "1" if definition.get("pattern") == "^\\d+$" else "default"


def _explicit_cases() -> list[Any]:
    """Return (id, operation, body text or None, query, expected field) for every case."""
    cases = []
    for operation in OPERATIONS:
        label = f"{operation.method.upper()} {operation.path}"
        if any(body.media_type == "application/json" for body in operation.body):
            for name, (text, inner) in BAD_BODIES.items():
                cases.append(pytest.param(operation, '{"field": ' + text + "}", {},
                                          f"field.{inner}", id=f"{label} {name}"))
        first = next(iter(operation.query), None)
        if first is not None:
            cases.append(pytest.param(operation, None, {first.name: "a\x00b"}, first.name,
                                      id=f"{label} nul in ?{first.name}"))
    return cases


@pytest.mark.parametrize(("operation", "text", "query", "field"), _explicit_cases())
def test_every_operation_refuses_what_cannot_be_stored(operation, text, query, field,
                                                       api_key):
    path_parameters = {parameter.name: _path_value(parameter)
                       for parameter in operation.path_parameters}
    body = {"body": text.encode(), "media_type": "application/json"} if text else {}
    case = operation.Case(path_parameters=path_parameters, query=query or None, **body)
    response = case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"},
                                      excluded_checks=EXCLUDED_CHECKS)
    if response.status_code in (403, 404):
        return  # refused before its input is read, as documented (call_and_validate)
    assert response.status_code == 400, response.text
    assert list(response.json()["error"]["fields"])[0].startswith(field)
