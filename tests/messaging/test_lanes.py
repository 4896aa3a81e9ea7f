"""Delivery lanes and fair sharing (README.md, "Lanes"): which lane a message takes, what one
claim takes from a lane, and, with a live worker on the real broker, a transactional message
overtaking a marketing backlog and a second workspace served while the first has one."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.delivery import sending, sweeper
from messaging.delivery.creation import message_build, message_create_many
from messaging.models import Message
from tests.factories import WorkspaceFactory
from tests.support.locks import behind_a_lock
from tests.support.waiting import wait_until
from tests.support.worker import threaded_worker

PHONE = "+14155552671"


def http_sms(workspace, stub_server, **extra) -> None:
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}},
                          **extra}
    workspace.save()


def backlog(workspace, count: int, category: str = "marketing", **extra) -> list[Message]:
    """Create `count` SMS of the workspace through the one insert path (published after
    commit when the test's database commits)."""
    return message_create_many(messages=[
        message_build(workspace=workspace, channel="sms", to=PHONE, category=category,
                      content={"body": f"{category} {i}"}, **extra) for i in range(count)])


@contextmanager
def worker_started(queues: list[str] | None = None) -> Iterator[None]:
    """A live Celery worker (threads, like the live_worker fixture) started only now, so
    the tasks published before it are all waiting when it takes its first."""
    with threaded_worker(queues):
        yield


@pytest.fixture
def empty_broker(transactional_db) -> None:
    from config.celery import app

    app.control.purge()


# --- which lane -------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize(("category", "priority", "lane"), [
    ("transactional", "normal", "sms:priority"), ("transactional", "high", "sms:priority"),
    ("transactional", "low", "sms:bulk"), ("marketing", "normal", "sms:bulk"),
    ("marketing", "high", "sms:priority"), ("marketing", "low", "sms:bulk")])
def test_the_api_puts_a_message_in_the_lane_of_its_category_and_priority(
        api, category, priority, lane):
    response = api.post("/api/v1/messages", {"channel": "sms", "to": PHONE, "body": "hi",
                                             "category": category, "priority": priority},
                        format="json")
    assert response.status_code == 201, response.content
    assert Message.objects.get(id=response.json()["id"]).lane == lane


@pytest.mark.django_db
def test_flow_sends_follow_their_category(workspace):
    default = message_build(workspace=workspace, channel="email", to="a@example.com",
                            content={"subject": "s", "text": "t"}, source="flow")
    code = message_build(workspace=workspace, channel="sms", to=PHONE, content={"body": "1"},
                         source="flow", category="transactional")
    assert (default.category, default.lane) == ("marketing", "email:bulk")
    assert code.lane == "sms:priority"


# --- one claim --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_claim_gives_each_workspace_with_queued_messages_its_turn(workspace, stub_server):
    other = WorkspaceFactory()
    http_sms(workspace, stub_server)
    http_sms(other, stub_server)
    big = backlog(workspace, 120)
    small = backlog(other, 10)
    outcomes = sending.messages_deliver(message_ids=[str(big[0].pk)], lane="sms:bulk")
    sent = {key for key, outcome in outcomes.items() if outcome == "sent"}
    assert sent >= {str(m.pk) for m in small}  # all ten of the small one's, in turns
    assert len(sent) == 50  # a claim's batch
    # The big one's part is its oldest: it keeps its own order.
    assert sent - {str(m.pk) for m in small} == {str(m.pk) for m in big[:40]}


@pytest.mark.django_db
def test_a_workspace_weight_is_its_share_of_each_claim(workspace, stub_server):
    other = WorkspaceFactory()
    http_sms(workspace, stub_server, delivery_weight=3)
    http_sms(other, stub_server)
    heavy = {str(m.pk) for m in backlog(workspace, 100)}
    light = {str(m.pk) for m in backlog(other, 100)}
    outcomes = sending.messages_deliver(message_ids=[next(iter(light))], lane="sms:bulk")
    sent = {key for key, outcome in outcomes.items() if outcome == "sent"}
    assert (len(sent & heavy), len(sent & light)) == (37, 13)


