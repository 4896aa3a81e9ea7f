"""Messages written before flow_context existed keep their context (migration 0008)."""
from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection

from messaging.delivery.templating import render_context
from messaging.models import Message
from tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

migration = importlib.import_module("messaging.migrations.0008_flow_context_out_of_metadata")


def old_flow_message(workspace, n: int) -> Message:
    return MessageFactory(workspace=workspace, source="flow", metadata={
        "node_id": f"n{n}", "_context": {"trigger": {"n": n}, "steps": {}}})


def test_the_context_moves_out_of_metadata_batch_by_batch(workspace, monkeypatch):
    monkeypatch.setattr(migration, "BATCH", 2)
    old = [old_flow_message(workspace, n) for n in range(5)]
    plain = MessageFactory(workspace=workspace, metadata={"order": 7})
    migration.context_out_of_metadata(apps, connection.schema_editor())
    for n, message in enumerate(old):
        message.refresh_from_db()
        assert message.metadata == {"node_id": f"n{n}"}
        assert message.flow_context == {"trigger": {"n": n}, "steps": {}}
        assert render_context(message)["trigger"] == {"n": n}
    plain.refresh_from_db()
    assert (plain.metadata, plain.flow_context) == ({"order": 7}, None)


def test_it_moves_back_for_a_migration_backwards(workspace, monkeypatch):
    monkeypatch.setattr(migration, "BATCH", 2)
    message = old_flow_message(workspace, 1)
    migration.context_out_of_metadata(apps, connection.schema_editor())
    migration.context_back_into_metadata(apps, connection.schema_editor())
    message.refresh_from_db()
    assert message.metadata == {"node_id": "n1", "_context": {"trigger": {"n": 1},
                                                              "steps": {}}}
    assert message.flow_context is None
