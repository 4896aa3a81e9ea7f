"""An execution's lease is given back in the same commit that hands its send to the pipeline.

Otherwise a message decided at once (a suppressed send, a very fast provider) finishes its
step and publishes the next advance while the first advance still holds the lease: that
advance is skipped, and the execution waits for the sweeper (minutes) instead of moving on.
"""
from __future__ import annotations

from typing import Any

import pytest
from celery.signals import before_task_publish

from flows import engine
from flows.models import Execution
from messaging.publishing import DELIVER_TASK
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_lease_is_free_when_the_send_is_published(api, workspace):
    created = api.post("/api/v1/flows", {
        "name": "f", "trigger": {"type": "manual"},
        "nodes": [{"id": "s", "type": "send_sms", "data": {"body": "Hi"}}], "edges": []},
        format="json").json()
    assert api.post(f"/api/v1/flows/{created['id']}/activate").status_code == 200
    contact = ContactFactory(workspace=workspace)
    execution_id = api.post(f"/api/v1/flows/{created['id']}/executions",
                            {"contact_id": str(contact.id)}, format="json").json()["id"]
    leases: list[Any] = []

    def seen(sender: str | None = None, **kwargs: Any) -> None:
        if sender == DELIVER_TASK:
            leases.append(Execution.objects.get(pk=execution_id).lease_until)

    before_task_publish.connect(seen, weak=False)
    try:
        assert engine.advance(execution_id=execution_id) == "waiting"
    finally:
        before_task_publish.disconnect(seen)

    assert leases == [None]
