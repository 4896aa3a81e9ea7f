"""The sweeper repairs what the broker lost, with a live worker delivering the repairs."""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from core.models import DeadLetter
from messaging import publishing
from messaging.delivery import creation, sending, sweeper, timers
from messaging.models import DeliveryAttempt, Message, MessageStatus
from messaging.signals import message_finished
from tests.support.stub_server import Reply, StubServer
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

NOTHING = {"expired_leases": 0, "requeued": 0, "released": 0}


def use_http_sms(workspace, stub: StubServer) -> None:
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub.url}}}
    workspace.save()


def insert(workspace, body: str = "x", **fields: Any) -> Message:
    """Insert a message row as the pipeline builds it, without publishing any task."""
    message = creation.message_build(workspace=workspace, channel="sms", to="+14155552671",
                                     content={"body": body})
    for name, value in fields.items():
        setattr(message, name, value)
    Message.objects.bulk_create([message])
    return message


def stuck_in_sending(workspace, *, attempts: int = 1, **fields: Any) -> Message:
    """A message whose worker died mid-call: `sending`, lease expired, attempt still open."""
    now = timezone.now()
    message = insert(workspace, status=MessageStatus.SENDING, attempts=attempts,
                     provider="http", lease_until=now - timedelta(seconds=5),
                     enqueued_at=now - timedelta(minutes=3), **fields)
    DeliveryAttempt.objects.create(message=message, number=attempts, provider="http",
                                   started_at=now - timedelta(minutes=2))
    return message


def fetch(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)


def test_a_queued_message_whose_task_was_lost_is_republished_and_sent(
        workspace, stub_server, live_worker):
    use_http_sms(workspace, stub_server)
    message = insert(workspace, body="lost task",
                     enqueued_at=timezone.now() - timedelta(minutes=10))

    assert sweeper.sweep() == {"expired_leases": 0, "requeued": 1, "released": 0}

    request = stub_server.wait_for(1, path="/send-sms")[0]
    assert request.json()["message"] == "lost task"
    assert request.header("Idempotency-Key") == str(message.id)
    wait_until(lambda: fetch(message).status == "sent")
    assert fetch(message).attempts == 1
    assert fetch(message).possible_duplicate is False


def test_a_queued_row_without_enqueued_at_is_republished(workspace, stub_server, live_worker):
    use_http_sms(workspace, stub_server)
    message = insert(workspace, enqueued_at=None)
    assert sweeper.sweep()["requeued"] == 1
    wait_until(lambda: fetch(message).status == "sent")


def test_a_second_sweep_does_not_publish_the_same_rows_again(workspace, stub_server,
                                                             live_worker):
    use_http_sms(workspace, stub_server)
    old = timezone.now() - timedelta(minutes=10)
    messages = [insert(workspace, body=f"m{i}", enqueued_at=old) for i in range(3)]

    assert sweeper.sweep() == {"expired_leases": 0, "requeued": 3, "released": 0}
    assert sweeper.sweep() == NOTHING

    stub_server.wait_for(3, path="/send-sms")
    wait_until(lambda: all(fetch(m).status == "sent" for m in messages))
    assert sorted(r.json()["message"] for r in stub_server.requests) == ["m0", "m1", "m2"]


def test_an_expired_lease_is_recovered_and_sent_again_with_the_same_key(
        workspace, stub_server, live_worker):
    use_http_sms(workspace, stub_server)
    message = stuck_in_sending(workspace)

    assert sweeper.sweep() == {"expired_leases": 1, "requeued": 0, "released": 0}

    lost = DeliveryAttempt.objects.get(message=message, number=1)
    assert lost.outcome == "lost"
    assert lost.possible_duplicate is True
    assert lost.finished_at is not None
    assert "lease" in lost.error

    request = stub_server.wait_for(1, path="/send-sms")[0]
    assert request.header("Idempotency-Key") == str(message.id)
    wait_until(lambda: fetch(message).status == "sent")
    sent = fetch(message)
    assert sent.possible_duplicate is True
    assert sent.attempts == 2
    assert sent.lease_until is None
    outcomes = list(DeliveryAttempt.objects.filter(message=message).order_by("number")
                    .values_list("number", "outcome"))
    assert outcomes == [(1, "lost"), (2, "sent")]


def claimed_never_called(workspace, *, attempts: int = 1, **fields: Any) -> Message:
    """A message whose worker died after the claim, before its call started: `sending`,
    lease expired, no started attempt."""
    now = timezone.now()
    return insert(workspace, status=MessageStatus.SENDING, attempts=attempts,
                  lease_until=now - timedelta(seconds=5),
                  enqueued_at=now - timedelta(minutes=3), **fields)


