"""Killing workers mid-execution: every execution completes, no node or message twice."""
from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db import connection

from flows import engine
from flows.models import Execution, Step
from messaging.delivery import sweeper
from messaging.models import Message
from tests.factories import ContactFactory
from tests.support import processes
from tests.support.stub_server import Reply
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

NODES = [
    {"id": "a", "type": "send_sms", "data": {"body": "one"}},
    {"id": "u", "type": "update_contact", "data": {"attributes": {"stage": "two"}}},
    {"id": "b", "type": "send_sms", "data": {"body": "two"}},
    {"id": "d", "type": "delay", "data": {"seconds": 1}},
    {"id": "c", "type": "send_sms", "data": {"body": "three"}},
]
EDGES = [{"id": f"e{i}", "source": s, "target": t}
         for i, (s, t) in enumerate([("a", "u"), ("u", "b"), ("b", "d"), ("d", "c")])]


@pytest.fixture
def sweepers(settings):
    """The beat-driven sweepers, every half second, with short thresholds."""
    settings.REQUEUE_AFTER_SECONDS = 2
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            sweeper.sweep()
            engine.sweep()
            time.sleep(0.5)
        connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


def test_killed_workers_leave_no_execution_unfinished_and_nothing_sent_twice(
        api, workspace, stub_server, dispatcher, sweepers):
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    stub_server.dedupe_header = "Idempotency-Key"
    stub_server.default = Reply(200, {"id": "ok"}, delay=0.05)
    flow = api.post("/api/v1/flows", {"name": "chain", "trigger": {"type": "manual"},
                                      "nodes": NODES, "edges": EDGES}, format="json").json()
    api.post(f"/api/v1/flows/{flow['id']}/activate")
    contacts = ContactFactory.create_batch(40, workspace=workspace)
    env = {"DELIVERY_LEASE_SECONDS": "3", "FLOW_LEASE_SECONDS": "3"}
    worker = processes.start_worker(concurrency=2, **env)
    try:
        job = api.post(f"/api/v1/flows/{flow['id']}/executions/bulk",
                       {"contact_ids": [str(c.id) for c in contacts]}, format="json").json()
        assert job["status"] == "pending"
        for _ in range(3):  # kill it three times while work is in flight
            stub_server.wait_for(len(stub_server.requests) + 10, timeout=60)
            processes.kill(worker)
            worker = processes.start_worker(concurrency=2, **env)
        wait_until(lambda: Execution.objects.filter(status="completed").count() == 40,
                   timeout=150, interval=0.5)
    finally:
        processes.kill(worker)
    per_contact = Counter((r.json()["contactId"], r.json()["message"])
                          for r in stub_server.requests)
    assert set(per_contact.values()) == {1}, "a provider accepted a message twice"
    assert len(per_contact) == 120
    assert Message.objects.filter(status="sent").count() == 120
    visits = Counter(Step.objects.values_list("execution_id", "node_id"))
    assert set(visits.values()) == {1} and len(visits) == 200
    assert not Step.objects.exclude(status="completed").exists()
