"""Flow events end to end: execution.started/completed/failed reach a subscribed endpoint."""
from __future__ import annotations

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from flows.models import ScheduleRun
from flows.schedules import _run_close
from messaging.models import Message, WebhookEndpoint
from tests.factories import ContactFactory, FlowFactory, FlowScheduleFactory
from tests.flows.test_engine_end_to_end import finished, make_flow, start
from tests.support.stub_server import Reply
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

ONE_SMS = {"nodes": [{"id": "n1", "type": "send_sms", "data": {"body": "Hi"}}], "edges": []}


def subscribe(api, url: str, types: list[str]) -> dict:
    response = api.post("/api/v1/webhook-endpoints", {"url": url, "events": types},
                        format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def received(stub, count: int) -> list[dict]:
    return [r.json() for r in stub.wait_for(count, path="/events")]


def test_a_completed_execution_emits_started_then_completed(
        api, workspace, providers, live_worker, dispatcher):
    endpoint = subscribe(api, f"{providers.url}/events", ["execution.started",
                                                          "execution.completed"])
    flow = make_flow(api, ONE_SMS["nodes"], ONE_SMS["edges"])
    execution_id = start(api, flow["id"], ContactFactory(workspace=workspace))
    wait_until(lambda: finished(execution_id), timeout=30)

    bodies = received(providers, 2)
    assert [(b["type"], b["data"]["id"]) for b in bodies] == [
        ("execution.started", execution_id), ("execution.completed", execution_id)]
    assert bodies[1]["data"]["status"] == "completed"
    request = providers.wait_for(2, path="/events")[1]
    Webhook(endpoint["secret"]).verify(request.body, {
        name: request.header(name) or "" for name in
        ("webhook-id", "webhook-timestamp", "webhook-signature")})


def test_a_failed_execution_emits_failed_and_its_dead_letters(
        api, workspace, providers, live_worker, dispatcher):
    subscribe(api, f"{providers.url}/events", ["execution.failed", "dead_letter.created"])
    providers.script("/send-sms", Reply(400, {"error": "invalid number"}))
    flow = make_flow(api, ONE_SMS["nodes"], ONE_SMS["edges"])
    execution_id = start(api, flow["id"], ContactFactory(workspace=workspace))
    wait_until(lambda: finished(execution_id), timeout=30)

    wait_until(lambda: Message.objects.filter(source="event").count() >= 3)
    kinds = sorted((b["type"], b["data"].get("kind", "")) for b in received(providers, 3))
    assert kinds == [("dead_letter.created", "message"), ("dead_letter.created", "step"),
                     ("execution.failed", "")]


def test_a_failed_schedule_run_emits_schedule_run_failed(workspace):
    endpoint = WebhookEndpoint.objects.create(workspace=workspace, url="https://h.example.com",
                                              events=["schedule.run_failed"])
    schedule = FlowScheduleFactory(workspace=workspace,
                                   flow=FlowFactory(workspace=workspace))
    run = ScheduleRun.objects.create(schedule=schedule, occurrence_at=timezone.now(),
                                     fired_at=timezone.now())
    assert _run_close(run, ScheduleRun.Status.FAILED, "no audience", now=timezone.now())

    [delivery] = Message.objects.filter(webhook_endpoint=endpoint)
    payload = delivery.content["payload"]
    assert payload["type"] == "schedule.run_failed"
    assert (payload["data"]["status"], payload["data"]["error"]) == ("failed", "no audience")
    assert payload["data"]["schedule_id"] == str(schedule.pk)
