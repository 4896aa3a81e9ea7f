"""The dashboard's Queues and Audit log pages, and the audit entries of dead-letter replay
and discard from the API, the dashboard and the admin."""
from __future__ import annotations

import pytest
from django.test import Client

from core.models import AuditEntry, DeadLetter
from messaging.models import QueuePause
from tests.factories import StaffUserFactory, WorkspaceFactory, failed_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client: Client) -> Client:
    client.force_login(StaffUserFactory(username="ops"))
    return client


def test_staff_pause_and_resume_a_workspace_queue_from_the_queues_page(staff, workspace):
    page = staff.get(f"/dashboard/queues/?workspace={workspace.pk}")
    assert page.status_code == 200 and b'data-queue="sms" data-paused="no"' in page.content

    staff.post("/dashboard/queues/sms/pause/", {"workspace": workspace.pk, "reason": "hold"})
    pause = QueuePause.objects.get()
    assert (pause.workspace, pause.paused_by, pause.reason) == (workspace, "user:ops", "hold")
    page = staff.get(f"/dashboard/queues/?workspace={workspace.pk}")
    assert b'data-queue="sms" data-paused="yes"' in page.content and b"user:ops" in page.content

    staff.post("/dashboard/queues/sms/pause/", {"workspace": workspace.pk, "resume": "1"})
    assert not QueuePause.objects.exists()
    log = staff.get(f"/dashboard/audit-log/?workspace={workspace.pk}&action=queue.resume")
    assert log.content.count(b'data-action="queue.resume"') == 1
    assert b'data-action="queue.pause"' not in log.content


def test_staff_pause_a_queue_for_every_workspace(staff, workspace):
    staff.post("/dashboard/queues/email/pause/", {"workspace": workspace.pk,
                                                  "scope": "global"})
    assert QueuePause.objects.get().workspace is None
    entry = AuditEntry.objects.get()
    assert (entry.workspace, entry.source, entry.actor) == (None, "dashboard", "user:ops")


def test_a_non_staff_user_cannot_pause(client, workspace):
    client.force_login(StaffUserFactory(is_staff=False))
    client.post("/dashboard/queues/sms/pause/", {"workspace": workspace.pk})
    assert not QueuePause.objects.exists()


def test_a_pause_without_a_workspace_is_refused(staff, workspace):
    answer = staff.post("/dashboard/queues/sms/pause/", {})
    assert answer.status_code == 400
    assert not QueuePause.objects.exists()


def test_the_audit_log_page_shows_only_its_workspace(staff, workspace):
    other = WorkspaceFactory()
    staff.post("/dashboard/queues/sms/pause/", {"workspace": other.pk})
    page = staff.get(f"/dashboard/audit-log/?workspace={workspace.pk}")
    assert page.status_code == 200 and b"data-action=" not in page.content


def test_replay_and_discard_are_audited_from_api_dashboard_and_admin(api, staff, workspace):
    _, by_api = failed_message(workspace)
    _, by_dashboard = failed_message(workspace)
    _, by_admin = failed_message(workspace)
    assert api.post(f"/api/v1/dead-letters/{by_api.pk}/retry").status_code == 200
    staff.post(f"/dashboard/dead-letters/{by_dashboard.pk}/discard/")
    staff.post("/admin/core/deadletter/", {"action": "discard", "_selected_action":
                                           [by_admin.pk]})
    entries = {(e.action, e.source, e.target_id) for e in AuditEntry.objects.all()}
    assert entries == {("dead_letter.replay", "api", str(by_api.pk)),
                       ("dead_letter.discard", "dashboard", str(by_dashboard.pk)),
                       ("dead_letter.discard", "admin", str(by_admin.pk))}
    # replayed_by keeps its short form
    assert DeadLetter.objects.get(pk=by_dashboard.pk).replayed_by == "dashboard:ops"
    assert DeadLetter.objects.get(pk=by_admin.pk).replayed_by == "admin:ops"


def test_an_admin_workspace_save_is_audited(staff, workspace):
    answer = staff.post(f"/admin/core/workspace/{workspace.pk}/change/", {
        "name": "Renamed", "slug": workspace.slug, "timezone": "UTC", "settings": "{}",
        "is_active": "on", "webhook_secret": workspace.webhook_secret,
        "webhook_secret_previous": "", "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0"})
    assert answer.status_code == 302, answer.content[:2000]
    entry = AuditEntry.objects.get(action="workspace.update")
    assert entry.source == "admin" and "name" in entry.detail["fields"]
