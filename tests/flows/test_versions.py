"""Running executions finish on the version they started on (README.md, "Drafts", versions)."""
from __future__ import annotations

import pytest
from django.utils import timezone

from flows.models import Execution, Step
from tests.factories import ContactFactory
from tests.flows.test_engine_end_to_end import finished, make_flow, start
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def graph(text: str, seconds: int) -> dict:
    return {"nodes": [{"id": "hello", "type": "send_sms", "data": {"body": "hello"}},
                      {"id": "wait", "type": "delay", "data": {"seconds": seconds}},
                      {"id": "bye", "type": "send_sms", "data": {"body": text}}],
            "edges": [{"id": "a", "source": "hello", "target": "wait"},
                      {"id": "b", "source": "wait", "target": "bye"}]}


def test_a_new_publish_does_not_touch_running_executions(api, workspace, providers,
                                                         live_worker, dispatcher):
    first = graph("v1 text", 2)
    flow = make_flow(api, first["nodes"], first["edges"])
    early = ContactFactory(workspace=workspace)
    running = start(api, flow["id"], early)
    wait_until(lambda: Execution.objects.get(pk=running).current_node == "wait")

    second = graph("v2 text", 1)
    assert api.patch(f"/api/v1/flows/{flow['id']}", second, format="json").status_code == 200
    assert api.post(f"/api/v1/flows/{flow['id']}/publish").json()["number"] == 2
    late = ContactFactory(workspace=workspace)
    newer = start(api, flow["id"], late)
    wait_until(lambda: finished(running) and finished(newer), timeout=30)

    said = {(r.json()["to"], r.json()["message"]) for r in providers.requests}
    assert said == {(early.phone, "hello"), (early.phone, "v1 text"),
                    (late.phone, "hello"), (late.phone, "v2 text")}
    assert api.get(f"/api/v1/executions/{running}").json()["version"] == 1
    assert api.get(f"/api/v1/executions/{newer}").json()["version"] == 2
    # The old execution waited its own version's 2 seconds, not the new version's one.
    steps = api.get(f"/api/v1/executions/{running}").json()["steps"]
    assert steps[1]["duration_ms"] >= 1900


def renamed(text: str) -> dict:
    """The graph with its delay renamed `pause` (and the text changed)."""
    new = graph(text, 3600)
    new["nodes"][1]["id"] = "pause"
    new["edges"] = [{"id": "a", "source": "hello", "target": "pause"},
                    {"id": "b", "source": "pause", "target": "bye"}]
    return new


def waiting_in_v1(api, workspace, contact=None) -> tuple[dict, str]:
    first = graph("v1 text", 3600)
    flow = make_flow(api, first["nodes"], first["edges"])
    execution_id = start(api, flow["id"], contact or ContactFactory(workspace=workspace))
    wait_until(lambda: Execution.objects.get(pk=execution_id).status == "waiting"
               and Execution.objects.get(pk=execution_id).current_node == "wait")
    return flow, execution_id


def publish(api, flow: dict, new: dict) -> None:
    assert api.patch(f"/api/v1/flows/{flow['id']}", new, format="json").status_code == 200
    assert api.post(f"/api/v1/flows/{flow['id']}/publish").status_code == 201


def test_migrate_moves_a_waiting_execution_onto_the_new_version_whose_text_is_then_sent(
        api, workspace, providers, live_worker, dispatcher):
    flow, execution_id = waiting_in_v1(api, workspace)
    wake_at = Execution.objects.get(pk=execution_id).wake_at
    publish(api, flow, renamed("v2 text"))

    answer = api.post(f"/api/v1/flows/{flow['id']}/migrate", {"node_map": {"wait": "pause"}},
                      format="json")

    assert answer.status_code == 200, answer.json()
    assert answer.json() == {"moved": 1, "version": 2}
    moved = Execution.objects.get(pk=execution_id)
    assert (moved.version.number, moved.current_node, moved.status, moved.wake_at) == (
        2, "pause", "waiting", wake_at)
    assert Step.objects.get(execution=moved, status="waiting").node_id == "pause"
    # The hour passes: the timer it kept fires on the new version's node.
    Execution.objects.filter(pk=execution_id).update(wake_at=timezone.now())
    wait_until(lambda: finished(execution_id), timeout=30)
    assert [r.json()["message"] for r in providers.requests] == ["hello", "v2 text"]
    assert Execution.objects.get(pk=execution_id).status == "completed"
    # Nothing is left waiting on the old version: a second call moves none.
    again = api.post(f"/api/v1/flows/{flow['id']}/migrate", {}, format="json").json()
    assert again == {"moved": 0, "version": 2}


