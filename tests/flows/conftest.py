from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.stub_server import StubServer

GRAPH = {
    "nodes": [
        {"id": "n1", "type": "send_sms", "data": {"body": "Hi {{ contact.first_name }}"},
         "position": {"x": 0, "y": 0}},
        {"id": "n2", "type": "delay", "data": {"seconds": 2}},
        {"id": "n3", "type": "condition", "data": {"rules": {"all": [
            {"field": "contact.attributes.vip", "op": "eq", "value": True}]}}},
        {"id": "n4", "type": "send_email", "data": {
            "subject": "Welcome {{ contact.first_name }}",
            "html": "<p>Hi {{ contact.first_name }}, code {{ trigger.code }}</p>"}},
        {"id": "n5", "type": "send_webhook", "data": {
            "url": "https://example.com/hook",
            "payload": {"sms": "{{ steps.n1.output.message_id }}",
                        "who": "{{ contact.external_id }}"}}},
    ],
    "edges": [
        {"id": "e1", "source": "n1", "target": "n2"},
        {"id": "e2", "source": "n2", "target": "n3"},
        {"id": "e3", "source": "n3", "target": "n4", "sourceHandle": "true"},
        {"id": "e4", "source": "n3", "target": "n5", "sourceHandle": "false"},
    ],
}

# The same kind of flow as the older builder saved it: its node names and data fields.
BUILDER_GRAPH = {
    "nodes": [
        {"id": "m", "type": "send-message", "position": {"x": 0, "y": 0}, "data": {
            "messageText": "Hi {{ contact.first_name }}",
            "imageUrl": "https://cdn.example.com/welcome.png"}},
        {"id": "d", "type": "delay", "data": {"delayMs": 2000}},
        {"id": "e", "type": "send-email", "data": {
            "subject": "Welcome {{ contact.first_name }}",
            "body": "<p>Hi {{ contact.first_name }}</p>"}},
    ],
    "edges": [
        {"id": "m-d", "source": "m", "target": "d", "sourceHandle": None},
        {"id": "d-e", "source": "d", "target": "e"},
    ],
}


def graph_for(stub: StubServer) -> dict:
    """Return the example graph with its webhook pointing at the stand-in server."""
    import copy

    graph = copy.deepcopy(GRAPH)
    graph["nodes"][4]["data"]["url"] = f"{stub.url}/hook"
    return graph


@pytest.fixture
def providers(workspace, stub_server, allow_local):
    """Point the workspace's SMS and email at the stand-in server."""
    workspace.settings = {"providers": {
        "sms": {"name": "http", "api_url": stub_server.url},
        "email": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    return stub_server


README = Path(__file__).resolve().parent.parent.parent / "README.md"


def readme_journey(name: str) -> dict:
    """Return the README's example journey (a JSON flow) of this name, as written."""
    blocks = re.findall(r"```json\n(.*?)```", README.read_text(), flags=re.S)
    [block] = [block for block in blocks if re.match(rf'\{{"name": "{name}"', block)]
    flow: dict = json.loads(block)
    return flow


def create_flow(api, flow: dict) -> dict:
    """Create the flow as given (201) and return it."""
    response = api.post("/api/v1/flows", flow, format="json")
    assert response.status_code == 201, response.json()
    return response.json()