def test_an_expired_lease_without_a_started_attempt_is_requeued_unflagged(
        workspace, stub_server, live_worker):
    use_http_sms(workspace, stub_server)
    stub_server.dedupe_header = "Idempotency-Key"
    message = claimed_never_called(workspace)

    assert sweeper.sweep() == {"expired_leases": 1, "requeued": 0, "released": 0}
    assert not DeliveryAttempt.objects.filter(message=message).exists()
    requeued = fetch(message)
    # The claim's attempt was never spent: it is given back, the loss counted apart.
    assert (requeued.attempts, requeued.lost_before_call) == (0, 1)

    wait_until(lambda: fetch(message).status == "sent")
    sent = fetch(message)
    assert (sent.possible_duplicate, sent.attempts) == (False, 1)
    assert list(DeliveryAttempt.objects.filter(message=message).values_list(
        "number", "outcome", "possible_duplicate")) == [(1, "sent", False)]
    assert (len(stub_server.requests), stub_server.deduplicated) == (1, 0)


def test_a_last_attempt_lost_before_its_call_is_not_spent(workspace):
    """A worker killed with a batch in hand three times must not fail the messages that
    were still waiting their turn (they never reached a provider)."""
    message = claimed_never_called(workspace, attempts=3, max_attempts=3)

    assert sweeper.sweep() == {"expired_leases": 1, "requeued": 0, "released": 0}

    requeued = fetch(message)
    assert (requeued.status, requeued.attempts, requeued.lost_before_call) == (
        "queued", 2, 1)
    assert not requeued.possible_duplicate


def test_a_message_lost_before_its_call_max_attempts_times_fails_unflagged(workspace):
    """A message whose worker dies before every call (one that kills its worker) stops
    after max_attempts such losses instead of going round for ever."""
    message = claimed_never_called(workspace, attempts=1, max_attempts=3, lost_before_call=3)

    assert sweeper.sweep() == {"expired_leases": 1, "requeued": 0, "released": 0}

    failed = fetch(message)
    assert (failed.status, failed.error_code, failed.possible_duplicate) == (
        "failed", "lost", False)
    assert "before the provider call 3 times" in failed.last_error
    assert not DeliveryAttempt.objects.filter(message=message).exists()


def test_a_start_the_sweeper_took_back_makes_no_call(workspace, stub_server):
    """The started attempt is written fenced on the claim: once the sweeper has requeued
    the message, the worker that claimed it must not call the provider."""
    use_http_sms(workspace, stub_server)
    message = insert(workspace, status=MessageStatus.SENDING, attempts=1,
                     lease_until=timezone.now() + timedelta(seconds=60))
    loaded = Message.objects.select_related("workspace").get(pk=message.pk)
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.QUEUED)  # taken back

    assert sending._send_and_record([loaded], "task", timezone.now()) == {
        str(message.pk): "stale"}
    assert stub_server.requests == []
    assert not DeliveryAttempt.objects.filter(message=message).exists()


def test_a_worker_outliving_its_lease_is_superseded_and_both_calls_share_the_key(
        workspace, stub_server, live_worker, settings):
    """The first call hangs past the lease; the sweeper requeues, a second call succeeds, and
    the first call's late answer does not overwrite the message."""
    settings.DELIVERY_LEASE_SECONDS = 1
    use_http_sms(workspace, stub_server)
    stub_server.script("/send-sms", Reply(200, {"id": "slow"}, delay=4))
    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "slow provider"})

    stub_server.wait_for(1, path="/send-sms")
    wait_until(lambda: (m := fetch(message)).status == "sending"
               and m.lease_until < timezone.now())
    assert sweeper.sweep() == {"expired_leases": 1, "requeued": 0, "released": 0}
    assert DeliveryAttempt.objects.get(message=message, number=1).outcome == "lost"

    first, second = stub_server.wait_for(2, path="/send-sms")
    assert first.header("Idempotency-Key") == second.header("Idempotency-Key") == str(
        message.id)
    wait_until(lambda: fetch(message).status == "sent")
    assert fetch(message).attempts == 2

    # The first call answers after 4 s; its outcome is fenced off by the attempt number.
    wait_until(lambda: DeliveryAttempt.objects.get(message=message, number=1).status_code,
               timeout=10)
    final = fetch(message)
    assert (final.status, final.attempts, final.possible_duplicate) == ("sent", 2, True)
    assert final.provider_message_id == ""  # the second call's answer had no id


