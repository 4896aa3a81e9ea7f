"""Per-queue task time limits: each task carries its queue's hard limit through the real
broker, and a prefork worker ends a task that runs past it."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from celery.signals import task_prerun

from config.celery import app
from messaging.models import Message
from tests.support.processes import kill, start_worker
from tests.support.stub_server import Reply, StubServer
from tests.support.waiting import wait_until


@pytest.fixture
def limits(settings) -> dict[str, int]:
    settings.TASK_TIME_LIMITS = {**settings.TASK_TIME_LIMITS, "sms": 41, "webhook": 43}
    return settings.TASK_TIME_LIMITS


@pytest.fixture
def consumed() -> Any:
    """Record, per queue, the time limits (hard, soft) of each task the worker starts."""
    seen: dict[str, list[Any]] = {}
    lock = threading.Lock()

    def record(task: Any = None, **kwargs: Any) -> None:
        queue = (task.request.delivery_info or {}).get("routing_key", "")
        with lock:
            seen.setdefault(queue, []).append(task.request.timelimit)

    task_prerun.connect(record, weak=False)
    yield seen
    task_prerun.disconnect(record)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_each_queue_s_tasks_carry_that_queue_s_limit(api, workspace, limits, consumed,
                                                       stub_server: StubServer, live_worker,
                                                       allow_local):
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    for body in ({"channel": "sms", "to": "+14155552671", "body": "x"},
                 {"channel": "webhook", "url": f"{stub_server.url}/hook", "payload": {}}):
        assert api.post("/api/v1/messages", body, format="json").status_code == 201
    wait_until(lambda: {"sms", "webhook"} <= set(consumed))
    assert {tuple(limit) for limit in consumed["sms"]} == {(41, None)}
    assert {tuple(limit) for limit in consumed["webhook"]} == {(43, None)}


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
def test_a_prefork_worker_ends_a_task_past_its_queue_s_limit(api, workspace, settings,
                                                             stub_server: StubServer,
                                                             tmp_path: Path):
    # Published here with the sms queue's limit of 2 s; the worker enforces what it carries.
    settings.TASK_TIME_LIMITS = {**settings.TASK_TIME_LIMITS, "sms": 2}
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    # The provider answers after 30 s, inside the worker's read timeout: only the limit ends
    # the call.
    stub_server.script("/send-sms", Reply(200, {"id": "late"}, delay=30))
    # Tasks earlier tests left in the broker would reach the worker first; a delivery task
    # claims its lane's next due rows, so one of them (published with the sms queue's
    # usual limit) could take this message and call past 2 s.
    app.control.purge()
    log = tmp_path / "worker.log"
    worker = start_worker(log=log, PROVIDER_TIMEOUT_SECONDS="60")
    try:
        response = api.post("/api/v1/messages",
                            {"channel": "sms", "to": "+14155552671", "body": "x"},
                            format="json")
        assert response.status_code == 201
        wait_until(lambda: "Hard time limit (2s) exceeded for messaging.tasks.deliver_messages"
                   in log.read_text(), timeout=90)
    finally:
        kill(worker)
    # The call was cut short: the message was never recorded sent (the lease brings it back).
    assert Message.objects.get(id=response.json()["id"]).status == "sending"
