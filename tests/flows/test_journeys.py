"""Goals and exit conditions (README.md, "Goals and exits"): an exit ends every running or
waiting execution of the contact at once and cancels what it queued, so nothing is sent
after the event was accepted; a goal converts, within the attribution window too."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from flows.models import Execution, Step
from flows.nodes.checks import duration_seconds
from messaging.delivery.sending import messages_deliver
from messaging.models import Message, WebhookEndpoint
from tests.factories import ContactFactory, WorkspaceFactory
from tests.flows.conftest import create_flow, readme_journey
from tests.flows.test_engine_end_to_end import make_flow, start
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

CART = {
    "nodes": [
        {"id": "nudge", "type": "send_sms", "data": {"body": "Finish your checkout"}},
        {"id": "later", "type": "delay", "data": {"seconds": 3600}},
        {"id": "again", "type": "send_sms", "data": {"body": "Still there?"}},
    ],
    "edges": [{"id": "a", "source": "nudge", "target": "later"},
              {"id": "b", "source": "later", "target": "again"}],
}
SETTINGS = {"goal": {"event": "order.paid", "within": "1h"},
            "exit_on": [{"event": "unsubscribed"},
                        {"event": "support.ticket",
                         "filter": {"all": [{"field": "properties.severity", "op": "eq",
                                             "value": "high"}]}}]}


def post_event(api, contact, name, **properties) -> dict:
    response = api.post("/api/v1/events", {"name": name, "contact_id": str(contact.id),
                                           "properties": properties}, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def cart_flow(api, **settings) -> dict:
    return make_flow(api, CART["nodes"], CART["edges"], settings={**SETTINGS, **settings})


def test_a_goal_arriving_while_the_send_waits_in_line_ends_it_and_nothing_is_sent(
        api, workspace, providers, live_worker, dispatcher):
    endpoint = WebhookEndpoint.objects.create(
        workspace=workspace, url="https://hooks.example.com/e",
        events=["execution.exited", "execution.converted"])
    # The queue is paused: the worker claims the flow's text and holds it in line.
    assert api.post("/api/v1/queues/sms/pause", format="json").status_code == 200
    flow = cart_flow(api)
    contact = ContactFactory(workspace=workspace)
    execution_id = start(api, flow["id"], contact)
    wait_until(lambda: Message.objects.filter(contact=contact, status="scheduled",
                                              due_at__isnull=True).exists())

    answer = post_event(api, contact, "order.paid", total=42)

    assert (answer["exited"], answer["converted"]) == (1, 1)
    execution = Execution.objects.get(pk=execution_id)
    assert (execution.status, execution.exit_reason) == ("exited", "goal")
    assert execution.converted_at is not None and execution.converted_node == "nudge"
    message = Message.objects.get(contact=contact)
    assert message.status == "cancelled"
    assert Step.objects.get(execution=execution, node_id="nudge").status == "skipped"
    # The queue resumes: there is nothing left to send.
    resumed = api.post("/api/v1/queues/sms/resume", format="json").json()
    assert resumed["released"] == 0
    assert providers.requests == []
    detail = api.get(f"/api/v1/executions/{execution_id}").json()
    assert (detail["status"], detail["exit_reason"], detail["converted_node"]) == (
        "exited", "goal", "nudge")
    assert detail["time_to_convert_seconds"] > 0
    timeline = api.get(f"/api/v1/messages/{message.pk}/timeline").json()
    assert timeline["results"][-1]["detail"]["reason"] == "execution exited (goal)"
    kinds = sorted(m.content["payload"]["type"]
                   for m in Message.objects.filter(webhook_endpoint=endpoint))
    assert kinds == ["execution.converted", "execution.exited"]


def test_a_delivery_task_that_runs_after_the_exit_sends_nothing(api, workspace, providers):
    """The message is queued and its delivery task published; the event is accepted before
    a worker takes the task, and the claim then finds the message cancelled."""
    from flows.engine import advance

    flow = cart_flow(api)
    contact = ContactFactory(workspace=workspace)
    execution_id = start(api, flow["id"], contact)
    assert advance(execution_id=execution_id) == "waiting"
    message = Message.objects.get(contact=contact)
    assert message.status == "queued"

    assert post_event(api, contact, "unsubscribed")["exited"] == 1

    assert messages_deliver(message_ids=[str(message.pk)]) == {str(message.pk): "skipped"}
    message.refresh_from_db()
    assert message.status == "cancelled"
    assert providers.requests == []
    execution = Execution.objects.get(pk=execution_id)
    assert (execution.status, execution.exit_reason) == ("exited", "event:unsubscribed")
    assert execution.converted_at is None


def test_an_exit_filter_and_the_contact_and_workspace_bound_what_ends(
        api, workspace, providers, live_worker, dispatcher):
    flow = cart_flow(api)
    contact, neighbour = (ContactFactory(workspace=workspace) for _ in range(2))
    other = ContactFactory(workspace=WorkspaceFactory(), external_id=contact.external_id)
    mine, theirs = start(api, flow["id"], contact), start(api, flow["id"], neighbour)
    wait_until(lambda: Execution.objects.filter(status="waiting", current_node="later")
               .count() == 2)

    assert post_event(api, contact, "support.ticket", severity="low")["exited"] == 0
    assert Execution.objects.get(pk=mine).status == "waiting"
    assert post_event(api, contact, "support.ticket", severity="high")["exited"] == 1

    ended = Execution.objects.get(pk=mine)
    assert (ended.status, ended.exit_reason) == ("exited", "event:support.ticket")
    assert ended.wake_at is None and ended.completed_at is not None
    assert Step.objects.get(execution=ended, node_id="later").status == "skipped"
    assert Execution.objects.get(pk=theirs).status == "waiting"
    assert not Execution.objects.filter(contact=other).exists()
    # A second event finds nothing left to end.
    assert post_event(api, contact, "unsubscribed")["exited"] == 0


def test_a_goal_after_completion_counts_within_the_window_only(
        api, workspace, providers, live_worker, dispatcher):
    nodes = [{"id": "hello", "type": "send_sms", "data": {"body": "Welcome"}}]
    windowed = make_flow(api, nodes, [], settings={"goal": {"event": "order.paid",
                                                            "within": "7d"}})
    unwindowed = make_flow(api, nodes, [], settings={"goal": {"event": "order.paid"}})
    contact = ContactFactory(workspace=workspace)
    first, second = start(api, windowed["id"], contact), start(api, unwindowed["id"], contact)
    late = ContactFactory(workspace=workspace)
    expired = start(api, windowed["id"], late)
    wait_until(lambda: Execution.objects.filter(status="completed").count() == 3)
    Execution.objects.filter(pk=expired).update(
        completed_at=timezone.now() - timedelta(days=8))

    answer = post_event(api, contact, "order.paid")
    assert (answer["exited"], answer["converted"]) == (0, 1)
    assert post_event(api, late, "order.paid")["converted"] == 0

    converted = Execution.objects.get(pk=first)
    assert converted.status == "completed" and converted.exit_reason == ""
    assert converted.converted_at is not None and converted.converted_node == "hello"
    assert Execution.objects.get(pk=second).converted_at is None
    assert Execution.objects.get(pk=expired).converted_at is None
    # A second goal event does not count again.
    assert post_event(api, contact, "order.paid")["converted"] == 0


@pytest.mark.parametrize(("settings", "field", "words"), [
    ({"goal": {"filter": {"all": []}}}, "goal", "goal.event must name an event"),
    ({"goal": {"event": "paid", "within": "soon"}}, "goal", "goal.within must be"),
    ({"goal": {"event": "paid", "when": 1}}, "goal", "goal.when is not a setting"),
    ({"exit_on": {"event": "x"}}, "exit_on", "Must be a list"),
    ({"exit_on": [{"event": "x", "filter": {"all": [
        {"field": "trigger.x", "op": "eq", "value": 1}]}}]}, "exit_on", "exit_on[0].filter"),
])
def test_bad_goal_and_exit_settings_answer_400_naming_them(api, settings, field, words):
    response = api.post("/api/v1/flows", {"name": "f", "nodes": CART["nodes"],
                                          "edges": CART["edges"], "settings": settings},
                        format="json")
    assert response.status_code == 400
    body = response.json()
    assert words in str(body["error"]["fields"]["settings"][field]), body


def test_durations():
    assert [duration_seconds(v) for v in ("30s", "10m", "12h", "7d", 90)] == [
        30, 600, 43200, 604800, 90]
    assert [duration_seconds(v) for v in ("0m", "10x", "", True, -5, "400d")] == [
        None] * 6


def test_the_readmes_abandoned_cart_stops_at_the_purchase_and_counts_it(
        api, workspace, providers, live_worker, dispatcher):
    flow = create_flow(api, readme_journey("Abandoned cart"))
    assert api.post(f"/api/v1/flows/{flow['id']}/activate").status_code == 200
    buyer, leaver = (ContactFactory(workspace=workspace) for _ in range(2))
    for contact in (buyer, leaver):
        assert post_event(api, contact, "cart.abandoned", items=2)["started"] == 1
    wait_until(lambda: Execution.objects.filter(status="waiting", current_node="wait")
               .count() == 2)
    assert [r.json()["message"] for r in providers.requests] == [
        "You left 2 item(s) in your cart"] * 2

    assert post_event(api, buyer, "order.paid", total=30)["converted"] == 1
    assert post_event(api, leaver, "unsubscribed")["exited"] == 1

    bought = Execution.objects.get(contact=buyer)
    left = Execution.objects.get(contact=leaver)
    assert (bought.status, bought.exit_reason, bought.converted_node) == (
        "exited", "goal", "wait")
    assert (left.status, left.exit_reason, left.converted_at) == (
        "exited", "event:unsubscribed", None)
    assert not Execution.objects.filter(status__in=["running", "waiting"]).exists()
    assert len(providers.requests) == 2
