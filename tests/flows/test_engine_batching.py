"""Batches in the flow engine: a batch of advances in two commits, and the flow steps a
delivery task's messages finish resumed together with one advance task (read from the
real broker's queue lengths)."""
from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from config.celery import app
from core.publishing import grouped
from flows import services
from flows.models import Execution, Step
from flows.tasks import advance_executions
from messaging.models import Message
from messaging.signals import message_finished
from monitoring.selectors import broker_depths
from tests.factories import ContactFactory, FlowFactory

pytestmark = pytest.mark.django_db(transaction=True)


SEND_THEN_UPDATE = ([{"id": "n1", "type": "send_sms", "data": {"body": "Hi"}},
                     {"id": "n2", "type": "update_contact",
                      "data": {"attributes": {"done": True}}}],
                    [{"id": "e", "source": "n1", "target": "n2"}])


def started(workspace, count: int, flow_nodes: list, edges: list) -> list[Execution]:
    """Start a published flow for `count` new contacts; return the executions."""
    flow = FlowFactory(workspace=workspace, publish=True, nodes=flow_nodes, edges=edges)
    contacts = ContactFactory.create_batch(count, workspace=workspace)
    executions, _ = services.executions_start_many(flow=flow, contacts=contacts, data={},
                                                   source="api")
    return executions


def test_a_delivery_batchs_finished_messages_resume_their_steps_with_one_advance_task(
        workspace, django_assert_max_num_queries):
    executions = started(workspace, 5, *SEND_THEN_UPDATE)
    with django_assert_max_num_queries(60):  # ~7 a walk, two commits for the five
        results = advance_executions([str(e.pk) for e in executions])
    assert set(results.values()) == {"waiting"}
    assert not Execution.objects.filter(lease_until__isnull=False).exists()
    messages = list(Message.objects.filter(workspace=workspace, status="queued"))
    assert len(messages) == 5
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(
        status="sent", sent_at=timezone.now())
    app.control.purge()
    with grouped():  # what a delivery task runs in
        for message in messages:
            message_finished.send(sender=None, message_id=message.pk, source="flow")
        assert Step.objects.filter(node_id="n1", status="completed").count() == 0  # held
    assert Step.objects.filter(node_id="n1", status="completed").count() == 5
    assert set(Execution.objects.values_list("current_node", flat=True)) == {"n2"}
    assert broker_depths()["flows"] == 1  # the five advances share one task
    app.control.purge()


def test_publishes_held_by_a_block_that_fails_still_go_out(workspace):
    from messaging.delivery import creation

    app.control.purge()
    with pytest.raises(RuntimeError), grouped():
        creation.message_create_many(messages=[creation.message_build(
            workspace=workspace, channel="sms", to="+14155552671", content={"body": "x"})])
        assert broker_depths()["sms"] == 0  # committed, held until the block ends
        raise RuntimeError("the rest of the task failed")
    assert broker_depths()["sms"] == 1
    app.control.purge()


