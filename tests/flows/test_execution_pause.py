"""POST /api/v1/executions/{id}/pause|resume: a paused execution is not advanced, its timer
waits until the resume, and it continues where it stopped."""
from __future__ import annotations

import pytest
from django.utils import timezone

from core.models import AuditEntry
from flows.engine import advance, dispatch_timers
from flows.models import Execution
from tests.factories import ContactFactory, ExecutionFactory
from tests.flows.test_engine_end_to_end import finished, make_flow, start
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_paused_execution_keeps_its_fired_timer_until_resumed(api, workspace, providers,
                                                                 live_worker):
    nodes = [{"id": "d", "type": "delay", "data": {"seconds": 1}},
             {"id": "s", "type": "send_sms", "data": {"body": "after the pause"}}]
    flow = make_flow(api, nodes, [{"id": "a", "source": "d", "target": "s"}])
    execution_id = start(api, flow["id"], ContactFactory(workspace=workspace))
    wait_until(lambda: Execution.objects.get(pk=execution_id).status == "waiting")

    paused = api.post(f"/api/v1/executions/{execution_id}/pause")
    assert paused.status_code == 200
    assert paused.json()["paused_at"] and paused.json()["paused_by"].startswith("api:")
    wake_at = Execution.objects.get(pk=execution_id).wake_at
    wait_until(lambda: timezone.now() > wake_at)
    assert dispatch_timers() == 0  # the timer is due, but the execution is paused
    assert advance(execution_id=execution_id) == "skipped"
    execution = Execution.objects.get(pk=execution_id)
    assert (execution.status, execution.current_node) == ("waiting", "d")
    assert providers.requests == []

    resumed = api.post(f"/api/v1/executions/{execution_id}/resume")
    assert resumed.status_code == 200 and resumed.json()["paused_at"] is None
    assert dispatch_timers() == 1
    wait_until(lambda: finished(execution_id))
    assert Execution.objects.get(pk=execution_id).status == "completed"
    assert [r.json()["message"] for r in providers.requests] == ["after the pause"]
    assert list(AuditEntry.objects.filter(target_id=execution_id).order_by("id")
                .values_list("action", flat=True)) == ["execution.pause", "execution.resume"]


def test_a_paused_running_execution_is_advanced_on_resume(api, workspace, providers,
                                                          live_worker):
    execution = ExecutionFactory(workspace=workspace, status=Execution.Status.RUNNING,
                                 current_node="n1",
                                 flow__nodes=[{"id": "n1", "type": "update_contact",
                                               "data": {"attributes": {"seen": True}}}])
    api.post(f"/api/v1/executions/{execution.pk}/pause")
    assert advance(execution_id=str(execution.pk)) == "skipped"
    api.post(f"/api/v1/executions/{execution.pk}/resume")
    wait_until(lambda: finished(str(execution.pk)))
    execution.contact.refresh_from_db()
    assert execution.contact.attributes == {"seen": True}


def test_a_finished_execution_cannot_be_paused_and_another_workspace_gets_404(api,
                                                                             other_api,
                                                                             workspace):
    done = ExecutionFactory(workspace=workspace, status=Execution.Status.COMPLETED)
    answer = api.post(f"/api/v1/executions/{done.pk}/pause")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "not_pausable"
    running = ExecutionFactory(workspace=workspace, status=Execution.Status.WAITING)
    assert other_api.post(f"/api/v1/executions/{running.pk}/pause").status_code == 404
    assert Execution.objects.get(pk=running.pk).paused_at is None
    assert not AuditEntry.objects.exists()


def test_cancelling_a_paused_execution_works_and_is_audited(api, workspace):
    running = ExecutionFactory(workspace=workspace, status=Execution.Status.WAITING)
    api.post(f"/api/v1/executions/{running.pk}/pause")
    answer = api.post(f"/api/v1/executions/{running.pk}/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert answer.json()["paused_at"] is None
    assert AuditEntry.objects.filter(action="execution.cancel",
                                     target_id=str(running.pk)).exists()
