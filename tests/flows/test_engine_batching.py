"""Batches in the flow engine: a batch of advances in two commits, and the flow steps a
delivery task's messages finish resumed together with one advance task (read from the
real broker's queue lengths)."""
from __future__ import annotations

import pytest
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


def test_a_delivery_batchs_finished_messages_resume_their_steps_with_one_advance_task(
        workspace, django_assert_max_num_queries):
    flow = FlowFactory(workspace=workspace, publish=True, nodes=[
        {"id": "n1", "type": "send_sms", "data": {"body": "Hi"}},
        {"id": "n2", "type": "update_contact", "data": {"attributes": {"done": True}}}],
        edges=[{"id": "e", "source": "n1", "target": "n2"}])
    contacts = ContactFactory.create_batch(5, workspace=workspace)
    executions, _ = services.executions_start_many(flow=flow, contacts=contacts, data={},
                                                   source="api")
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
    from messaging import pipeline

    app.control.purge()
    with pytest.raises(RuntimeError), grouped():
        pipeline.message_create_many(messages=[pipeline.message_build(
            workspace=workspace, channel="sms", to="+14155552671", content={"body": "x"})])
        assert broker_depths()["sms"] == 0  # committed, held until the block ends
        raise RuntimeError("the rest of the task failed")
    assert broker_depths()["sms"] == 1
    app.control.purge()
