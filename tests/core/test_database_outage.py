"""An unavailable database (a restart, a failover): the web answers 503 with Retry-After,
never 500; workers retry their tasks and resume; the dispatcher waits and reconnects.

The outage is real but private to this test's database: every other connection to it is
terminated (as a restart does) and new connections go to a port nothing listens on (as
while the server is down), then the address is restored (the server is back). The shared
PostgreSQL server is never restarted.
"""
from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from celery.signals import task_retry
from django.db import OperationalError, close_old_connections, connection, connections
from django.test import Client

from config.celery import app
from core.models import ApiKey
from messaging import publishing
from messaging.models import DeliveryAttempt, Message
from processes.management.commands.run_dispatcher import Command as Dispatcher
from tests.factories import MessageFactory, StaffUserFactory
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.postgres]


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Outage:
    """Take this test database away from every connection, and give it back."""

    def __init__(self) -> None:
        self.settings = connection.settings_dict  # shared by every thread's connection
        self.address = (self.settings["HOST"], self.settings["PORT"])

    def begin(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        connections.close_all()
        self.settings["HOST"], self.settings["PORT"] = "127.0.0.1", str(_unused_port())

    def end(self) -> None:
        self.settings["HOST"], self.settings["PORT"] = self.address
        connections.close_all()


@pytest.fixture
def outage(transactional_db) -> Iterator[Outage]:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    down = Outage()
    yield down
    down.end()


def _assert_unavailable(status: int, headers, body: dict) -> None:
    assert status == 503
    assert headers["Retry-After"] == "5"
    assert body == {"error": {"code": "database_unavailable",
                              "message": "The database is unavailable; try again shortly."}}


def test_the_api_answers_503_with_retry_after_while_the_database_is_away(
        outage, live_server, api_key):
    headers = {"Authorization": f"Bearer {api_key}"}
    url = f"{live_server.url}/api/v1/messages"
    body = {"channel": "sms", "to": "+14155552671", "body": "hi"}
    assert requests.post(url, json=body, headers=headers, timeout=30).status_code == 201

    outage.begin()
    # The first request meets the connection the "restart" broke, the next ones a refused one.
    for _ in range(3):
        answer = requests.post(url, json=body, headers=headers, timeout=30)
        _assert_unavailable(answer.status_code, answer.headers, answer.json())
    listed = requests.get(url, headers=headers, timeout=30)
    _assert_unavailable(listed.status_code, listed.headers, listed.json())

    outage.end()
    assert requests.post(url, json=body, headers=headers, timeout=30).status_code == 201
    assert Message.objects.count() == 2  # nothing was half written during the outage


def test_pages_and_the_older_endpoints_answer_503_too(outage, api_key):
    staff = StaffUserFactory()
    browser = Client(raise_request_exception=False)
    browser.force_login(staff)
    compat = Client(raise_request_exception=False)
    workspace_id = str(ApiKey.objects.get().workspace_id)

    outage.begin()
    # The session and the user are read by middleware, before any view.
    page = browser.get("/dashboard/")
    _assert_unavailable(page.status_code, page.headers, page.json())
    admin = browser.get("/admin/")
    _assert_unavailable(admin.status_code, admin.headers, admin.json())
    older = compat.post("/api/schedule-sms", {"to": "+14155552671", "message": "hi",
                                              "workspaceId": workspace_id},
                        content_type="application/json",
                        HTTP_AUTHORIZATION=f"Bearer {api_key}")
    _assert_unavailable(older.status_code, older.headers, older.json())


def test_a_worker_retries_through_the_outage_and_sends_once(outage, live_worker):
    message = MessageFactory(status="queued")
    retried = threading.Event()

    def on_retry(**kwargs) -> None:
        retried.set()

    task_retry.connect(on_retry, weak=False)
    try:
        outage.begin()
        app.send_task(publishing.DELIVER_TASK, args=[[str(message.pk)]],
                      queue="sms")
        assert retried.wait(60), "the delivery task was not retried"
        outage.end()
        sent = wait_until(lambda: Message.objects.filter(pk=message.pk, status="sent").first(),
                          timeout=90)
    finally:
        task_retry.disconnect(on_retry)
    assert sent.attempts == 1
    assert DeliveryAttempt.objects.filter(message=message).count() == 1


def test_the_dispatcher_waits_and_reconnects(outage):
    message = MessageFactory(status="scheduled", due_at="2000-01-01T00:00:00Z",
                             enqueued_at=None)
    dispatcher = Dispatcher(stdout=io.StringIO(), stderr=io.StringIO())
    outage.begin()
    assert dispatcher._pass() == 0
    assert "dispatcher: database error, retrying" in dispatcher.stderr.getvalue()
    outage.end()
    assert dispatcher._pass() >= 1
    message.refresh_from_db()
    assert message.status == "queued"




def _terminate_this_threads_connection() -> None:
    """End this thread's database connection from the server's side (as a restart does),
    through a second connection."""
    pid = connection.connection.info.backend_pid
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()


def test_a_connection_idle_past_the_health_check_delay_is_checked_and_replaced(
        outage, settings):
    settings.DB_HEALTH_CHECK_IDLE_SECONDS = 0
    assert Message.objects.count() == 0
    _terminate_this_threads_connection()
    close_old_connections()  # what a request's (or a task's) start does
    assert Message.objects.count() == 0


def test_a_connection_used_moments_ago_is_not_checked(outage, settings):
    """No SELECT 1 before each request under load: a connection that died within the
    delay fails one request (503 in the API, as in an outage), and is replaced after it."""
    settings.DB_HEALTH_CHECK_IDLE_SECONDS = 3600
    assert Message.objects.count() == 0
    _terminate_this_threads_connection()
    close_old_connections()
    with pytest.raises(OperationalError):
        Message.objects.count()
    close_old_connections()  # the request's end
    assert Message.objects.count() == 0
