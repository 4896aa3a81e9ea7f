"""Correlation ids (README.md, "Following a message through the logs"): every answer carries
an X-Request-ID, and the lines web, dispatcher and worker log about a request's message
carry its request id, message id, task id and workspace."""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from core import logcontext
from messaging.delivery import timers
from messaging.models import Message
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


class Collecting(logging.Handler):
    """The records logged while it is attached, after the service's context filter."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.addFilter(logcontext.ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def about(self, message_id: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "message_id", "") == message_id]


@pytest.fixture
def logged() -> Iterator[Collecting]:
    handler = Collecting()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def test_every_answer_carries_a_request_id_its_own_when_usable(api):
    made = api.get("/api/v1/workspace")
    given = api.get("/api/v1/workspace", HTTP_X_REQUEST_ID="support-ticket-42")
    unusable = api.get("/api/v1/workspace", HTTP_X_REQUEST_ID="no spaces\nor newlines")
    anonymous = Client().get("/health")

    assert re.fullmatch(r"[0-9a-f]{32}", made["X-Request-ID"])
    assert given["X-Request-ID"] == "support-ticket-42"
    assert re.fullmatch(r"[0-9a-f]{32}", unusable["X-Request-ID"])
    assert anonymous.has_header("X-Request-ID")
    assert len({made["X-Request-ID"], unusable["X-Request-ID"],
                anonymous["X-Request-ID"]}) == 3


def test_one_message_is_followed_by_its_ids_through_web_dispatcher_and_worker(
        api, workspace, live_worker, logged):
    send_at = timezone.now() + timedelta(seconds=1)
    created = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                            "body": "hi", "send_at": send_at.isoformat()},
                       format="json", HTTP_X_REQUEST_ID="req-follow-1")
    message_id = created.json()["id"]
    wait_until(lambda: timezone.now() >= send_at)
    # The dispatcher's pass, once the timer is due (another dispatcher loop of this process
    # may have made it first: its lines are captured all the same).
    timers.dispatch_due()
    wait_until(lambda: Message.objects.get(pk=message_id).status == "sent")

    lines = {r.getMessage(): r for r in logged.about(message_id)}
    web = [r for r in logged.records if r.name == "relay.request"
           and r.getMessage().startswith("POST /api/v1/messages 201")]

    assert web and web[0].request_id == "req-follow-1"
    assert web[0].workspace_id == str(workspace.pk)
    accepted, due, sent = (lines["sms message accepted: scheduled"],
                           lines["sms message due: queued"], lines["sms message sent"])
    for record in (accepted, due, sent):
        assert (record.request_id, record.workspace_id) == ("req-follow-1", str(workspace.pk))
    assert getattr(sent, "task_id", "")  # the delivery task's id
    assert Message.objects.get(pk=message_id).request_id == "req-follow-1"


def test_a_task_published_during_a_request_carries_its_id_in_the_headers(
        api, workspace, live_worker, logged):
    created = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                            "body": "now"}, format="json",
                       HTTP_X_REQUEST_ID="req-header-2")
    message_id = created.json()["id"]
    wait_until(lambda: Message.objects.get(pk=message_id).status == "sent")

    # Lines of the delivery task that are about no one message: bound from its headers.
    wait_until(lambda: any(r.name.startswith("celery") and getattr(r, "task_id", "")
                           for r in logged.records))
    task_lines = [r for r in logged.records if getattr(r, "task_id", "")
                  and not getattr(r, "message_id", "")]
    assert task_lines and {r.request_id for r in task_lines} == {"req-header-2"}


def test_a_walk_that_breaks_logs_with_its_executions_ids(workspace, logged, monkeypatch):
    from flows import engine, walker
    from flows.models import Execution
    from tests.factories import ExecutionFactory

    execution = ExecutionFactory(workspace=workspace, status=Execution.Status.RUNNING)

    def broken(*args, **kwargs):
        raise RuntimeError("a node's bug")

    monkeypatch.setattr(walker, "walk", broken)

    assert engine.advance_many(execution_ids=[str(execution.pk)]) == {
        str(execution.pk): "error"}
    [line] = [r for r in logged.records if r.getMessage().startswith("advancing execution")]
    assert (line.execution_id, line.workspace_id) == (str(execution.pk), str(workspace.pk))


def test_a_task_run_inside_a_request_gives_the_requests_ids_back_when_it_ends():
    with logcontext.bind(request_id="req-eager", workspace_id="w1"):
        logcontext.task_context_bind(task_id="t1", task=None)
        inside = logcontext.current()
        logcontext.task_context_clear(task_id="t1")
        after = logcontext.current()

    assert inside == {"task_id": "t1", "request_id": "req-eager"}
    assert after == {"request_id": "req-eager", "workspace_id": "w1"}
    assert logcontext.current() == {}
