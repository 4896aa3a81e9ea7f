"""Running executions finish on the version they started on (README.md, "Drafts", versions)."""
from __future__ import annotations

import pytest

from flows.models import Execution
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
