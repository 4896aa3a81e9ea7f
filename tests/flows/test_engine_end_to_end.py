"""The flow engine end to end: API -> executions -> live worker -> stand-in providers."""
from __future__ import annotations

import time

import pytest

from core.models import DeadLetter
from flows.models import Execution, Flow, Step
from messaging.models import Message
from tests.factories import ContactFactory
from tests.flows.conftest import BUILDER_GRAPH, graph_for
from tests.support.stub_server import Reply
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def make_flow(api, nodes, edges, **extra) -> dict:
    response = api.post("/api/v1/flows", {"name": "f", "trigger": {"type": "manual"},
                                          "nodes": nodes, "edges": edges, **extra},
                        format="json")
    assert response.status_code == 201, response.json()
    flow = response.json()
    assert api.post(f"/api/v1/flows/{flow['id']}/activate").status_code == 200
    return flow


def start(api, flow_id: str, contact, data=None) -> str:
    response = api.post(f"/api/v1/flows/{flow_id}/executions",
                        {"contact_id": str(contact.id), "data": data or {}}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def finished(execution_id: str) -> bool:
    return Execution.objects.get(pk=execution_id).status in ("completed", "failed",
                                                             "cancelled")


def test_the_example_flow_runs_both_branches(api, workspace, providers, live_worker,
                                             dispatcher):
    graph = graph_for(providers)
    flow = make_flow(api, graph["nodes"], graph["edges"])
    vip = ContactFactory(workspace=workspace, first_name="Vera", attributes={"vip": True})
    regular = ContactFactory(workspace=workspace, first_name="Rex", attributes={"vip": False})
    first = start(api, flow["id"], vip, {"code": "A7"})
    second = start(api, flow["id"], regular)
    wait_until(lambda: finished(first) and finished(second), timeout=30)
    sms = {r.json()["message"] for r in providers.requests if r.path == "/send-sms"}
    assert sms == {"Hi Vera", "Hi Rex"}
    emails = [r.json() for r in providers.requests if r.path == "/api/email/send"]
    assert [(e["to"], e["subject"], e["html"]) for e in emails] == [
        (vip.email, "Welcome Vera", "<p>Hi Vera, code A7</p>")]
    hooks = [r.json() for r in providers.requests if r.path == "/hook"]
    sms_message = Message.objects.get(contact=regular, channel="sms")
    assert hooks == [{"sms": str(sms_message.id), "who": regular.external_id}]
    detail = api.get(f"/api/v1/executions/{first}").json()
    assert detail["status"] == "completed"
    assert [(s["node_id"], s["status"]) for s in detail["steps"]] == [
        ("n1", "completed"), ("n2", "completed"), ("n3", "completed"), ("n4", "completed")]
    assert detail["steps"][2]["output"] == {"result": True}
    delay = detail["steps"][1]
    assert delay["duration_ms"] >= 1900
    assert all(s["completed_at"] for s in detail["steps"])


def test_a_builder_shaped_flow_runs_through_the_worker_to_the_providers(
        api, workspace, providers, live_worker, dispatcher):
    flow = make_flow(api, BUILDER_GRAPH["nodes"], BUILDER_GRAPH["edges"])
    contact = ContactFactory(workspace=workspace, first_name="Bo")
    execution_id = start(api, flow["id"], contact)
    wait_until(lambda: finished(execution_id), timeout=30)
    [sms_request] = [r for r in providers.requests if r.path == "/send-sms"]
    [email_request] = [r for r in providers.requests if r.path == "/api/email/send"]
    sms, email = sms_request.json(), email_request.json()
    assert (sms["to"], sms["message"]) == (contact.phone, "Hi Bo")
    assert sms["mediaUrl"] == "https://cdn.example.com/welcome.png"
    assert (email["to"], email["subject"], email["html"]) == (
        contact.email, "Welcome Bo", "<p>Hi Bo</p>")
    # delayMs 2000: the email leaves two seconds after the text, not at once.
    assert email_request.at - sms_request.at >= 1.9
    detail = api.get(f"/api/v1/executions/{execution_id}").json()
    assert detail["status"] == "completed"
    assert [(s["node_id"], s["node_type"], s["status"]) for s in detail["steps"]] == [
        ("m", "send_sms", "completed"), ("d", "delay", "completed"),
        ("e", "send_email", "completed")]
    assert detail["steps"][0]["input"] == {"channel": "mms"}
    assert detail["steps"][1]["duration_ms"] >= 1900
    assert api.get(f"/api/v1/flows/{flow['id']}").json()["nodes"] == BUILDER_GRAPH["nodes"]


def test_wait_for_event_takes_the_event_or_the_timeout_exit(api, workspace, providers,
                                                            live_worker, dispatcher):
    nodes = [
        {"id": "w", "type": "wait_for_event", "data": {"event": "paid", "timeout_seconds": 2}},
        {"id": "yes", "type": "send_sms",
         "data": {"body": "thanks {{ steps.w.output.properties.amount }}"}},
        {"id": "no", "type": "send_sms", "data": {"body": "reminder"}},
    ]
    edges = [{"id": "a", "source": "w", "target": "yes", "sourceHandle": "event"},
             {"id": "b", "source": "w", "target": "no", "sourceHandle": "timeout"}]
    flow = make_flow(api, nodes, edges)
    payer = ContactFactory(workspace=workspace)
    idle = ContactFactory(workspace=workspace)
    paying = start(api, flow["id"], payer)
    waiting = start(api, flow["id"], idle)
    wait_until(lambda: Execution.objects.filter(status="waiting").count() == 2)
    response = api.post("/api/v1/events", {"name": "paid", "contact_id": str(payer.id),
                                           "properties": {"amount": 42}}, format="json")
    assert response.status_code == 202 and response.json()["woken"] == 1
    wait_until(lambda: finished(paying) and finished(waiting), timeout=20)
    bodies = sorted(r.json()["message"] for r in providers.requests)
    assert bodies == ["reminder", "thanks 42"]
    exits = dict(Step.objects.filter(node_id="w").values_list("execution_id", "output"))
    assert exits[Execution.objects.get(pk=waiting).pk]["timed_out"] is True


def test_an_event_trigger_starts_matching_active_flows(api, workspace, providers,
                                                       live_worker):
    nodes = [{"id": "s", "type": "send_sms",
              "data": {"body": "welcome {{ trigger.properties.plan }}"}}]
    make_flow(api, nodes, [], trigger={"type": "event", "event": "signup", "filter": {
        "all": [{"field": "event.properties.plan", "op": "in", "value": ["pro", "team"]}]}})
    contact = ContactFactory(workspace=workspace)
    skipped = api.post("/api/v1/events", {"name": "signup", "contact_id": str(contact.id),
                                          "properties": {"plan": "free"}}, format="json")
    assert skipped.json()["started"] == 0
    started = api.post("/api/v1/events", {"name": "signup",
                                          "contact_external_id": contact.external_id,
                                          "properties": {"plan": "pro"}}, format="json")
    assert started.status_code == 202 and started.json()["started"] == 1
    request = providers.wait_for(1)[0]
    assert request.json()["message"] == "welcome pro"


def test_a_failed_send_fails_the_execution_into_the_dead_letters_and_can_be_retried(
        api, workspace, providers, live_worker):
    nodes = [{"id": "s", "type": "send_sms", "data": {"body": "x"}},
             {"id": "e", "type": "end", "data": {}}]
    flow = make_flow(api, nodes, [{"id": "a", "source": "s", "target": "e"}])
    contact = ContactFactory(workspace=workspace)
    providers.script("/send-sms", Reply(400, {"error": "bad number"}))
    execution_id = start(api, flow["id"], contact)
    wait_until(lambda: finished(execution_id))
    detail = api.get(f"/api/v1/executions/{execution_id}").json()
    assert detail["status"] == "failed" and "s:" in detail["error"]
    step = detail["steps"][0]
    assert step["status"] == "failed"
    assert DeadLetter.objects.filter(kind="step", source_id=str(step["id"])).exists()
    response = api.post(f"/api/v1/executions/{execution_id}/steps/{step['id']}/retry")
    assert response.status_code == 200, response.json()
    wait_until(lambda: Execution.objects.get(pk=execution_id).status == "completed")
    assert len([r for r in providers.requests if r.path == "/send-sms"]) == 2
    assert api.post(f"/api/v1/executions/{execution_id}/steps/{step['id']}/retry"
                    ).status_code == 409


def test_on_failure_continue_goes_on_after_a_failed_send(api, workspace, providers,
                                                         live_worker):
    nodes = [{"id": "s", "type": "send_sms", "data": {"body": "x", "on_failure": "continue"}},
             {"id": "u", "type": "update_contact", "data": {"attributes": {"reached": "no"}}}]
    flow = make_flow(api, nodes, [{"id": "a", "source": "s", "target": "u"}])
    contact = ContactFactory(workspace=workspace)
    providers.script("/send-sms", Reply(400, {"error": "bad number"}))
    execution_id = start(api, flow["id"], contact)
    wait_until(lambda: finished(execution_id))
    assert Execution.objects.get(pk=execution_id).status == "completed"
    contact.refresh_from_db()
    assert contact.attributes["reached"] == "no"


def test_editing_a_flow_leaves_running_executions_on_their_version(
        api, workspace, providers, live_worker, dispatcher):
    nodes = [{"id": "d", "type": "delay", "data": {"seconds": 1}},
             {"id": "s", "type": "send_sms", "data": {"body": "version one"}}]
    edges = [{"id": "a", "source": "d", "target": "s"}]
    flow = make_flow(api, nodes, edges)
    contact = ContactFactory(workspace=workspace)
    execution_id = start(api, flow["id"], contact)
    nodes[1]["data"]["body"] = "version two"
    assert api.patch(f"/api/v1/flows/{flow['id']}", {"nodes": nodes},
                     format="json").status_code == 200
    assert api.post(f"/api/v1/flows/{flow['id']}/publish").json()["number"] == 2
    wait_until(lambda: finished(execution_id))
    assert [r.json()["message"] for r in providers.requests] == ["version one"]
    later = start(api, flow["id"], ContactFactory(workspace=workspace))
    wait_until(lambda: finished(later))
    assert [r.json()["message"] for r in providers.requests][-1] == "version two"


def test_cancelling_an_execution_cancels_its_timer(api, workspace, providers, live_worker,
                                                   dispatcher):
    nodes = [{"id": "d", "type": "delay", "data": {"seconds": 2}},
             {"id": "s", "type": "send_sms", "data": {"body": "never"}}]
    flow = make_flow(api, nodes, [{"id": "a", "source": "d", "target": "s"}])
    execution_id = start(api, flow["id"], ContactFactory(workspace=workspace))
    wait_until(lambda: Execution.objects.get(pk=execution_id).status == "waiting")
    response = api.post(f"/api/v1/executions/{execution_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    time.sleep(3)
    assert providers.requests == []
    assert api.post(f"/api/v1/executions/{execution_id}/cancel").status_code == 409


def test_bulk_start_runs_every_contact_across_batches(api, workspace, providers,
                                                      live_worker):
    nodes = [{"id": "u", "type": "update_contact", "data": {"attributes": {"seen": True}}}]
    flow = make_flow(api, nodes, [])
    contacts = ContactFactory.create_batch(1203, workspace=workspace,
                                           attributes={"tier": "gold"})
    ContactFactory.create_batch(5, workspace=workspace, attributes={"tier": "free"})
    response = api.post(f"/api/v1/flows/{flow['id']}/executions/bulk", {"filter": {
        "all": [{"field": "contact.attributes.tier", "op": "eq", "value": "gold"}]}},
        format="json")
    assert response.status_code == 202, response.json()
    job = response.json()
    url = f"/api/v1/flows/{flow['id']}/executions/bulk/{job['id']}"
    wait_until(lambda: api.get(url).json()["status"] == "completed", timeout=60)
    progress = api.get(url).json()
    assert progress["started"] == 1203 and progress["skipped"] == 5
    wait_until(lambda: Execution.objects.filter(status="completed").count() == 1203,
               timeout=90)
    assert Flow.objects.get(pk=flow["id"]).executions.count() == len(contacts)


def test_a_suppressed_send_completes_its_step_and_a_condition_branches_on_it(
        api, workspace, providers, live_worker, dispatcher):
    flow = make_flow(api, [
        {"id": "s1", "type": "send_sms", "data": {"body": "Sale on {{ contact.first_name }}"}},
        {"id": "c1", "type": "condition", "data": {"rules": {"all": [
            {"field": "steps.s1.output.status", "op": "eq", "value": "suppressed"}]}}},
        {"id": "e1", "type": "send_email", "data": {"subject": "We missed you",
                                                    "text": "Hi {{ contact.first_name }}"}},
        {"id": "s2", "type": "send_sms", "data": {"body": "Receipt",
                                                  "category": "transactional"}},
    ], [{"id": "a", "source": "s1", "target": "c1"},
        {"id": "b", "source": "c1", "target": "e1", "sourceHandle": "true"},
        {"id": "c", "source": "c1", "target": "s2", "sourceHandle": "false"}])
    opted_out = ContactFactory(workspace=workspace, first_name="Opal", sms_subscribed=False)
    subscribed = ContactFactory(workspace=workspace, first_name="Sam")
    first = start(api, flow["id"], opted_out)
    second = start(api, flow["id"], subscribed)
    wait_until(lambda: finished(first) and finished(second), timeout=30)

    steps = {s["node_id"]: s for s in api.get(f"/api/v1/executions/{first}").json()["steps"]}
    assert api.get(f"/api/v1/executions/{first}").json()["status"] == "completed"
    assert steps["s1"]["status"] == "completed"
    assert steps["s1"]["output"]["status"] == "suppressed"
    assert steps["s1"]["output"]["suppressed_reason"] == "unsubscribed"
    assert "e1" in steps and "s2" not in steps
    sms = [r.json() for r in providers.requests if r.path == "/send-sms"]
    assert [(m["to"], m["message"]) for m in sms] == [(subscribed.phone, "Sale on Sam"),
                                                      (subscribed.phone, "Receipt")]
    categories = dict(Message.objects.filter(contact=subscribed)
                      .values_list("content__body", "category"))
    assert categories == {"Sale on {{ contact.first_name }}": "marketing",
                          "Receipt": "transactional"}
    emails = [r.json() for r in providers.requests if r.path == "/api/email/send"]
    assert [e["to"] for e in emails] == [opted_out.email]
