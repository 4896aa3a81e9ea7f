"""Each event type's payload matches its published JSON Schema (docs/events/), and a schema
changes only with a new schema_version.

docs/events/versions.json records, per event type, the fingerprint of the schema's shape
(its keys, types, enums and required lists; not its descriptions) for every version. A
builder that changes a payload fails validation here (the schemas allow no other keys and
require all of theirs); changing the schema to match then changes the fingerprint, which
must be recorded under a new version: bump SCHEMA_VERSIONS in messaging.events.types and
the schema's `schema_version` const, and add the fingerprint this test prints.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from jsonschema import Draft202012Validator

from flows import events as flow_events
from flows.models import Execution, ScheduleRun
from messaging.events.outbox import dead_letter_emit, messages_emit
from messaging.events.types import EVENT_TYPES, SCHEMA_VERSIONS
from messaging.models import Message, MessageStatus, WebhookEndpoint
from tests.factories import (
    DeadLetterFactory,
    ExecutionFactory,
    FlowScheduleFactory,
    MessageFactory,
)

pytestmark = pytest.mark.django_db

SCHEMAS = Path(settings.BASE_DIR) / "docs" / "events"
# Words about a schema, not its shape: editing them needs no new version.
PROSE = frozenset({"description", "title", "$comment", "examples"})


def schema_of(event_type: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{event_type}.schema.json").read_text())


def shape(node: Any) -> Any:
    """Return the schema without its prose (what a receiver's parser depends on)."""
    if isinstance(node, dict):
        return {key: shape(value) for key, value in node.items()
                if key not in PROSE and key != "$id"}
    if isinstance(node, list):
        return [shape(value) for value in node]
    return node


def fingerprint(schema: dict[str, Any]) -> str:
    """Return the hash of the schema's shape, its own version number left out (so the
    fingerprint a failure prints is the one to record under the new version)."""
    body = shape(schema)
    body["properties"].pop("schema_version", None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def closed_objects(node: Any, path: str = "$") -> list[str]:
    """Return the paths of objects with named properties that allow other keys or leave one
    out of `required` (each such object must list exactly its keys)."""
    found = []
    if isinstance(node, dict):
        if "properties" in node and (node.get("additionalProperties") is not False
                                     or set(node.get("required", ())) != set(node["properties"])):
            found.append(path)
        for key, value in node.get("properties", {}).items():
            found += closed_objects(value, f"{path}.{key}")
    return found


def broadcast_completed_emit(workspace) -> None:
    """Complete a broadcast of two messages, one sent, one suppressed."""
    from audiences import broadcasts
    from audiences.models import Broadcast, BroadcastRecipient

    broadcast = Broadcast.objects.create(workspace=workspace, name="news", channel="sms",
                                         content={"body": "hi"}, status="sending",
                                         created_all=True, targeted=2, skipped=1)
    for status in ("sent", "suppressed"):
        message = MessageFactory(workspace=workspace, status=status)
        BroadcastRecipient.objects.create(broadcast=broadcast, contact=message.contact,
                                          message=message, position=0 if status == "sent"
                                          else 1)
    assert broadcasts.broadcasts_tick()["completed"] == 1


@pytest.fixture
def payloads(workspace) -> dict[str, list[dict[str, Any]]]:
    """Build one payload of every event type from real rows, through the emitters."""
    endpoint = WebhookEndpoint.objects.create(workspace=workspace, events=["*"],
                                              url="https://hooks.example.com/events")
    now = timezone.now()
    sent = MessageFactory(workspace=workspace, status=MessageStatus.SENT, sent_at=now,
                          rendered={"body": "Hello"}, response={"reply": "ok"})
    bare = MessageFactory(workspace=workspace, contact=None, status="suppressed",
                          suppressed_reason="bounced")
    messages_emit(changes=[(sent, kind) for kind in EVENT_TYPES if kind.startswith("message.")]
                  + [(bare, "message.suppressed")])
    running = ExecutionFactory(workspace=workspace, status=Execution.Status.RUNNING)
    done = ExecutionFactory(workspace=workspace, completed_at=now)
    flow_events.executions_emit(executions=[running], type="execution.started")
    flow_events.executions_emit(executions=[done], type="execution.completed")
    flow_events.executions_emit(executions=[done], type="execution.failed")
    exited = ExecutionFactory(workspace=workspace, status=Execution.Status.EXITED,
                              completed_at=now, exit_reason="goal", converted_at=now,
                              converted_node="n1")
    flow_events.journey_emit(ids={exited.pk: workspace.pk, done.pk: workspace.pk},
                             types=["execution.converted"])
    flow_events.journey_emit(ids={exited.pk: workspace.pk}, types=["execution.exited"])
    schedule = FlowScheduleFactory(workspace=workspace)
    run = ScheduleRun.objects.create(schedule=schedule, occurrence_at=now, fired_at=now,
                                     status=ScheduleRun.Status.FAILED, error="boom")
    flow_events.schedule_run_failed_emit(run=run)
    dead_letter_emit(letter=DeadLetterFactory(workspace=workspace))
    broadcast_completed_emit(workspace)
    built: dict[str, list[dict[str, Any]]] = {}
    for delivery in Message.objects.filter(webhook_endpoint=endpoint):
        body = delivery.content["payload"]
        built.setdefault(body["type"], []).append(body)
    assert set(built) == set(EVENT_TYPES)
    return built


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_has_a_closed_schema_of_its_version(event_type):
    schema = schema_of(event_type)

    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["type"] == {"const": event_type}
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSIONS[event_type]
    assert closed_objects(schema) == []


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_payload_matches_its_schema(payloads, event_type):
    validator = Draft202012Validator(schema_of(event_type),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)

    for body in payloads[event_type]:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(body)]
        assert errors == [], f"{event_type} no longer matches its schema: {errors}"


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_a_schema_changes_only_with_a_new_version(event_type):
    recorded = json.loads((SCHEMAS / "versions.json").read_text())[event_type]
    version = str(SCHEMA_VERSIONS[event_type])
    current = fingerprint(schema_of(event_type))

    assert list(recorded) == [str(n) for n in range(1, int(version) + 1)], (
        f"{event_type}: versions.json must record versions 1..{version}")
    assert recorded[version] == current, (
        f"{event_type}'s schema changed without a new version: bump SCHEMA_VERSIONS and "
        f"the schema's schema_version, and record \"{int(version) + 1}\": \"{current}\"")
    assert len(set(recorded.values())) == len(recorded), "two versions of the same shape"


def test_a_new_key_in_a_payload_fails_its_schema(payloads):
    body = payloads["message.sent"][0]
    validator = Draft202012Validator(schema_of("message.sent"))

    assert validator.is_valid(body)
    assert not validator.is_valid({**body, "data": {**body["data"], "surprise": None}})
    assert not validator.is_valid({**body, "data": {k: v for k, v in body["data"].items()
                                                    if k != "sent_at"}})
    assert not validator.is_valid({**body, "schema_version": 2})


def test_the_schemas_are_linked_from_the_readme():
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()

    for event_type in EVENT_TYPES:
        assert f"docs/events/{event_type}.schema.json" in readme
