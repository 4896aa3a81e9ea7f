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
