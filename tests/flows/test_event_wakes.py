"""Events wake the executions waiting for them set-wise: a batch costs the same few
statements whatever the number it wakes, each is woken once, a paused one keeps waiting,
and the goals and exits of the workspace are read once per batch, not per round."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from flows import services
from flows.engine import advance, deliver_events
from flows.models import Execution, Step
from tests.factories import ContactFactory
from tests.flows.test_engine_end_to_end import make_flow, start

pytestmark = pytest.mark.django_db

# Waits an hour for `paid`; the event's exit leads on to a light node, the timeout nowhere.
NODES = [{"id": "w", "type": "wait_for_event",
          "data": {"event": "paid", "timeout_seconds": 3600}},
         {"id": "thanks", "type": "update_contact", "data": {"attributes": {"paid": True}}}]
EDGES = [{"id": "a", "source": "w", "target": "thanks", "sourceHandle": "event"}]


def waiting(api, workspace, flow: dict, n: int) -> tuple[list, list[str]]:
    """Start the flow for n new contacts and walk each to its wait."""
    contacts = [ContactFactory(workspace=workspace) for _ in range(n)]
    ids = [start(api, flow["id"], contact) for contact in contacts]
    for execution_id in ids:
        assert advance(execution_id=execution_id) == "waiting"
    return contacts, ids


def wake(workspace, contacts: list, name: str = "paid") -> tuple[list[int], int]:
    """Deliver one event per contact; return how many each woke and the queries it took."""
    events = [(contact, name, {"n": index}) for index, contact in enumerate(contacts)]
    with CaptureQueriesContext(connection) as captured:
        woken = deliver_events(workspace_id=workspace.pk, events=events)
    return woken, len(captured.captured_queries)


def test_waking_twenty_costs_the_statements_waking_two_does(api, workspace):
    flow = make_flow(api, NODES, EDGES)
    few, _ = waiting(api, workspace, flow, 2)
    many, ids = waiting(api, workspace, flow, 20)

    woken_few, queries_few = wake(workspace, few)
    woken_many, queries_many = wake(workspace, many)

    assert woken_few == [1, 1] and woken_many == [1] * 20
    assert queries_many == queries_few <= 8
    for index, execution_id in enumerate(ids):
        execution = Execution.objects.get(pk=execution_id)
        assert (execution.status, execution.current_node, execution.waiting_event,
                execution.wake_at) == ("running", "thanks", "", None)
        step = Step.objects.get(execution=execution, node_id="w")
        assert step.status == "completed"
        assert (step.output["event"], step.output["properties"]) == ("paid", {"n": index})
        assert advance(execution_id=execution_id) == "completed"  # on through the event exit


def test_each_is_woken_once_and_a_paused_one_keeps_waiting(api, workspace):
    flow = make_flow(api, NODES, EDGES)
    contacts, ids = waiting(api, workspace, flow, 3)
    Execution.objects.filter(pk=ids[2]).update(paused_at=timezone.now(), paused_by="ops")
    other = ContactFactory(workspace=workspace)  # waits for nothing

    assert wake(workspace, [*contacts, other])[0] == [1, 1, 0, 0]
    assert wake(workspace, [*contacts, other])[0] == [0, 0, 0, 0]  # already on its way
    assert wake(workspace, contacts[:1], name="refunded")[0] == [0]
    assert list(Execution.objects.filter(pk__in=ids).order_by("status").values_list(
        "status", flat=True)) == ["running", "running", "waiting"]
    paused = Step.objects.get(execution_id=ids[2], node_id="w")
    assert paused.status == "waiting"


def test_the_goals_and_exits_are_read_once_for_a_batch(api, workspace):
    make_flow(api, NODES, EDGES, settings={"exit_on": [{"event": "unsubscribed"}]})
    contact = ContactFactory(workspace=workspace)
    # One contact's three events: three rounds, one after the other.
    events = [(contact, name, {}) for name in ("seen", "clicked", "seen")]
    with CaptureQueriesContext(connection) as captured:
        answers = services.events_ingest(workspace=workspace, events=events)
    assert len(answers) == 3
    reads = [q["sql"] for q in captured.captured_queries
             if "flows_flowversion" in q["sql"] and "?|" in q["sql"]]
    assert len(reads) == 1
