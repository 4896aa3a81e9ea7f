"""Text the database cannot store (NUL characters, lone surrogates) and JSON nested too deeply
answer 400 naming the field, whatever the endpoint, and write nothing (core/api_parsers.py).

On PostgreSQL each of these used to answer 500: `jsonb` and `text` refuse a NUL and a lone
surrogate, and Python's decoder raises RecursionError on a very deep document.
"""
from __future__ import annotations

import json
from functools import cache
from typing import Any
from urllib.parse import urlencode

import pytest
from django.apps import apps
from rest_framework.test import APIClient
from twilio.request_validator import RequestValidator

from audiences.segments import segment_create
from core.api_parsers import MAX_JSON_DEPTH, deep_path, first_unstorable
from core.models import Contact
from flows.models import Execution
from messaging.models import Message
from messaging.templates import template_create
from tests.factories import ContactFactory, FlowFactory, FlowScheduleFactory

pytestmark = pytest.mark.django_db

# Each bad class as (name, JSON text of a free-form object holding it, expected path inside).
DEEP = 5000
BAD_OBJECTS = [
    ("nul_in_a_value", json.dumps({"x": "a\x00b"}), "x"),
    ("nul_in_a_key", json.dumps({"x\x00": 1}), "x\\u0000"),
    ("lone_surrogate_in_a_key", json.dumps({"x\ud800": 1}), "x\\ud800"),
    ("lone_surrogate_in_a_value", json.dumps({"x": "v\ud800"}), "x"),
    ("nested_5000_deep", '{"a": ' + "[" * DEEP + "]" * DEEP + "}", None),
]


def rows() -> int:
    """Return how many rows the project's own tables hold."""
    return sum(model._default_manager.count() for model in apps.get_models()
               if model._meta.app_label in ("core", "messaging", "flows", "monitoring"))


def post_json(api: APIClient, url: str, text: str, method: str = "post") -> Any:
    return getattr(api, method)(url, text, content_type="application/json")


def assert_refused(response: Any, field: str) -> None:
    """Assert a 400 in the API's validation error shape naming `field` (or a deeper path)."""
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    named = list(error["fields"])
    assert len(named) == 1
    assert named[0] == field or named[0].startswith(field + "."), named


# --- the cases of the issue, against the real endpoints --------------------------------------

@pytest.mark.parametrize(("attributes", "field"), [
    ('{"x": "a\\u0000b"}', "attributes.x"),
    ('{"x\\ud800": 1}', "attributes.x\\ud800"),
    ('{"x": "v\\ud800"}', "attributes.x"),
    ('{"a": ' + "[" * DEEP + "]" * DEEP + "}", "attributes.a.0.0"),
])
def test_contact_attributes_that_cannot_be_stored_answer_400_naming_the_field(
        api, attributes, field):
    before = Contact.objects.count()
    response = post_json(api, "/api/v1/contacts", '{"first_name": "Ada", "attributes": '
                         + attributes + "}")
    assert_refused(response, field)
    assert Contact.objects.count() == before


def test_a_too_deep_document_names_the_path_down_to_the_limit(api):
    response = post_json(api, "/api/v1/contacts",
                         '{"attributes": {"a": ' + "[" * DEEP + "]" * DEEP + "}}")
    [field] = response.json()["error"]["fields"]
    assert field == ".".join(["attributes", "a"] + ["0"] * (MAX_JSON_DEPTH - 2))


def test_bulk_start_data_with_a_lone_surrogate_key_answers_400(api, workspace):
    flow = FlowFactory(workspace=workspace, publish=True)
    ContactFactory(workspace=workspace)
    before = (Execution.objects.count(), rows())
    response = post_json(api, f"/api/v1/flows/{flow.id}/executions/bulk",
                         '{"data": {"k\\ud841": 1}}')
    assert_refused(response, "data.k\\ud841")
    assert (Execution.objects.count(), rows()) == before


def test_a_webhook_payload_with_a_nul_answers_400(api):
    before = Message.objects.count()
    response = post_json(api, "/api/v1/messages", json.dumps(
        {"channel": "webhook", "to": "https://example.com/hook", "payload": {"k": "a\x00b"}}))
    assert_refused(response, "payload.k")
    assert Message.objects.count() == before


def test_plain_string_fields_are_refused_the_same_way(api):
    response = post_json(api, "/api/v1/contacts", json.dumps({"first_name": "A\x00da"}))
    assert_refused(response, "first_name")


def test_json_nested_up_to_the_limit_is_accepted(api):
    # The body is level 1 and attributes level 2: MAX_JSON_DEPTH - 2 lists inside fit.
    inner = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    ok = post_json(api, "/api/v1/contacts", '{"attributes": {"a": ' + inner + "}}")
    assert ok.status_code == 201, ok.content
    refused = post_json(api, "/api/v1/contacts", '{"attributes": {"a": [' + inner + "]}}")
    assert_refused(refused, "attributes.a")


def test_valid_unicode_and_escaped_pairs_are_stored(api):
    response = post_json(api, "/api/v1/contacts",
                         '{"attributes": {"emoji": "\\ud83d\\ude00", "k\\u00e9": "\\u2603"}}')
    assert response.status_code == 201, response.content
    assert response.json()["attributes"] == {"emoji": "\U0001f600", "k\u00e9": "\u2603"}