@pytest.mark.django_db
def test_a_claim_takes_only_its_own_lane_and_only_due_messages(workspace, stub_server):
    http_sms(workspace, stub_server)
    [marketing] = backlog(workspace, 1)
    [code] = backlog(workspace, 1, category="transactional")
    [later] = backlog(workspace, 1, category="transactional")
    Message.objects.filter(pk=later.pk).update(due_at=timezone.now() + timedelta(seconds=30))
    outcomes = sending.messages_deliver(message_ids=[str(marketing.pk)], lane="sms:priority")
    assert outcomes[str(code.pk)] == "sent"
    assert outcomes[str(marketing.pk)] == "skipped"
    assert str(later.pk) not in outcomes
    statuses = dict(Message.objects.values_list("id", "status"))
    assert (statuses[marketing.pk], statuses[later.pk]) == ("queued", "queued")


# --- a live worker ----------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_a_transactional_message_overtakes_a_marketing_backlog(
        workspace, stub_server, empty_broker):
    http_sms(workspace, stub_server)
    marketing = backlog(workspace, 600)  # twelve tasks: three rounds of the four threads
    [code] = backlog(workspace, 1, category="transactional")  # published after all of them
    with worker_started():
        wait_until(lambda: not Message.objects.filter(status__in=["queued", "sending"])
                   .exists(), timeout=90)
    sent_at = dict(Message.objects.values_list("id", "sent_at"))
    before = sum(1 for m in marketing if sent_at[m.pk] < sent_at[code.pk])
    # First in line among the tasks waiting, it is claimed in the worker's first round
    # (at most four tasks of 50); in arrival order all 600 would go before it.
    assert before <= 4 * 50, before
    assert len(stub_server.requests) == 601  # each sent once


@pytest.mark.timeout(120)
def test_a_second_workspace_is_served_while_the_first_has_a_backlog(
        workspace, stub_server, empty_broker):
    other = WorkspaceFactory()
    http_sms(workspace, stub_server)
    http_sms(other, stub_server)
    first = backlog(workspace, 600)
    second = backlog(other, 60)  # published after the first's twelve tasks
    with worker_started():
        wait_until(lambda: not Message.objects.filter(status__in=["queued", "sending"])
                   .exists(), timeout=90)
    sent_at = dict(Message.objects.values_list("id", "sent_at"))
    last_of_second = max(sent_at[m.pk] for m in second)
    before = sum(1 for m in first if sent_at[m.pk] < last_of_second)
    # Each claim takes half its batch from each: the second's 60 are done within the first
    # round of claims; in arrival order all of the first's 600 would go before them.
    assert before <= 4 * 50, before
    assert len({r.header("Idempotency-Key") for r in stub_server.requests}) == 660
    assert len(stub_server.requests) == 660


@pytest.mark.timeout(60)
def test_a_priority_lane_queue_is_served_by_the_workers_kept_for_it(
        workspace, stub_server, empty_broker, settings):
    from config.celery import app

    settings.PRIORITY_LANE_QUEUE = "priority"
    http_sms(workspace, stub_server)
    [offer] = backlog(workspace, 1)
    [code] = backlog(workspace, 1, category="transactional")
    try:
        with worker_started(queues=["priority"]):  # a worker for that queue alone
            wait_until(lambda: Message.objects.get(pk=code.pk).status == "sent")
        assert Message.objects.get(pk=offer.pk).status == "queued"  # its task is on sms
        assert [r.json()["message"] for r in stub_server.requests] == ["transactional 0"]
    finally:
        app.control.purge()


@pytest.mark.timeout(60)
def test_the_sweeper_republishes_a_lane_message_whose_task_was_lost(
        workspace, stub_server, empty_broker, settings):
    from config.celery import app

    http_sms(workspace, stub_server)
    [lost] = backlog(workspace, 1, category="marketing")
    app.control.purge()  # the broker forgot its task
    settings.REQUEUE_AFTER_SECONDS = 0
    assert sweeper.sweep(now=timezone.now() + timedelta(seconds=1))["requeued"] == 1
    with worker_started():
        wait_until(lambda: Message.objects.get(pk=lost.pk).status == "sent")
    assert len(stub_server.requests) == 1


@pytest.mark.timeout(60)
def test_a_message_without_a_lane_is_claimed_by_its_id(workspace, stub_server, empty_broker):
    """A row written before lanes (a dead letter replayed) has none: its task names it."""
    from messaging.publishing import publish

    http_sms(workspace, stub_server)
    message = message_build(workspace=workspace, channel="sms", to=PHONE,
                            content={"body": "old"})
    message.lane = ""
    Message.objects.bulk_create([message])
    publish([message])
    with worker_started():
        wait_until(lambda: Message.objects.get(pk=message.pk).status == "sent")


