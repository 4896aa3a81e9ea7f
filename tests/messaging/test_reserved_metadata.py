"""Metadata keys starting with "_" are the service's own: a sender cannot write them, and
neither the API's answer nor a message event shows them."""
from __future__ import annotations

import pytest

from messaging.models import Message

pytestmark = pytest.mark.django_db

URL = "/api/v1/messages"
SMS = {"channel": "sms", "to": "+14155552671", "body": "Hi"}


@pytest.mark.parametrize("key", ["_context", "_event_type", "_event_id", "_anything_else"])
def test_a_metadata_key_starting_with_an_underscore_answers_400_naming_it(api, key):
    response = api.post(URL, {**SMS, "metadata": {"order": 7, key: {"trigger": {}}}},
                        format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["fields"] == {"metadata": [f"{key} is a reserved key."]}
    assert not Message.objects.exists()


def test_every_reserved_key_is_named(api):
    response = api.post(URL, {**SMS, "metadata": {"_b": 1, "a": 2, "_a": 3}}, format="json")
    assert response.json()["error"]["fields"]["metadata"] == [
        "_a is a reserved key.", "_b is a reserved key."]


def test_a_batch_with_a_reserved_key_creates_nothing(api):
    response = api.post(f"{URL}/batch", {"messages": [
        SMS, {**SMS, "metadata": {"_context": {"steps": {}}}}]}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["fields"]["messages"] == {
        "1": {"metadata": ["_context is a reserved key."]}}
    assert not Message.objects.exists()


def test_an_underscore_inside_a_key_or_a_nested_value_is_the_senders_own(api):
    metadata = {"order_id": 7, "x": {"_nested": True}}
    response = api.post(URL, {**SMS, "metadata": metadata}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["metadata"] == metadata


def test_the_service_s_own_keys_show_neither_in_answers_nor_in_events(api, workspace):
    endpoint = api.post("/api/v1/webhook-endpoints", {
        "url": "https://hooks.example.com/in", "events": ["message.queued"]},
        format="json").json()
    response = api.post("/api/schedule-sms", {
        "to": "+14155552671", "message": "Hi", "contactId": "legacy-42",
        "workspaceId": str(workspace.id), "metadata": {"campaign": "c1"}}, format="json")
    assert response.status_code == 201, response.json()
    message = Message.objects.get(pk=response.json()["jobId"])
    assert "_compat" in message.metadata  # kept for the provider, which sends the old ids

    shown = {"campaign": "c1", "contactId": "legacy-42"}
    assert api.get(f"{URL}/{message.pk}").json()["metadata"] == shown
    listed = api.get(URL).json()["results"]
    assert [row["metadata"] for row in listed if row["id"] == str(message.pk)] == [shown]
    delivery = Message.objects.get(webhook_endpoint_id=endpoint["id"])
    assert delivery.content["payload"]["data"]["metadata"] == shown


@pytest.mark.parametrize("key", ["_context", "_anything_else"])
def test_the_older_endpoints_drop_a_clients_reserved_key_as_they_drop_unknown_ones(
        api, workspace, key):
    response = api.post("/api/schedule-sms", {
        "to": "+14155552671", "message": "Hi", "workspaceId": str(workspace.id),
        "metadata": {"campaign": "c1", key: {"trigger": {"x": 1}}}}, format="json")
    assert response.status_code == 201, response.json()
    message = Message.objects.get(pk=response.json()["jobId"])
    assert key not in message.metadata and message.flow_context is None