def test_a_lost_lease_on_the_last_attempt_fails_into_the_dead_letters(workspace,
                                                                      stub_server,
                                                                      live_worker):
    use_http_sms(workspace, stub_server)
    message = stuck_in_sending(workspace, attempts=3, max_attempts=3)

    assert sweeper.sweep() == {"expired_leases": 1, "requeued": 0, "released": 0}

    failed = fetch(message)
    assert failed.status == "failed"
    assert failed.failed_at is not None and failed.lease_until is None
    assert failed.error_code == "lost"
    attempt = DeliveryAttempt.objects.get(message=message, number=3)
    assert (attempt.outcome, attempt.possible_duplicate) == ("lost", True)
    letter = DeadLetter.objects.get(source_id=str(message.id))
    assert (letter.kind, letter.channel, letter.attempts, letter.error_code) == (
        "message", "sms", 3, "lost")
    assert letter.payload["message_id"] == str(message.id)
    assert sweeper.sweep() == NOTHING
    assert stub_server.requests == []


def test_a_message_failed_by_a_lost_last_attempt_is_flagged_possible_duplicate(workspace):
    message = stuck_in_sending(workspace, attempts=3, max_attempts=3)
    sweeper.sweep()
    assert fetch(message).status == "failed"
    assert fetch(message).possible_duplicate is True


def test_a_message_failed_by_the_sweeper_sends_message_finished(workspace):
    message = stuck_in_sending(workspace, attempts=3, max_attempts=3)
    finished: list[Any] = []

    def receiver(sender: Any, message_id: Any, **kwargs: Any) -> None:
        finished.append(message_id)

    message_finished.connect(receiver, weak=False)
    try:
        sweeper.sweep()
    finally:
        message_finished.disconnect(receiver)
    assert fetch(message).status == "failed"
    assert [str(m) for m in finished] == [str(message.id)]


def test_fresh_queued_rows_and_live_leases_are_left_alone(workspace):
    now = timezone.now()
    fresh = insert(workspace)
    recent = insert(workspace, enqueued_at=now - timedelta(seconds=60))
    leased = insert(workspace, status=MessageStatus.SENDING, attempts=1,
                    lease_until=now + timedelta(seconds=60),
                    enqueued_at=now - timedelta(minutes=10))
    DeliveryAttempt.objects.create(message=leased, number=1, started_at=now)
    scheduled = insert(workspace, status=MessageStatus.SCHEDULED, enqueued_at=None,
                       due_at=now - timedelta(minutes=10))
    before = {m.pk: (fetch(m).status, fetch(m).enqueued_at, fetch(m).updated_at)
              for m in (fresh, recent, leased, scheduled)}

    assert sweeper.sweep() == NOTHING

    after = {m.pk: (fetch(m).status, fetch(m).enqueued_at, fetch(m).updated_at)
             for m in (fresh, recent, leased, scheduled)}
    assert after == before
    assert DeliveryAttempt.objects.get(message=leased).finished_at is None


def test_finished_messages_are_never_swept(workspace):
    old = timezone.now() - timedelta(minutes=10)
    for status in (MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.CANCELLED,
                   MessageStatus.DELIVERED, MessageStatus.RETRYING):
        insert(workspace, status=status, enqueued_at=old, lease_until=old)
    assert sweeper.sweep() == NOTHING


def test_dispatch_due_queues_an_overdue_timer_and_the_worker_sends_it(workspace, stub_server,
                                                                      live_worker):
    use_http_sms(workspace, stub_server)
    now = timezone.now()
    overdue = insert(workspace, body="overdue", status=MessageStatus.SCHEDULED,
                     enqueued_at=None, scheduled_for=now - timedelta(seconds=30),
                     due_at=now - timedelta(seconds=30))
    later = insert(workspace, body="later", status=MessageStatus.SCHEDULED, enqueued_at=None,
                   scheduled_for=now + timedelta(hours=1), due_at=now + timedelta(hours=1))

    assert timers.dispatch_due() == 1
    assert fetch(overdue).enqueued_at is not None

    wait_until(lambda: fetch(overdue).status == "sent")
    assert [r.json()["message"] for r in stub_server.requests] == ["overdue"]
    assert fetch(later).status == "scheduled"
    assert timers.dispatch_due() == 0
    assert sweeper.sweep() == NOTHING


def test_publish_returns_how_many_tasks_it_published(workspace, stub_server, live_worker):
    use_http_sms(workspace, stub_server)
    messages = [insert(workspace, body=f"p{i}") for i in range(2)]
    assert publishing.publish(messages) == 2
    stub_server.wait_for(2, path="/send-sms")
    wait_until(lambda: all(fetch(m).status == "sent" for m in messages))
    assert publishing.publish(messages) == 2  # duplicates are published but find nothing
    time.sleep(0.5)
    assert sweeper.sweep() == NOTHING
    assert len(stub_server.requests) == 2