# --- tasks waiting in the broker ---------------------------------------------------------------

@contextmanager
def tasks_published() -> Iterator[list[str]]:
    """Collect the routing keys of the delivery tasks published inside the block."""
    from celery.signals import before_task_publish

    from messaging.publishing import DELIVER_TASK

    published: list[str] = []

    def collect(sender: str = "", routing_key: str = "", **kwargs) -> None:
        if sender == DELIVER_TASK:
            published.append(routing_key)

    before_task_publish.connect(collect, weak=False)
    try:
        yield published
    finally:
        before_task_publish.disconnect(collect)


@pytest.mark.timeout(60)
def test_messages_queued_while_their_lane_task_waits_join_that_task(
        workspace, stub_server, empty_broker, monkeypatch):
    from messaging import publishing

    # The waiting mark outlives a slow machine's three inserts (it expires only in case the
    # task never starts, which is not what this test is about).
    monkeypatch.setattr(publishing, "WAITING_MS", 60_000)
    http_sms(workspace, stub_server)
    with tasks_published() as published:
        first = backlog(workspace, 1)
        more = backlog(workspace, 2)
        other_lane = backlog(workspace, 1, category="transactional")
    assert published == ["sms", "sms"]  # one for the bulk lane's three, one for priority
    with worker_started():
        wait_until(lambda: Message.objects.filter(status="sent").count() == 4)
    assert {r.json()["message"] for r in stub_server.requests} == {
        m.content["body"] for m in first + more + other_lane}


@pytest.mark.django_db(transaction=True)
def test_a_message_queued_after_its_lane_task_started_gets_a_task_of_its_own(
        workspace, stub_server, empty_broker):
    http_sms(workspace, stub_server)
    [first] = backlog(workspace, 1)
    sending.messages_deliver(message_ids=[str(first.pk)], lane="sms:bulk")  # its task ran
    with tasks_published() as published:
        backlog(workspace, 1)
    assert published == ["sms"]


@pytest.mark.timeout(60)
def test_a_full_claim_publishes_a_task_for_the_rows_it_left(workspace, stub_server,
                                                            empty_broker):
    http_sms(workspace, stub_server)
    [first] = backlog(workspace, 1)
    backlog(workspace, sending.CLAIM_BATCH)  # joins the waiting task: one row too many
    with tasks_published() as published:
        outcomes = sending.messages_deliver(message_ids=[str(first.pk)], lane="sms:bulk")
    assert list(outcomes.values()).count("sent") == sending.CLAIM_BATCH
    assert published == ["sms"]
    with worker_started():
        wait_until(lambda: Message.objects.filter(status="sent").count()
                   == sending.CLAIM_BATCH + 1)


@pytest.mark.timeout(60)
def test_a_claim_left_short_by_a_cancel_publishes_a_task_for_the_rows_it_left(
        workspace, stub_server, empty_broker):
    """One of the rows a claim picked is cancelled before the claim's update reaches it: the
    claim takes one row fewer than it picked, and is full all the same."""
    http_sms(workspace, stub_server)
    [first] = backlog(workspace, 1)
    rest = backlog(workspace, sending.CLAIM_BATCH)  # joins the waiting task: one row too many
    with tasks_published() as published:
        outcomes = behind_a_lock(
            f"UPDATE {Message._meta.db_table} SET status = 'cancelled' WHERE id = %s",
            [first.pk],
            lambda: sending.messages_deliver(message_ids=[str(first.pk)], lane="sms:bulk"))
    assert outcomes[str(first.pk)] == "skipped"
    assert list(outcomes.values()).count("sent") == sending.CLAIM_BATCH - 1
    assert Message.objects.get(pk=rest[-1].pk).status == "queued"
    assert published == ["sms"]  # a task for it


@pytest.mark.django_db
@pytest.mark.parametrize("weight", [0, 101, 2.5, "3", True])
def test_a_delivery_weight_outside_1_to_100_is_refused(api, weight):
    response = api.patch("/api/v1/workspace", {"settings": {"delivery_weight": weight}},
                         format="json")
    assert response.status_code == 400, response.content
    assert "settings.delivery_weight" in str(response.json())
