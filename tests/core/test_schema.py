"""The OpenAPI schema documents the error answers, with the one error body."""
from __future__ import annotations

import jsonschema
import pytest
from rest_framework.test import APIClient

ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def openapi(db) -> dict:  # noqa: ARG001
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


def _operations(openapi: dict):
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def _error_schema(openapi: dict, operation: dict, status: str) -> dict:
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    assert schema == ERROR_REF
    return {**openapi["components"]["schemas"]["Error"], "components": openapi["components"]}


def test_every_key_operation_documents_400_401_403_429_with_the_error_body(openapi):
    keyed = [(path, method, operation) for path, method, operation in _operations(openapi)
             if operation.get("security") and {} not in operation["security"]]
    assert len(keyed) > 50
    for _path, _method, operation in keyed:
        for status in ("400", "401", "403", "429"):
            _error_schema(openapi, operation, status)


def test_ids_pages_conflicts_and_idempotency_are_documented_where_they_happen(openapi):
    paths = openapi["paths"]
    assert "404" in paths["/api/v1/messages/{id}/"]["get"]["responses"]
    assert "404" in paths["/api/v1/messages/"]["get"]["responses"]  # a page past the end
    assert "404" not in paths["/api/v1/workspace"]["get"]["responses"]
    cancel = paths["/api/v1/messages/{id}/cancel/"]["post"]["responses"]
    assert {"404", "409", "422"} <= set(cancel)
    assert "409" not in paths["/api/v1/messages/"]["get"]["responses"]


def test_an_error_a_view_documents_without_a_body_gets_the_error_body(openapi):
    twilio = openapi["paths"]["/api/v1/providers/twilio/status"]["post"]
    assert {"204", "403", "404"} <= set(twilio["responses"])
    assert "401" not in twilio["responses"]  # no key is asked for
    _error_schema(openapi, twilio, "403")


def test_the_documented_error_body_is_the_one_the_api_answers(openapi, api):
    answered = api.post("/api/v1/contacts", {"phone": "not a number"}, format="json")
    assert answered.status_code == 400
    operation = openapi["paths"]["/api/v1/contacts/"]["post"]
    jsonschema.validate(answered.json(), _error_schema(openapi, operation, "400"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"detail": "x"}, _error_schema(openapi, operation, "400"))


@pytest.mark.parametrize(("url", "field"), [
    ("/api/v1/contacts?page_size=abc", "page_size"),
    ("/api/v1/contacts?page_size=0", "page_size"),
    ("/api/v1/alerts/events?state=AAA", "state"),
    ("/api/v1/alerts/events?rule=x", "rule"),
    ("/api/v1/rate-limits?since=", "since"),
    ("/api/v1/dead-letters/export?format=xml", "format"),
])
def test_query_parameters_the_api_cannot_read_answer_400_naming_them(api, url, field):
    # Found by the fuzz run (tests/test_api_fuzz.py): these were ignored, or a 404.
    response = api.get(url)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


def test_a_page_size_over_the_cap_is_capped(api):
    assert api.get("/api/v1/contacts?page_size=100000").status_code == 200


def test_a_request_with_a_bad_host_header_gets_the_json_error_shape(client):
    # Found by the fuzz run: Django's own 400 page (DisallowedHost) is HTML.
    response = client.get("/api/v1/contacts", HTTP_HOST="U&xwg")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "bad_request"