def test_the_token_reader_and_the_walker_name_the_same_path():
    text = json.dumps({"a": [1, {"b": [{"c\\": "x", "d": {"e": [[2, [3, [[[]]]]]]}}]}]})
    found = first_unstorable(json.loads(text), max_depth=6)
    assert found is not None
    assert deep_path(text, max_depth=6) == found[0] == ("a", 1, "b", 0, "d", "e")


# --- query parameters and form bodies ----------------------------------------------------------

def test_a_query_parameter_with_a_nul_answers_400_naming_it(api):
    response = api.get("/api/v1/contacts", {"search": "a\x00b"})
    assert_refused(response, "search")


PUBLIC = "https://relay.example.com"
INBOUND_PATH = "/api/v1/providers/twilio/inbound"


def test_a_signed_twilio_form_with_a_nul_answers_400_and_stores_nothing(client, settings):
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.TWILIO_AUTH_TOKEN = "env-token"
    settings.TWILIO_FROM_NUMBER = "+14155550000"
    params = {"From": "+14155552671", "To": "+14155550000", "Body": "a\x00b",
              "MessageSid": "SM0001", "AccountSid": "AC1", "NumMedia": "0"}
    signature = RequestValidator("env-token").compute_signature(PUBLIC + INBOUND_PATH, params)
    response = client.post(INBOUND_PATH, urlencode(params),
                           content_type="application/x-www-form-urlencoded",
                           HTTP_X_TWILIO_SIGNATURE=signature)
    assert_refused(response, "Body")
    assert not Message.objects.exists()


# --- every operation of the live schema that takes a free-form JSON object -------------------

@cache
def live_schema() -> dict:
    """Return the OpenAPI schema the service serves (its view needs no database); read at
    collection, before the tests' plain-http settings, so over https."""
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json", secure=True)
    assert response.status_code == 200
    return response.json()


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


# Keys of a schema node that describe it without narrowing what it takes.
ANNOTATIONS = {"description", "title", "example", "default", "readOnly", "writeOnly",
               "nullable"}


def _free_form(node: dict) -> bool:
    """Return whether a property takes any JSON object: `{}` or an object without fields
    (a description or other annotation beside them narrows nothing)."""
    shape = {key: value for key, value in node.items() if key not in ANNOTATIONS}
    return shape == {} or (shape.get("type") == "object" and "properties" not in shape)


def free_form_fields() -> list[tuple[str, str, str]]:
    """Return (method, path, property) for every free-form object a JSON body takes."""
    schema = live_schema()
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = (operation.get("requestBody") or {}).get("content", {})
            if "application/json" not in content:
                continue
            body = _resolve(schema, content["application/json"]["schema"])
            for name, node in body.get("properties", {}).items():
                if _free_form(_resolve(schema, node)):
                    found.append((method, path, name))
    return found


FREE_FORM = free_form_fields()


def test_the_schema_walk_finds_the_free_form_fields_of_the_issue():
    named = {(path.rstrip("/"), name) for _, path, name in FREE_FORM}
    assert {("/api/v1/contacts", "attributes"), ("/api/v1/messages", "payload"),
            ("/api/v1/flows/{id}/executions/bulk", "data"), ("/api/v1/flows", "nodes"),
            ("/api/v1/workspace", "settings")} <= named


def path_with_ids(path: str, workspace: Any) -> str:
    """Return the path with each id filled by a real object of the workspace, so the request
    reaches the code that reads its body (an unknown id answers 404 first)."""
    schedule = FlowScheduleFactory(workspace=workspace)  # its flow has a schedule to edit
    objects = {"contacts": lambda: ContactFactory(workspace=workspace).id,
               "flows": lambda: schedule.flow_id,
               "schedules": lambda: schedule.id,
               "segments": lambda: segment_create(
                   workspace=workspace, name="s",
                   rules={"all": [{"field": "contact.phone", "op": "exists"}]}).id,
               "templates": lambda: template_create(
                   workspace=workspace, name="t", channel="sms", default_locale="en",
                   variants={"en": {"body": "Hi"}}).id}
    parts = path.split("/")
    for index, part in enumerate(parts):
        if part.startswith("{"):
            owner = parts[index - 1]
            if owner not in objects:
                pytest.fail(f"{path}: say which object fills {part} in path_with_ids")
            parts[index] = str(objects[owner]())
    return "/".join(parts)


@pytest.mark.parametrize(("method", "path", "name"), FREE_FORM,
                         ids=[f"{m.upper()} {p} {n}" for m, p, n in FREE_FORM])
@pytest.mark.parametrize(("case", "text", "inner"), BAD_OBJECTS,
                         ids=[case for case, _, _ in BAD_OBJECTS])
def test_every_free_form_object_refuses_what_cannot_be_stored(
        api, workspace, method, path, name, case, text, inner):
    url = path_with_ids(path, workspace)
    before = rows()
    response = post_json(api, url, "{" + json.dumps(name) + ": " + text + "}", method=method)
    assert_refused(response, f"{name}.{inner}" if inner else f"{name}.a.0.0")
    assert rows() == before
