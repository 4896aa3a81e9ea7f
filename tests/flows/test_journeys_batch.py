"""Events in a batch (`POST /api/v1/events/batch`, README.md, "Goals and exits"): each event
does what `POST /api/v1/events` does, in order, with the same fence: a goal ends the
execution and cancels its queued send, and nothing is sent after the batch was accepted."""
from __future__ import annotations

import pytest

from flows.models import Execution, Step
from messaging.models import Message
from tests.factories import ContactFactory
from tests.flows.conftest import create_flow, readme_journey
from tests.flows.test_engine_end_to_end import start
from tests.flows.test_journeys import cart_flow
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def post_batch(api, events: list[dict]):
    return api.post("/api/v1/events/batch", {"events": events}, format="json")


def counts(answer: dict) -> list[tuple[int, int, int, int]]:
    return [(e["started"], e["woken"], e["exited"], e["converted"]) for e in answer["events"]]


def test_a_batch_of_goals_ends_every_waiting_execution_and_nothing_is_sent(
        api, workspace, providers, live_worker, dispatcher):
    # The queue is paused: the worker claims each flow's text and holds it in line.
    assert api.post("/api/v1/queues/sms/pause", format="json").status_code == 200
    flow = cart_flow(api)
    buyers = [ContactFactory(workspace=workspace) for _ in range(3)]
    browser = ContactFactory(workspace=workspace)
    executions = [start(api, flow["id"], contact) for contact in buyers]
    wait_until(lambda: Message.objects.filter(status="scheduled", due_at__isnull=True)
               .count() == 3)

    response = post_batch(api, [
        {"name": "order.paid", "contact_id": str(buyers[0].id)},
        {"name": "order.paid", "contact_external_id": buyers[1].external_id},
        {"name": "page.viewed", "contact_id": str(browser.id)},
        {"name": "order.paid", "contact_id": str(buyers[2].id), "properties": {"total": 9}},
    ])

    assert response.status_code == 202, response.json()
    answer = response.json()
    assert answer["count"] == 4
    assert counts(answer) == [(0, 0, 1, 1), (0, 0, 1, 1), (0, 0, 0, 0), (0, 0, 1, 1)]
    ended = Execution.objects.filter(pk__in=executions)
    assert {(e.status, e.exit_reason, e.converted_node) for e in ended} == {
        ("exited", "goal", "nudge")}
    assert set(Message.objects.values_list("status", flat=True)) == {"cancelled"}
    assert set(Step.objects.filter(node_id="nudge").values_list("status", flat=True)) == {
        "skipped"}
    # The queue resumes: there is nothing left to send.
    assert api.post("/api/v1/queues/sms/resume", format="json").json()["released"] == 0
    assert providers.requests == []


def test_a_contacts_events_in_one_batch_apply_in_order(api, workspace, providers):
    """The same contact twice: the second event applies after the first took effect, as
    two requests would; another contact's events in the other order do the opposite."""
    flow = create_flow(api, readme_journey("Abandoned cart"))
    assert api.post(f"/api/v1/flows/{flow['id']}/activate").status_code == 200
    buyer, early = (ContactFactory(workspace=workspace) for _ in range(2))

    response = post_batch(api, [
        {"name": "cart.abandoned", "contact_id": str(buyer.id), "properties": {"items": 2}},
        {"name": "order.paid", "contact_id": str(early.id)},
        {"name": "order.paid", "contact_id": str(buyer.id)},
        {"name": "cart.abandoned", "contact_id": str(early.id), "properties": {"items": 1}},
    ])

    assert response.status_code == 202, response.json()
    assert counts(response.json()) == [(1, 0, 0, 0), (0, 0, 0, 0), (0, 0, 1, 1),
                                       (1, 0, 0, 0)]
    bought = Execution.objects.get(contact=buyer)
    assert (bought.status, bought.exit_reason) == ("exited", "goal")
    assert Execution.objects.get(contact=early).status in ("running", "waiting")
    assert not Message.objects.filter(contact=buyer).exclude(status="cancelled").exists()


def test_a_bad_event_in_a_batch_answers_400_by_index_and_records_nothing(
        api, workspace, providers):
    flow = cart_flow(api)
    contact = ContactFactory(workspace=workspace)
    execution_id = start(api, flow["id"], contact)

    response = post_batch(api, [
        {"name": "order.paid", "contact_id": str(contact.id)},
        {"name": "order.paid", "contact_external_id": "nobody"},
        {"name": "order.paid"},
        {"contact_id": str(contact.id)},
    ])

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]["events"]
    assert set(fields) == {"1", "2", "3"}
    assert fields["1"] == {"contact_external_id": ["No such contact."]}
    assert fields["2"] == {"contact_id": ["Give contact_id or contact_external_id."]}
    assert "name" in fields["3"]
    assert Execution.objects.get(pk=execution_id).status != "exited"
    assert post_batch(api, []).status_code == 400
