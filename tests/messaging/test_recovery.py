"""Zero loss and no duplicates when workers die and the broker forgets (real processes)."""
from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from messaging.delivery import creation, sweeper
from messaging.models import DeliveryAttempt, Message
from tests.support import processes
from tests.support.stub_server import Reply
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def sms_workspace(workspace, stub_server):
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    return workspace


@pytest.fixture
def worker_processes():
    started = []

    def start(**env):
        process = processes.start_worker(**env)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            processes.kill(process, signal.SIGTERM)


def test_a_worker_killed_during_the_provider_call_sends_once_after_recovery(
        workspace, stub_server, worker_processes, dispatcher):
    sms_workspace(workspace, stub_server)
    stub_server.dedupe_header = "Idempotency-Key"
    stub_server.script("/send-sms", Reply(200, {"id": "p-1"}, delay=30))
    worker = worker_processes(DELIVERY_LEASE_SECONDS="2")
    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "once"})
    stub_server.wait_for(1, timeout=30)  # the provider has the request: now kill the worker
    processes.kill(worker)
    assert Message.objects.get(pk=message.pk).status == "sending"
    worker_processes()
    time.sleep(2.5)  # let the lease expire
    assert sweeper.sweep()["expired_leases"] == 1
    wait_until(lambda: Message.objects.get(pk=message.pk).status == "sent", timeout=60)
    message.refresh_from_db()
    keys = {r.header("Idempotency-Key") for r in stub_server.requests}
    assert keys == {str(message.id)}
    assert len(stub_server.requests) == 1 and stub_server.deduplicated == 1
    assert message.possible_duplicate is True
    outcomes = list(DeliveryAttempt.objects.filter(message=message)
                    .order_by("number").values_list("outcome", "possible_duplicate"))
    assert outcomes == [("lost", True), ("sent", False)]


def test_a_worker_killed_mid_batch_repeats_only_the_call_in_flight(
        workspace, stub_server, worker_processes, dispatcher):
    """Outcomes are recorded as their calls finish, not at the end of the batch: when the
    worker dies while one call of a batch hangs, the others are already `sent`, and only
    the hanging one is sent again after its lease."""
    sms_workspace(workspace, stub_server)
    stub_server.dedupe_header = "Idempotency-Key"
    stub_server.script("/send-sms", Reply(200, {"id": "slow"}, delay=60))
    worker = worker_processes(DELIVERY_LEASE_SECONDS="2")
    messages = creation.message_create_many(messages=[creation.message_build(
        workspace=workspace, channel="sms", to="+14155552671", content={"body": f"b{i}"})
        for i in range(5)])  # one task: one batch
    stub_server.wait_for(5, timeout=30)
    statuses = Message.objects.filter(pk__in=[m.pk for m in messages]).values_list
    wait_until(lambda: sorted(statuses("status", flat=True)) == ["sending"] + ["sent"] * 4,
               timeout=20)
    processes.kill(worker)
    [hanging] = Message.objects.filter(pk__in=[m.pk for m in messages], status="sending")
    worker_processes()
    time.sleep(2.5)  # let the lease expire
    assert sweeper.sweep()["expired_leases"] == 1
    wait_until(lambda: set(statuses("status", flat=True)) == {"sent"}, timeout=60)
    assert (len(stub_server.requests), stub_server.deduplicated) == (5, 1)
    flagged = set(Message.objects.filter(pk__in=[m.pk for m in messages],
                                         possible_duplicate=True).values_list("pk", flat=True))
    assert flagged == {hanging.pk}
    assert list(DeliveryAttempt.objects.filter(message=hanging).order_by("number")
                .values_list("outcome", "possible_duplicate")) == [("lost", True),
                                                                   ("sent", False)]


def test_a_message_due_in_two_hours_survives_a_redis_flush_and_a_worker_restart(
        workspace, stub_server, worker_processes, dispatcher):
    sms_workspace(workspace, stub_server)
    worker = worker_processes()
    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "later"},
                                      send_at=timezone.now() + timedelta(hours=2))
    # Its own database (broker, counters): what a FLUSHALL does to the service, without
    # wiping other databases of a shared Redis.
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    processes.kill(worker)
    worker_processes()
    message.refresh_from_db()
    assert message.status == "scheduled"
    # Two hours pass (the timer is a database column, so moving it is moving time).
    Message.objects.filter(pk=message.pk).update(due_at=timezone.now())
    wait_until(lambda: Message.objects.get(pk=message.pk).status == "sent", timeout=60)
    assert [r.json()["message"] for r in stub_server.requests] == ["later"]


def test_queued_messages_lost_by_a_redis_flush_are_republished_by_the_sweeper(
        workspace, stub_server, worker_processes, settings):
    sms_workspace(workspace, stub_server)
    messages = [creation.message_build(workspace=workspace, channel="sms", to="+14155552671",
                                       content={"body": f"m{i}"}) for i in range(20)]
    creation.message_create_many(messages=messages)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # every task is gone
    worker_processes()
    time.sleep(1)
    assert stub_server.requests == []
    settings.REQUEUE_AFTER_SECONDS = 0
    assert sweeper.sweep()["requeued"] == 20
    stub_server.wait_for(20, timeout=60)
    time.sleep(0.5)
    assert sorted(r.json()["message"] for r in stub_server.requests) == sorted(
        f"m{i}" for i in range(20))