@pytest.mark.parametrize(("body", "field", "words"), [
    ({}, "node_map", "node wait (where executions wait) is not in the new version"),
    ({"node_map": {"wait": "nowhere"}}, "node_map",
     "node wait maps to nowhere, which the new version does not have"),
    ({"node_map": {"wait": "bye"}}, "node_map", "node wait is a delay; bye in the new version "
     "is a send_sms"),
    ({"node_map": {"wait": 7}}, "node_map", "Not a valid string"),
    ({"version": 9, "node_map": {"wait": "pause"}}, "version", "The flow has no version 9"),
])
def test_migrate_with_a_bad_node_map_answers_400_and_moves_nothing(
        api, workspace, providers, live_worker, dispatcher, body, field, words):
    flow, execution_id = waiting_in_v1(api, workspace)
    publish(api, flow, renamed("v2 text"))

    answer = api.post(f"/api/v1/flows/{flow['id']}/migrate", body, format="json")

    assert answer.status_code == 400
    assert words in str(answer.json()["error"]["fields"][field])
    kept = Execution.objects.get(pk=execution_id)
    assert (kept.version.number, kept.current_node, kept.status) == (1, "wait", "waiting")
    assert Step.objects.get(execution=kept, status="waiting").node_id == "wait"


def forked(text: str, hello: str = "hello") -> dict:
    """A text, then two hour-long delays at once that meet at a join before a last text."""
    return {"nodes": [{"id": hello, "type": "send_sms", "data": {"body": "hello"}},
                      {"id": "x", "type": "delay", "data": {"seconds": 3600}},
                      {"id": "y", "type": "delay", "data": {"seconds": 3600}},
                      {"id": "meet", "type": "join"},
                      {"id": "bye", "type": "send_sms", "data": {"body": text}}],
            "edges": [{"id": "1", "source": hello, "target": "x"},
                      {"id": "2", "source": hello, "target": "y"},
                      {"id": "3", "source": "x", "target": "meet"},
                      {"id": "4", "source": "y", "target": "meet"},
                      {"id": "5", "source": "meet", "target": "bye"}]}


@pytest.mark.parametrize(("hello", "node_map"), [
    ("hello", {}),
    # The forking node is renamed: the fork the parent waits at, and the one its branches
    # name, both take the new id.
    ("hi", {"hello": "hi"}),
])
def test_migrate_moves_an_execution_with_its_parallel_branches(
        api, workspace, providers, live_worker, dispatcher, hello, node_map):
    first = forked("v1 text")
    flow = make_flow(api, first["nodes"], first["edges"])
    execution_id = start(api, flow["id"], ContactFactory(workspace=workspace))
    wait_until(lambda: Execution.objects.filter(parent_id=execution_id,
                                                status="waiting").count() == 2)
    publish(api, flow, forked("v2 text", hello))

    answer = api.post(f"/api/v1/flows/{flow['id']}/migrate", {"node_map": node_map},
                      format="json").json()

    assert answer == {"moved": 1, "version": 2}
    family = Execution.objects.filter(pk=execution_id) | Execution.objects.filter(
        root_id=execution_id)
    assert {e.version.number for e in family} == {2}
    assert {(e.current_node, e.fork_node) for e in family if e.parent_id is None} == {
        (f"{hello}/fork", "")}
    assert {e.fork_node for e in family if e.parent_id is not None} == {f"{hello}/fork"}
    family.filter(root_id=execution_id).update(wake_at=timezone.now())
    wait_until(lambda: finished(execution_id), timeout=30)
    assert [r.json()["message"] for r in providers.requests] == ["hello", "v2 text"]


def test_another_workspaces_flow_cannot_be_migrated(api, other_api, workspace):
    flow = make_flow(api, graph("v1 text", 60)["nodes"], graph("v1 text", 60)["edges"])
    assert other_api.post(f"/api/v1/flows/{flow['id']}/migrate", {},
                          format="json").status_code == 404
    assert api.post(f"/api/v1/flows/{flow['id']}/migrate", {}, format="json").json() == {
        "moved": 0, "version": 1}
