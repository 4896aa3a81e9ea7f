"""The dashboard's schedules: create, edit and delete with the cron preview, success rate
and last runs per schedule, auto-refresh."""
from __future__ import annotations

import json
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from core.models import Membership
from flows.models import FlowSchedule, ScheduleRun
from tests.factories import (
    ContactFactory,
    FlowFactory,
    FlowScheduleFactory,
    MembershipFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db


def form_body(flow, contact, **extra) -> dict:
    return {"flow": str(flow.pk), "cron": "0 9 * * 1-5", "timezone": "Europe/Berlin",
            "audience": json.dumps({"contact_id": str(contact.pk)}), "trigger_data": "{}",
            "catch_up": "skip", "enabled": "on", **extra}


def test_preview_shows_the_crons_meaning_and_next_runs_and_saves_nothing(staff, workspace):
    flow, contact = FlowFactory(workspace=workspace), ContactFactory(workspace=workspace)
    response = staff.post(f"/dashboard/schedules/new/?workspace={workspace.pk}",
                          {**form_body(flow, contact), "preview": "1"})
    assert response.status_code == 200
    preview = response.context["preview"]
    assert "09:00" in preview.description and preview.error == ""
    assert len(preview.upcoming) == 5
    berlin = ZoneInfo("Europe/Berlin")
    assert all(when.astimezone(berlin).weekday() < 5 and when.astimezone(berlin).hour == 9
               for when in preview.upcoming)
    assert "Next runs:" in response.content.decode()
    assert not FlowSchedule.objects.exists()


def test_a_bad_cron_previews_its_error_and_is_not_saved(staff, workspace):
    flow, contact = FlowFactory(workspace=workspace), ContactFactory(workspace=workspace)
    body = form_body(flow, contact, cron="61 * * * *")
    previewed = staff.post(f"/dashboard/schedules/new/?workspace={workspace.pk}",
                           {**body, "preview": "1"})
    assert previewed.context["preview"].error
    saved = staff.post(f"/dashboard/schedules/new/?workspace={workspace.pk}", body)
    assert saved.status_code == 400
    assert "cron" in saved.context["form"].errors
    assert not FlowSchedule.objects.exists()


def test_create_makes_the_schedule_and_its_beat_task(staff, workspace):
    flow, contact = FlowFactory(workspace=workspace), ContactFactory(workspace=workspace)
    response = staff.post(f"/dashboard/schedules/new/?workspace={workspace.pk}",
                          form_body(flow, contact), follow=True)
    assert "Schedule created." in response.content.decode()
    schedule = FlowSchedule.objects.get()
    assert (schedule.workspace, schedule.flow, schedule.cron, schedule.timezone) == (
        workspace, flow, "0 9 * * 1-5", "Europe/Berlin")
    assert schedule.audience == {"contact_id": str(contact.pk)}
    assert schedule.next_run_at is not None
    assert PeriodicTask.objects.filter(name__contains=str(schedule.pk)).exists()


def test_another_workspaces_contact_is_refused_naming_the_audience(staff, workspace):
    flow = FlowFactory(workspace=workspace)
    stranger = ContactFactory(workspace=WorkspaceFactory())
    response = staff.post(f"/dashboard/schedules/new/?workspace={workspace.pk}",
                          form_body(flow, stranger))
    assert response.status_code == 400
    assert "audience" in response.context["form"].errors
    assert not FlowSchedule.objects.exists()


def test_edit_changes_the_cron_and_delete_removes_the_schedule(staff, workspace):
    schedule = FlowScheduleFactory(workspace=workspace)
    page = staff.get(f"/dashboard/schedules/{schedule.pk}/edit/")
    assert page.status_code == 200 and "0 9 * * *" in page.content.decode()
    body = form_body(schedule.flow, ContactFactory(workspace=workspace), cron="30 7 * * *")
    staff.post(f"/dashboard/schedules/{schedule.pk}/edit/", body)
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.timezone) == ("30 7 * * *", "Europe/Berlin")

    response = staff.post(f"/dashboard/schedules/{schedule.pk}/delete/", follow=True)
    assert "Schedule deleted." in response.content.decode()
    assert not FlowSchedule.objects.exists()


def test_the_list_shows_success_rate_last_runs_and_refreshes_itself(staff, workspace):
    schedule = FlowScheduleFactory(workspace=workspace)
    FlowSchedule.objects.filter(pk=schedule.pk).update(runs=4, successes=3, failures=1)
    for hours, status in ((3, "completed"), (2, "failed"), (1, "completed")):
        at = timezone.now() - timedelta(hours=hours)
        ScheduleRun.objects.create(schedule=schedule, status=status, occurrence_at=at,
                                   fired_at=at)
    response = staff.get(f"/dashboard/schedules/?workspace={workspace.pk}&refresh=30s")
    page = response.content.decode()
    [row] = response.context["rows"]
    assert row.success_rate == 75.0
    assert [run.status for run in row.recent] == ["completed", "failed", "completed"]
    assert "75.0 %" in page
    assert '<meta http-equiv="refresh" content="30">' in page
    assert f"/dashboard/schedules/{schedule.pk}/edit/" in page


def test_a_viewer_may_not_create_edit_or_delete(client, workspace):
    schedule = FlowScheduleFactory(workspace=workspace)
    client.force_login(MembershipFactory(workspace=workspace,
                                         role=Membership.Role.VIEWER).user)
    assert client.get(f"/dashboard/schedules/new/?workspace={workspace.pk}").status_code == 403
    assert client.get(f"/dashboard/schedules/{schedule.pk}/edit/").status_code == 403
    assert client.post(f"/dashboard/schedules/{schedule.pk}/delete/").status_code == 403
    assert FlowSchedule.objects.count() == 1
    page = client.get(f"/dashboard/schedules/?workspace={workspace.pk}").content.decode()
    assert "New schedule" not in page
