"""POST /api/v1/queues/{queue}/pause|resume, what the queue metrics and health say about a
pause, and the audit log API."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import AuditEntry
from messaging.models import QueuePause
from tests.factories import StaffUserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_api() -> APIClient:
    client = APIClient()
    client.force_login(StaffUserFactory(username="ops"))
    return client


def test_a_key_pauses_and_resumes_its_own_workspace_queue(api, workspace, api_key):
    answer = api.post("/api/v1/queues/sms/pause", {"reason": "carrier outage"}, format="json")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["queue"], body["scope"], body["paused"], body["changed"]) == (
        "sms", "workspace", True, True)
    prefix = api_key.split("_")[1]
    assert body["pause"]["paused_by"] == f"api:{prefix}"
    assert body["pause"]["reason"] == "carrier outage"
    assert QueuePause.objects.get().workspace == workspace

    again = api.post("/api/v1/queues/sms/pause", format="json").json()
    assert again["changed"] is False

    resumed = api.post("/api/v1/queues/sms/resume", format="json").json()
    assert (resumed["paused"], resumed["changed"], resumed["released"]) == (False, True, 0)
    assert not QueuePause.objects.exists()
    entries = AuditEntry.objects.filter(workspace=workspace).order_by("id")
    assert [(e.action, e.actor, e.source, e.ip) for e in entries] == [
        ("queue.pause", f"api:{prefix}", "api", "127.0.0.1"),
        ("queue.resume", f"api:{prefix}", "api", "127.0.0.1")]


def test_an_unknown_queue_answers_404_naming_it(api):
    answer = api.post("/api/v1/queues/fax/pause", format="json")
    assert answer.status_code == 404
    assert "'fax'" in answer.json()["error"]["message"]
    assert answer.json()["error"]["fields"]["queue"]
    assert not QueuePause.objects.exists()


def test_a_bad_reason_is_a_400_naming_the_field(api):
    answer = api.post("/api/v1/queues/sms/pause", {"reason": "x" * 501}, format="json")
    assert answer.status_code == 400
    assert "reason" in answer.json()["error"]["fields"]
    assert not QueuePause.objects.exists()


def test_a_workspace_pause_leaves_other_workspaces_running(api, other_api, workspace):
    api.post("/api/v1/queues/email/pause", format="json")
    mine = api.get("/api/v1/queues/metrics").json()["queues"]
    theirs = other_api.get("/api/v1/queues/metrics").json()["queues"]
    assert mine["email"]["paused"] is True and mine["sms"]["paused"] is False
    assert mine["email"]["pause"]["scope"] == "workspace"
    assert theirs["email"]["paused"] is False and theirs["email"]["pause"] is None


def test_staff_pause_a_queue_for_every_workspace_and_metrics_and_health_show_it(
        staff_api, api, workspace):
    answer = staff_api.post("/api/v1/queues/webhook/pause", {"reason": "receiver down"},
                            format="json")
    assert answer.status_code == 200
    assert (answer.json()["scope"], answer.json()["pause"]["paused_by"]) == (
        "global", "user:ops")
    metrics = api.get("/api/v1/queues/metrics").json()["queues"]["webhook"]
    assert metrics["paused"] is True
    assert metrics["pause"]["scope"] == "global"
    assert metrics["pause"]["paused_by"] == "user:ops"
    since = metrics["pause"]["paused_at"]
    assert abs(timezone.now() - timezone.datetime.fromisoformat(since)) < timedelta(minutes=5)
    health = staff_api.get("/api/v1/queues/health").json()["queues"]["webhook"]
    assert health["paused"] is True and health["pause"]["reason"] == "receiver down"
    # A key cannot lift the global pause: its resume is its own workspace's.
    resumed = api.post("/api/v1/queues/webhook/resume", format="json").json()
    assert (resumed["changed"], resumed["paused"]) == (False, True)
    entry = AuditEntry.objects.get(action="queue.pause")
    assert entry.workspace is None and entry.detail["scope"] == "global"


def test_the_staff_view_counts_workspaces_that_paused_a_queue(staff_api, api):
    api.post("/api/v1/queues/sms/pause", format="json")
    queues = staff_api.get("/api/v1/queues/metrics").json()["queues"]
    assert queues["sms"]["paused"] is False  # not for everybody
    assert queues["sms"]["paused_workspaces"] == 1


def test_pausing_needs_a_key_or_staff():
    assert APIClient().post("/api/v1/queues/sms/pause").status_code in (401, 403)


# --- the audit log API -------------------------------------------------------------------------

def test_the_audit_log_lists_the_key_workspace_only_filtered_and_paginated(api, other_api,
                                                                           workspace):
    api.post("/api/v1/queues/sms/pause", format="json")
    api.post("/api/v1/queues/sms/resume", format="json")
    api.post("/api/v1/queues/email/pause", format="json")
    other_api.post("/api/v1/queues/sms/pause", format="json")

    listed = api.get("/api/v1/audit-log").json()
    assert listed["count"] == 3
    assert [e["action"] for e in listed["results"]] == ["queue.pause", "queue.resume",
                                                        "queue.pause"]
    assert listed["results"][0]["target_id"] == "email"
    only = api.get("/api/v1/audit-log", {"action": "queue.resume"}).json()
    assert [e["target_id"] for e in only["results"]] == ["sms"]
    page = api.get("/api/v1/audit-log", {"page_size": 2}).json()
    assert len(page["results"]) == 2 and page["next"]
    later = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert api.get("/api/v1/audit-log", {"created_after": later}).json()["count"] == 0


def test_a_bad_created_after_is_a_400_naming_it(api):
    answer = api.get("/api/v1/audit-log", {"created_after": "yesterday"})
    assert answer.status_code == 400
    assert "created_after" in answer.json()["error"]["fields"]


def test_a_workspace_settings_change_is_audited_without_values(api, workspace):
    answer = api.patch("/api/v1/workspace", {"name": "New", "settings": {
        "rate_limits": {"sms": "5/s"}}}, format="json")
    assert answer.status_code == 200
    entry = AuditEntry.objects.get(action="workspace.update")
    assert entry.detail == {"fields": ["name", "settings"], "settings": ["rate_limits.sms"]}
    assert entry.workspace == workspace


def test_a_refused_settings_change_writes_no_audit_entry(api):
    answer = api.patch("/api/v1/workspace", {"timezone": "Mars/Base"}, format="json")
    assert answer.status_code == 400
    assert not AuditEntry.objects.exists()


def test_a_message_cancel_through_the_api_is_audited(api, workspace):
    created = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                            "body": "x", "send_at": (timezone.now() + timedelta(
                                                hours=1)).isoformat()}, format="json").json()
    assert api.post(f"/api/v1/messages/{created['id']}/cancel").status_code == 200
    entry = AuditEntry.objects.get(action="message.cancel")
    assert (entry.target_type, entry.target_id) == ("message", created["id"])


def test_another_workspace_entries_are_not_listed(other_api, workspace):
    WorkspaceFactory()
    assert other_api.get("/api/v1/audit-log").json()["count"] == 0
