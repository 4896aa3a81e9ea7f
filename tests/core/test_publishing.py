"""Publishes handed to the process's publishing thread (core.publishing.in_background)."""
from __future__ import annotations

import threading

import pytest

from config.celery import app
from core.publishing import Publisher, background_flush, hold, in_background, publisher
from messaging.models import Message, MessageStatus
from monitoring.selectors import broker_depths


class Recorder:
    """A send function that records its calls; `gate`, once set up, holds each call until
    the test opens it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list]] = []
        self.started = threading.Event()
        self.gate: threading.Event | None = None

    def __call__(self, items: list) -> None:
        self.calls.append((threading.current_thread().name, list(items)))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(30)


def test_outside_in_background_the_caller_sends_itself():
    assert hold(Recorder(), [1], background=True) is False


def test_only_publishers_that_allow_it_are_sent_in_the_background():
    with in_background():
        assert hold(Recorder(), [1]) is False


def test_inside_in_background_the_publishing_thread_sends():
    send = Recorder()
    with in_background():
        assert hold(send, ["a"], background=True) is True
    assert background_flush(30)
    assert send.calls == [("publisher", ["a"])]


def test_what_gathers_while_the_thread_is_sending_goes_out_in_one_call():
    send, blocker = Recorder(), Recorder()
    blocker.gate = threading.Event()
    worker = Publisher()
    worker.submit(blocker, ["first"])
    assert blocker.started.wait(30)
    worker.submit(send, ["a"])
    worker.submit(send, ["b", "c"])
    blocker.gate.set()
    assert worker.flush(30)
    assert send.calls == [("publisher", ["a", "b", "c"])]
    worker.stop()


def test_a_failing_send_does_not_stop_the_thread():
    send = Recorder()

    def broken(items: list) -> None:
        raise RuntimeError("broker down")

    worker = Publisher()
    worker.submit(broken, [1])
    assert worker.flush(30)
    worker.submit(send, [2])
    assert worker.flush(30)
    assert send.calls == [("publisher", [2])]
    worker.stop()


def test_stopping_sends_what_is_pending_first():
    send, blocker = Recorder(), Recorder()
    blocker.gate = threading.Event()
    worker = Publisher()
    worker.submit(blocker, [0])
    assert blocker.started.wait(30)
    worker.submit(send, [1])
    blocker.gate.set()
    worker.stop()
    assert send.calls == [("publisher", [1])]


@pytest.mark.django_db(transaction=True)
def test_a_single_post_is_committed_before_its_task_is_published(api):
    app.control.purge()
    blocker = Recorder()
    blocker.gate = threading.Event()
    publisher().submit(blocker, [])  # keep the publishing thread busy
    assert blocker.started.wait(30)
    try:
        response = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                                  "body": "hi"}, format="json")
        assert response.status_code == 201
        assert Message.objects.get(pk=response.json()["id"]).status == MessageStatus.QUEUED
        assert broker_depths()["sms"] == 0  # answered without waiting on the broker
    finally:
        blocker.gate.set()
    assert background_flush(30)
    assert broker_depths()["sms"] == 1
    app.control.purge()


@pytest.mark.django_db(transaction=True)
def test_a_batch_posted_together_is_published_in_tasks_of_fifty(api):
    app.control.purge()
    messages = [{"channel": "sms", "to": "+14155552671", "body": f"hi {i}"} for i in range(120)]
    response = api.post("/api/v1/messages/batch", {"messages": messages}, format="json")
    assert response.status_code == 201
    assert background_flush(30)
    assert broker_depths()["sms"] == 3
    app.control.purge()


@pytest.mark.django_db(transaction=True)
def test_publishing_a_task_sends_no_task_sent_event(workspace):
    import redis
    from django.conf import settings

    from messaging.delivery import creation

    # kombu's redis+socket:// (the embedded Redis of a fresh machine) is redis-py's unix://.
    broker = settings.CELERY_BROKER_URL.replace("redis+socket://", "unix://", 1)
    client = redis.Redis.from_url(broker)
    listener = client.pubsub(ignore_subscribe_messages=True)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    listener.psubscribe(f"/{db}.celeryev/*")  # Celery's events on this broker
    listener.subscribe("publishing-test-end")
    app.control.purge()
    creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                            content={"body": "hi"})
    assert broker_depths()["sms"] == 1
    client.publish("publishing-test-end", b"end")  # after every publish of the task
    seen: list[bytes] = []
    while not seen or seen[-1] != b"publishing-test-end":
        event = listener.get_message(timeout=5)
        if event is not None:
            seen.append(event["channel"])
    listener.close()
    assert not any(b"task.sent" in channel for channel in seen), seen
    app.control.purge()
