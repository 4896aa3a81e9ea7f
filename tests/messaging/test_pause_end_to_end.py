"""Nothing is lost across a pause, a worker restart and a resume: every message sent during
the pause goes out exactly once, in the order it was sent, at the rate limit."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest

from messaging.models import DeliveryAttempt, Message
from tests.support.waiting import wait_until
from tests.support.worker import threaded_worker

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def worker() -> Iterator[object]:
    """A Celery worker on the real broker, in this process, until the block ends."""
    with threaded_worker() as running:
        yield running


def test_messages_sent_while_paused_survive_a_worker_restart_and_go_out_once_in_order(
        api, workspace, stub_server, dispatcher):
    from config.celery import app

    app.control.purge()
    workspace.settings = {"rate_limits": {"sms": "4/s"},
                          "providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    assert api.post("/api/v1/queues/sms/pause", {"reason": "carrier outage"},
                    format="json").status_code == 200

    with worker():
        ids = [api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                              "body": f"m{i}"}, format="json").json()["id"]
               for i in range(5)]
        # The worker claims each one and holds it: waiting, with no timer and no attempt.
        wait_until(lambda: Message.objects.filter(pk__in=ids, status="scheduled",
                                                  due_at__isnull=True).count() == 5)
    assert stub_server.requests == []
    listed = api.get("/api/v1/messages", {"status": "scheduled"}).json()["results"]
    assert {m["status_reason"] for m in listed} == {"paused: sms (workspace)"}

    with worker():  # a new worker after the restart
        answer = api.post("/api/v1/queues/sms/resume", format="json").json()
        assert (answer["paused"], answer["released"]) == (False, 5)
        wait_until(lambda: Message.objects.filter(pk__in=ids, status="sent").count() == 5,
                   timeout=30)

    bodies = [request.json()["message"] for request in stub_server.requests]
    assert bodies == [f"m{i}" for i in range(5)]  # once each, in the order sent
    messages = sorted(Message.objects.filter(pk__in=ids), key=lambda m: ids.index(str(m.pk)))
    assert [m.attempts for m in messages] == [1] * 5
    assert DeliveryAttempt.objects.filter(message_id__in=ids).count() == 5
    # 4/s. What the limiter decided: the messages it deferred got slots 250 ms apart (less
    # the limiter's own 50 ms tolerance), and none reached the provider before its slot
    # (less the 50 ms a claim may run early).
    arrived = {request.json()["message"]: request.at for request in stub_server.requests}
    slotted = [m for m in messages if m.rate_slot_at is not None]
    slots = sorted(m.rate_slot_at for m in slotted)
    assert all(later - earlier >= timedelta(milliseconds=200)
               for earlier, later in zip(slots, slots[1:], strict=False)), slots
    assert all(arrived[m.content["body"]] >= m.rate_slot_at.timestamp() - 0.05
               for m in slotted)
    # And over the five: four intervals of 250 ms between the first call's permit and the
    # last's (less the early 50 ms, and up to 250 ms the first call may start late on a
    # loaded machine); the times calls ended are not compared, they move with the load.
    times = sorted(arrived.values())
    assert times[-1] - times[0] >= 0.7, times