def test_a_batch_of_walks_shares_its_writes(workspace, django_assert_max_num_queries):
    """Twenty walks to a send: the claim, two reads, the fenced moves, and for all of them
    one INSERT of their messages, one of their steps, one locking read and one UPDATE of
    their contacts' attributes."""
    executions = started(workspace, 20, [
        {"id": "n1", "type": "update_contact", "data": {"attributes": {"seen": True}}},
        {"id": "n2", "type": "send_sms", "data": {"body": "Hi"}}],
        [{"id": "e", "source": "n1", "target": "n2"}])
    app.control.purge()
    # PostgreSQL claims and moves all twenty in one statement each; SQLite one per walk.
    per_batch = 1 if connection.vendor == "postgresql" else 20
    with django_assert_max_num_queries(13 + 2 * per_batch):
        results = advance_executions([str(e.pk) for e in executions])
    assert set(results.values()) == {"waiting"}
    assert Step.objects.filter(node_id="n2", status="waiting").count() == 20
    assert Message.objects.filter(workspace=workspace, status="queued").count() == 20
    assert broker_depths()["sms"] == 1  # the twenty sends share one delivery task
    app.control.purge()


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="adds a CHECK constraint to a live table")
def test_a_walk_whose_write_fails_costs_the_others_nothing(workspace):
    """The batch's shared writes roll back and each walk is written alone: the one whose
    step the database refuses is left where it was, with its lease freed; the rest move."""
    flow = FlowFactory(workspace=workspace, publish=True, nodes=[
        {"id": "n1", "type": "condition", "data": {"rules": {"all": [
            {"field": "contact.attributes.vip", "op": "eq", "value": True}]}}},
        {"id": "refused", "type": "end"}, {"id": "fine", "type": "end"}],
        edges=[{"id": "a", "source": "n1", "target": "refused", "sourceHandle": "true"},
               {"id": "b", "source": "n1", "target": "fine", "sourceHandle": "false"}])
    vip = ContactFactory(workspace=workspace, attributes={"vip": True})
    others = ContactFactory.create_batch(3, workspace=workspace, attributes={"vip": False})
    executions, _ = services.executions_start_many(flow=flow, contacts=[vip, *others],
                                                   data={}, source="api")
    with connection.cursor() as cursor:  # the database refuses this one step
        cursor.execute("ALTER TABLE flows_step ADD CONSTRAINT refuse_node "
                       "CHECK (node_id <> 'refused')")
    try:
        results = advance_executions([str(e.pk) for e in executions])
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE flows_step DROP CONSTRAINT refuse_node")
    by_contact = {e.contact_id: str(e.pk) for e in executions}
    assert results[by_contact[vip.pk]] == "stale"
    assert [results[by_contact[c.pk]] for c in others] == ["completed"] * 3
    stuck = Execution.objects.get(pk=by_contact[vip.pk])
    assert (stuck.status, stuck.current_node, stuck.lease_until) == ("running", "n1", None)
    assert not Step.objects.filter(execution=stuck).exists()
    assert Step.objects.filter(node_id="fine", status="completed").count() == 3


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="the steps resume together on PostgreSQL only")
def test_steps_resumed_together_roll_back_together_when_one_execution_moved(workspace):
    """The batch read its executions at the send step, but one has moved on since (another
    path resumed it): nothing of the batch is written, and every step is left to the
    one-by-one path, which sees the move."""
    from flows import engine

    executions = started(workspace, 3, *SEND_THEN_UPDATE)
    advance_executions([str(e.pk) for e in executions])
    app.control.purge()
    steps = list(Step.objects.filter(node_id="n1", status="waiting"))
    Message.objects.filter(workspace=workspace).update(status="sent", sent_at=timezone.now())
    messages = Message.objects.in_bulk([s.message_id for s in steps])
    loaded = Execution.objects.in_bulk([s.execution_id for s in steps])
    Execution.objects.filter(pk=steps[0].execution_id).update(current_node="n2")
    resumes = {s.pk: (engine._message_output(messages[s.message_id]), None) for s in steps}
    assert engine._resume_together(steps, loaded, resumes) == steps
    assert Step.objects.filter(node_id="n1", status="waiting").count() == 3
    assert Execution.objects.filter(current_node="n1", status="waiting").count() == 2
    assert broker_depths()["flows"] == 0


def test_steps_resumed_together_end_their_executions_or_move_them_on(workspace):
    """A send step as the last node ends its execution; one with a node after it moves on
    and is advanced: each step's output carries its message."""
    executions = started(workspace, 4, [
        {"id": "n1", "type": "send_sms", "data": {"body": "Hi"}}], [])
    advance_executions([str(e.pk) for e in executions])
    messages = list(Message.objects.filter(workspace=workspace))
    Message.objects.filter(workspace=workspace).update(status="sent", sent_at=timezone.now())
    app.control.purge()
    with grouped():
        for message in messages:
            message_finished.send(sender=None, message_id=message.pk, source="flow")
    assert set(Execution.objects.values_list("status", "current_node")) == {("completed", "")}
    assert all(e.completed_at for e in Execution.objects.all())
    outputs = {s.output["message_id"]: s.output["status"] for s in Step.objects.all()}
    assert outputs == {str(m.pk): "sent" for m in messages}
    assert broker_depths()["flows"] == 0
