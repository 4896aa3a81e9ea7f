"""Flow schedules: API, beat tasks, firing once per occurrence, counters, catch-up, sync."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from io import StringIO
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from celery.signals import beat_init
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from core.models import Contact
from flows import cron, schedules, services
from flows.models import BulkStart, Execution, Flow, FlowSchedule, ScheduleRun
from flows.schedule_tasks import fire_schedule
from flows.schedules import schedule_fire, schedule_run_advance, schedule_update
from tests.factories import ContactFactory, FlowFactory, FlowScheduleFactory, WorkspaceFactory
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
VIP = {"all": [{"field": "contact.attributes.vip", "op": "eq", "value": True}]}


def at(text: str) -> datetime:
    """Return an aware datetime from ISO text (Z for UTC)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def body(flow_: Flow, contact: Contact, **extra: object) -> dict:
    return {"flow": str(flow_.pk), "cron": "0 9 * * 1-5", "timezone": "Europe/Berlin",
            "enabled": True, "audience": {"contact_id": str(contact.pk)},
            "data": {"campaign": "spring"}, "catch_up": "skip", **extra}


def task_of(schedule_id: object) -> PeriodicTask:
    return PeriodicTask.objects.select_related("crontab").get(flow_schedule__pk=schedule_id)


def drain(run: ScheduleRun) -> int:
    """Run a run's batches the way the batch task chain does; return how many ran."""
    batches = 1
    while schedule_run_advance(run_id=run.pk):
        batches += 1
    return batches


# --- API ------------------------------------------------------------------------------------

def test_creating_a_schedule_creates_its_beat_task_in_the_schedules_time_zone(api, workspace):
    flow = FlowFactory(workspace=workspace, scheduled=True)
    contact = ContactFactory(workspace=workspace)
    response = api.post("/api/v1/schedules", body(flow, contact), format="json")
    assert response.status_code == 201, response.json()
    answer = response.json()
    assert answer["description"] == "At 09:00, Monday through Friday"
    assert answer["flow"] == str(flow.pk) and answer["data"] == {"campaign": "spring"}
    assert (answer["runs"], answer["successes"], answer["failures"]) == (0, 0, 0)
    assert answer["last_run_at"] is None and answer["last_run_status"] is None
    next_run = at(answer["next_run_at"]).astimezone(BERLIN)
    assert (next_run.hour, next_run.minute) == (9, 0) and next_run.isoweekday() <= 5
    assert next_run > timezone.now()
    task = task_of(answer["id"])
    assert (task.task, task.queue, task.enabled) == (schedules.FIRE_TASK, "flows", True)
    assert json.loads(task.kwargs) == {"schedule_id": answer["id"]}
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_month, crontab.month_of_year,
            crontab.day_of_week, str(crontab.timezone)) == ("0", "9", "*", "*", "1-5",
                                                            "Europe/Berlin")


def test_a_flow_may_have_several_schedules_each_with_its_own_beat_task(api, workspace):
    flow = FlowFactory(workspace=workspace, scheduled=True)
    contact = ContactFactory(workspace=workspace)
    first = api.post("/api/v1/schedules", body(flow, contact), format="json").json()
    second = api.post("/api/v1/schedules", body(flow, contact, cron="@hourly",
                                                timezone="Asia/Tokyo"), format="json").json()
    listed = api.get(f"/api/v1/schedules?flow={flow.pk}").json()
    assert {s["id"] for s in listed["results"]} == {first["id"], second["id"]}
    assert task_of(first["id"]).pk != task_of(second["id"]).pk
    assert second["description"] == "Every hour" and second["cron"] == "@hourly"
    assert str(task_of(second["id"]).crontab.timezone) == "Asia/Tokyo"


def test_the_timezone_defaults_to_the_workspaces(api, workspace):
    workspace.timezone = "America/Chicago"
    workspace.save()
    flow = FlowFactory(workspace=workspace, scheduled=True)
    contact = ContactFactory(workspace=workspace)
    request = body(flow, contact)
    del request["timezone"]
    answer = api.post("/api/v1/schedules", request, format="json").json()
    assert answer["timezone"] == "America/Chicago"


@pytest.mark.parametrize("change,field", [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "* * * *"}, "cron"),
    ({"cron": 5}, "cron"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"audience": {}}, "audience"),
    ({"audience": ["x"]}, "audience"),
    ({"audience": {"contact_id": "not-a-uuid"}}, "audience"),
    ({"audience": {"contact_id": str(uuid.uuid4())}}, "audience"),
    ({"audience": {"contact_ids": []}}, "audience"),
    ({"audience": {"filter": {"all": [{"op": "like"}]}}}, "audience"),
    ({"audience": {"filter": VIP, "contact_ids": []}}, "audience"),
    ({"catch_up": "always"}, "catch_up"),
    ({"flow": str(uuid.uuid4())}, "flow"),
    ({"data": [1]}, "data"),
])
def test_bad_input_answers_400_with_field_errors_and_writes_nothing(api, workspace, change,
                                                                    field):
    flow = FlowFactory(workspace=workspace, scheduled=True)
    contact = ContactFactory(workspace=workspace)
    response = api.post("/api/v1/schedules", body(flow, contact, **change), format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in error["fields"]
    assert not FlowSchedule.objects.exists()
    assert not PeriodicTask.objects.filter(task=schedules.FIRE_TASK).exists()


def test_another_workspaces_flow_or_contact_in_the_body_is_a_field_error(api, workspace):
    stranger = WorkspaceFactory()
    flow = FlowFactory(workspace=workspace, scheduled=True)
    contact = ContactFactory(workspace=workspace)
    their_flow = FlowFactory(workspace=stranger, scheduled=True)
    their_contact = ContactFactory(workspace=stranger)
    response = api.post("/api/v1/schedules", body(their_flow, contact), format="json")
    assert response.status_code == 400 and "flow" in response.json()["error"]["fields"]
    response = api.post("/api/v1/schedules", body(flow, contact, audience={
        "contact_ids": [str(contact.pk), str(their_contact.pk)]}), format="json")
    assert response.status_code == 400
    assert str(their_contact.pk) in str(response.json()["error"]["fields"]["audience"])
    assert not FlowSchedule.objects.exists()


def test_another_workspaces_schedules_answer_404(api, other_api, workspace):
    schedule = FlowScheduleFactory(workspace=workspace)
    url = f"/api/v1/schedules/{schedule.pk}"
    assert other_api.get(url).status_code == 404
    assert other_api.patch(url, {"enabled": False}, format="json").status_code == 404
    assert other_api.delete(url).status_code == 404
    assert other_api.get(f"{url}/runs").status_code == 404
    assert other_api.get("/api/v1/schedules").json()["results"] == []
    flow_url = f"/api/v1/flows/{schedule.flow_id}/schedule"
    assert other_api.get(flow_url).status_code == 404
    assert other_api.post(flow_url, {"cron": "@daily"}, format="json").status_code == 404
    assert other_api.patch(flow_url, {"enabled": False}, format="json").status_code == 404
    assert other_api.delete(flow_url).status_code == 404
    schedule.refresh_from_db()
    assert schedule.enabled and task_of(schedule.pk).enabled
    assert api.get(url).status_code == 200


def test_the_flow_schedule_endpoint_keeps_the_one_schedule_shape(api, workspace):
    flow = FlowFactory(workspace=workspace, scheduled=True)
    contact = ContactFactory(workspace=workspace)
    url = f"/api/v1/flows/{flow.pk}/schedule"
    assert api.get(url).status_code == 404
    audience = {"contact_id": str(contact.pk)}
    created = api.post(url, {"cron_expression": "@daily", "timezone": "America/New_York",
                             "audience": audience}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["flow"] == str(flow.pk)
    assert created.json()["description"] == "At 00:00"
    replaced = api.post(url, {"cron": "0 8 * * *", "audience": audience}, format="json")
    assert replaced.status_code == 200
    assert replaced.json()["id"] == created.json()["id"] and replaced.json()["cron"] == "0 8 * * *"
    assert task_of(created.json()["id"]).crontab.hour == "8"
    patched = api.patch(url, {"enabled": False}, format="json").json()
    assert patched["enabled"] is False and patched["next_run_at"] is None
    assert api.get(url).json()["id"] == created.json()["id"]
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert not PeriodicTask.objects.filter(task=schedules.FIRE_TASK).exists()


def test_patch_enabled_false_disables_the_beat_task_and_true_enables_it(api, workspace):
    schedule = FlowScheduleFactory(workspace=workspace)
    url = f"/api/v1/schedules/{schedule.pk}"
    answer = api.patch(url, {"enabled": False}, format="json").json()
    assert answer["enabled"] is False and answer["next_run_at"] is None
    assert task_of(schedule.pk).enabled is False
    answer = api.patch(url, {"enabled": True}, format="json").json()
    assert answer["enabled"] is True and at(answer["next_run_at"]) > timezone.now()
    assert task_of(schedule.pk).enabled is True


def test_editing_the_cron_or_zone_moves_the_beat_task_and_the_next_run(api, workspace):
    schedule = FlowScheduleFactory(workspace=workspace, cron="0 9 * * *")
    answer = api.patch(f"/api/v1/schedules/{schedule.pk}",
                       {"cron": "30 18 * * 1", "timezone": "Australia/Sydney"},
                       format="json").json()
    local = at(answer["next_run_at"]).astimezone(ZoneInfo("Australia/Sydney"))
    assert (local.isoweekday(), local.hour, local.minute) == (1, 18, 30)
    crontab = task_of(schedule.pk).crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week, str(crontab.timezone)) == (
        "30", "18", "1", "Australia/Sydney")
    assert answer["description"] == "At 18:30, only on Monday"


def test_a_bad_patch_changes_nothing(api, workspace):
    schedule = FlowScheduleFactory(workspace=workspace, cron="0 9 * * *")
    response = api.patch(f"/api/v1/schedules/{schedule.pk}",
                         {"enabled": False, "cron": "0 25 * * *"}, format="json")
    assert response.status_code == 400 and "cron" in response.json()["error"]["fields"]
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.cron == "0 9 * * *" and task_of(schedule.pk).enabled


def test_deleting_a_schedule_or_its_flow_deletes_the_beat_task(api, workspace):
    kept, dropped = FlowScheduleFactory.create_batch(2, workspace=workspace)
    assert api.delete(f"/api/v1/schedules/{dropped.pk}").status_code == 204
    assert not PeriodicTask.objects.filter(name=f"flow-schedule:{dropped.pk}").exists()
    kept.flow.delete()  # a cascade that bypasses the services still takes the task along
    assert not PeriodicTask.objects.filter(task=schedules.FIRE_TASK).exists()


def test_presets_are_valid_described_expressions(api):
    presets = api.get("/api/v1/schedules/presets").json()
    crons = {p["cron"]: p for p in presets}
    assert {"*/15 * * * *", "0 * * * *", "0 9 * * *", "0 9 * * 1-5", "0 9 * * 1",
            "0 9 1 * *"} <= set(crons)
    assert crons["0 9 * * 1-5"]["description"] == "At 09:00, Monday through Friday"
    for preset in presets:
        cron.cron_parse(preset["cron"])


def test_the_runs_endpoint_lists_the_history_newest_first(api, workspace):
    schedule = FlowScheduleFactory(workspace=workspace, cron="*/15 * * * *",
                                   now=at("2025-06-02T08:50:00Z"))
    schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:00:01Z"))
    schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:15:01Z"))
    runs = api.get(f"/api/v1/schedules/{schedule.pk}/runs").json()
    assert runs["count"] == 2
    assert [r["occurrence_at"] for r in runs["results"]] == ["2025-06-02T09:15:00Z",
                                                             "2025-06-02T09:00:00Z"]
    assert runs["results"][0]["status"] == "running" and runs["results"][0]["bulk_start_id"]


# --- validate-cron --------------------------------------------------------------------------

def test_validate_cron_describes_and_lists_the_next_runs_in_the_zone_and_in_utc(api):
    response = api.post("/api/v1/utils/validate-cron",
                        {"expression": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
                        format="json")
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert (answer["valid"], answer["error"]) == (True, None)
    assert answer["description"] == "At 09:00, Monday through Friday"
    assert len(answer["next_runs"]) == 5
    for run in answer["next_runs"]:
        local, utc = datetime.fromisoformat(run["local"]), at(run["utc"])
        assert local == utc and run["utc"].endswith("Z")
        assert (local.hour, local.minute) == (9, 0) and local.isoweekday() <= 5
        assert local.utcoffset() == local.astimezone(BERLIN).utcoffset()


@pytest.mark.parametrize("expression,description", [
    ("@yearly", "At 00:00, on day 1 of the month, only in January"),
    ("@annually", "At 00:00, on day 1 of the month, only in January"),
    ("@monthly", "At 00:00, on day 1 of the month"),
    ("@weekly", "At 00:00, only on Sunday"),
    ("@daily", "At 00:00"),
    ("@midnight", "At 00:00"),
    ("@hourly", "Every hour"),
    ("*/15 * * * *", "Every 15 minutes"),
    ("0 9 * * MON-FRI", "At 09:00, Monday through Friday"),
])
def test_validate_cron_accepts_aliases_and_names(api, expression, description):
    answer = api.post("/api/v1/utils/validate-cron", {"expression": expression},
                      format="json").json()
    assert answer["valid"] is True and answer["description"] == description
    assert answer["timezone"] == "UTC" and len(answer["next_runs"]) == 5


@pytest.mark.parametrize("expression,reason", [
    ("61 * * * *", "minute: 61 is out of range 0-59"),
    ("0 24 * * *", "hour: 24 is out of range 0-23"),
    ("0 0 32 * *", "day of month: 32 is out of range 1-31"),
    ("0 0 0 * *", "day of month: 0 is out of range 1-31"),
    ("0 0 * 13 *", "month: 13 is out of range 1-12"),
    ("0 0 * * 8", "day of week: 8 is out of range 0-7"),
    ("0 0 30 2 *", "never matches"),
    ("* * * *", "Give 5 fields"),
    ("0 0 * * * *", "Give 5 fields"),
    ("every day", "Give 5 fields"),
    ("x * * * *", "minute: 'x' is not a number"),
    ("@reboot", "Unknown alias"),
    ("*/0 * * * *", "at least 1"),
    ("30-10 * * * *", "runs backwards"),
    ("0 9 * * 1#2", "is not a value, range"),
])
def test_validate_cron_refuses_invalid_and_out_of_range_expressions_with_the_reason(
        api, expression, reason):
    response = api.post("/api/v1/utils/validate-cron",
                        {"expression": expression, "timezone": "UTC"}, format="json")
    assert response.status_code == 400
    answer = response.json()
    assert answer["valid"] is False and answer["next_runs"] == []
    assert answer["error"]["code"] == "invalid_cron"
    assert reason in answer["error"]["message"]
    assert answer["error"]["fields"] == {"expression": [answer["error"]["message"]]}


def test_validate_cron_refuses_an_unknown_time_zone(api):
    response = api.post("/api/v1/utils/validate-cron",
                        {"expression": "0 9 * * *", "timezone": "Europe/Atlantis"},
                        format="json")
    assert response.status_code == 400
    assert "IANA time zone" in response.json()["error"]["fields"]["timezone"][0]
    missing = api.post("/api/v1/utils/validate-cron", {}, format="json")
    assert missing.status_code == 400 and "expression" in missing.json()["error"]["fields"]


def test_the_preview_follows_the_dst_rule():
    check = cron.cron_check(expression="30 2 * * *", timezone="America/New_York",
                                 now=at("2025-03-08T12:00:00Z"))
    assert check["next_runs"][:2] == [
        {"local": "2025-03-09T03:00:00-04:00", "utc": "2025-03-09T07:00:00Z"},
        {"local": "2025-03-10T02:30:00-04:00", "utc": "2025-03-10T06:30:00Z"}]


# --- firing: once per occurrence ------------------------------------------------------------

def test_each_occurrence_starts_once_however_often_it_is_woken(workspace):
    schedule = FlowScheduleFactory(workspace=workspace, cron="*/15 * * * *",
                                   now=at("2025-06-02T08:50:00Z"))
    for wake in ("09:00:00", "09:00:00.400", "09:00:03", "09:01:00", "09:04:59", "09:07:00"):
        schedule_fire(schedule_id=schedule.pk, now=at(f"2025-06-02T{wake}Z"))
    runs = ScheduleRun.objects.filter(schedule=schedule)
    assert [(r.occurrence_at, r.fired_at, r.status) for r in runs] == [
        (at("2025-06-02T09:00:00Z"), at("2025-06-02T09:00:00Z"), "running")]
    assert BulkStart.objects.filter(flow=schedule.flow).count() == 1
    schedule.refresh_from_db()
    assert schedule.runs == 1 and schedule.next_run_at == at("2025-06-02T09:15:00Z")


def test_a_late_wake_up_starts_every_unstarted_occurrence_within_the_grace(workspace):
    schedule = FlowScheduleFactory(workspace=workspace, cron="* * * * *",
                                   now=at("2025-06-02T08:59:30Z"))
    schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:00:01Z"))
    # The queue was backed up: the next wake-up arrives three minutes late.
    started = schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:03:10Z"))
    assert [r.occurrence_at.strftime("%H:%M") for r in started] == ["09:01", "09:02", "09:03"]
    assert ScheduleRun.objects.filter(schedule=schedule).count() == 4


def test_occurrences_before_the_schedule_was_created_or_re_enabled_never_fire(workspace):
    schedule = FlowScheduleFactory(workspace=workspace, cron="0 9 * * *",
                                   catch_up=FlowSchedule.CatchUp.RUN_ONCE,
                                   now=at("2025-06-02T09:03:00Z"))
    assert schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:03:30Z")) == []
    schedule_update(schedule=schedule, enabled=False, now=at("2025-06-02T10:00:00Z"))
    schedule_update(schedule=schedule, enabled=True, now=at("2025-06-03T09:02:00Z"))
    assert schedule_fire(schedule_id=schedule.pk, now=at("2025-06-03T09:02:30Z")) == []
    assert not ScheduleRun.objects.exists()
    schedule.refresh_from_db()
    assert schedule.next_run_at == at("2025-06-04T09:00:00Z")


def test_a_disabled_schedule_woken_by_a_stale_beat_starts_nothing(workspace):
    schedule = FlowScheduleFactory(workspace=workspace, cron="* * * * *",
                                   now=timezone.now() - timedelta(minutes=3))
    schedule_update(schedule=schedule, enabled=False, now=timezone.now() - timedelta(minutes=3))
    assert fire_schedule.apply(args=[str(schedule.pk)]).get() == 0
    assert not ScheduleRun.objects.exists() and not BulkStart.objects.exists()
    assert not Execution.objects.exists()


def test_a_deleted_schedule_woken_by_a_stale_beat_starts_nothing(workspace):
    schedule = FlowScheduleFactory(workspace=workspace, cron="* * * * *",
                                   now=timezone.now() - timedelta(minutes=3))
    schedule_id = str(schedule.pk)
    schedules.schedule_delete(schedule=schedule)
    assert fire_schedule.apply(args=[schedule_id]).get() == 0
    assert not ScheduleRun.objects.exists() and not BulkStart.objects.exists()


# --- counters, last and next run -------------------------------------------------------------

def test_counters_and_last_and_next_run_follow_successes_and_failures(api, workspace):
    contacts = ContactFactory.create_batch(3, workspace=workspace)
    schedule = FlowScheduleFactory(workspace=workspace, cron="0 9 * * *",
                                   audience={"contact_ids": [str(c.pk) for c in contacts]},
                                   data={"source": "cron"}, now=at("2025-06-01T12:00:00Z"))

    def fire(day: str) -> ScheduleRun:
        [run] = schedule_fire(schedule_id=schedule.pk, now=at(f"2025-06-0{day}T09:00:02Z"))
        return run

    def state() -> tuple:
        answer = api.get(f"/api/v1/schedules/{schedule.pk}").json()
        return (answer["runs"], answer["successes"], answer["failures"],
                answer["last_run_at"], answer["last_run_status"], answer["next_run_at"])

    first = fire("2")
    assert state() == (1, 0, 0, "2025-06-02T09:00:02Z", "running", "2025-06-03T09:00:00Z")
    assert drain(first) == 1
    first.refresh_from_db()
    assert (first.status, first.total, first.started, first.skipped) == ("succeeded", 3, 3, 0)
    assert state() == (1, 1, 0, "2025-06-02T09:00:02Z", "succeeded", "2025-06-03T09:00:00Z")
    executions = Execution.objects.filter(flow=schedule.flow)
    assert {e.contact_id for e in executions} == {c.pk for c in contacts}
    assert {(e.source, json.dumps(e.data)) for e in executions} == {
        ("schedule", '{"source": "cron"}')}

    services.flow_set_status(flow=schedule.flow, status=Flow.Status.PAUSED)
    second = fire("3")
    second.refresh_from_db()
    assert second.status == "failed" and "paused" in second.error
    assert state() == (2, 1, 1, "2025-06-03T09:00:02Z", "failed", "2025-06-04T09:00:00Z")

    services.flow_set_status(flow=schedule.flow, status=Flow.Status.ACTIVE)
    drain(fire("4"))
    assert state() == (3, 2, 1, "2025-06-04T09:00:02Z", "succeeded", "2025-06-05T09:00:00Z")


def test_a_run_fails_when_its_audience_contact_was_deleted(workspace):
    schedule = FlowScheduleFactory(workspace=workspace, now=at("2025-06-01T12:00:00Z"))
    Contact.objects.filter(pk=schedule.audience["contact_id"]).delete()
    [run] = schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:00:00Z"))
    run.refresh_from_db()
    assert run.status == "failed" and "no longer exists" in run.error
    assert run.bulk_start is None and run.finished_at == at("2025-06-02T09:00:00Z")
    schedule.refresh_from_db()
    assert (schedule.runs, schedule.successes, schedule.failures) == (1, 0, 1)
    assert schedule.last_run_status == "failed"
    assert schedule.next_run_at == at("2025-06-03T09:00:00Z")


def test_deleted_contacts_of_a_list_are_counted_as_missing(workspace):
    kept, gone = ContactFactory.create_batch(2, workspace=workspace)
    schedule = FlowScheduleFactory(workspace=workspace, now=at("2025-06-01T12:00:00Z"),
                                   audience={"contact_ids": [str(kept.pk), str(gone.pk)]})
    gone.delete()
    [run] = schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:00:00Z"))
    drain(run)
    run.refresh_from_db()
    assert (run.status, run.started, run.missing) == ("succeeded", 1, 1)


def _default_settings_flow(workspace) -> Flow:
    """Return a flow fit for schedules with the default settings (no allow_reentry)."""
    return FlowFactory(workspace=workspace, scheduled=True, settings={})


def test_each_occurrence_is_a_new_entry_for_a_contact_who_went_through_the_flow(workspace):
    # The flow keeps the default allow_reentry: false, which is for event triggers.
    schedule = FlowScheduleFactory(workspace=workspace, cron="* * * * *",
                                   flow=_default_settings_flow(workspace),
                                   now=at("2025-06-02T08:59:30Z"))
    assert not schedule.flow.live_version.settings.get("allow_reentry", False)
    [first] = schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:00:01Z"))
    drain(first)
    Execution.objects.update(status=Execution.Status.COMPLETED,
                             completed_at=at("2025-06-02T09:00:30Z"))
    [second] = schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:01:01Z"))
    drain(second)
    for run in (first, second):
        run.refresh_from_db()
        assert (run.status, run.total, run.started, run.skipped) == ("succeeded", 1, 1, 0)
    assert Execution.objects.filter(flow=schedule.flow).count() == 2


def test_a_contact_still_in_the_flow_is_skipped_by_the_next_occurrence(api, workspace):
    schedule = FlowScheduleFactory(workspace=workspace, cron="* * * * *",
                                   flow=_default_settings_flow(workspace),
                                   now=at("2025-06-02T08:59:30Z"))
    drain(schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:00:01Z"))[0])
    [second] = schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:01:01Z"))
    drain(second)
    second.refresh_from_db()
    assert (second.started, second.skipped, second.refused) == (0, 1, 1)
    assert second.summary == "0 of 1 started, 1 skipped (already in the flow)"
    [answer, _] = api.get(f"/api/v1/schedules/{schedule.pk}/runs").json()["results"]
    assert (answer["summary"], answer["refused"]) == (second.summary, 1)


def test_run_counters_read_as_words(workspace, monkeypatch):
    monkeypatch.setattr(services, "BULK_BATCH", 2)
    vips = [ContactFactory(workspace=workspace, attributes={"vip": True}) for _ in range(2)]
    ContactFactory.create_batch(2, workspace=workspace, attributes={"vip": False})
    schedule = FlowScheduleFactory(workspace=workspace, audience={"filter": VIP},
                                   flow=_default_settings_flow(workspace),
                                   cron="* * * * *", now=at("2025-06-02T08:59:30Z"))
    services.execution_start(flow=schedule.flow, contact=vips[0])  # still running
    [run] = schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:00:01Z"))
    drain(run)
    run.refresh_from_db()
    assert run.summary == (
        "1 of 2 started, 1 skipped (already in the flow), 2 did not match the filter")


def test_a_filter_audience_starts_matching_contacts_in_batches(workspace, monkeypatch):
    monkeypatch.setattr(services, "BULK_BATCH", 2)
    vips = [ContactFactory(workspace=workspace, attributes={"vip": True}) for _ in range(3)]
    ContactFactory.create_batch(2, workspace=workspace, attributes={"vip": False})
    ContactFactory(workspace=WorkspaceFactory(), attributes={"vip": True})
    schedule = FlowScheduleFactory(workspace=workspace, audience={"filter": VIP},
                                   now=at("2025-06-01T12:00:00Z"))
    [run] = schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:00:00Z"))
    assert drain(run) == 3  # five contacts in this workspace: batches of 2, 2 and 1
    run.refresh_from_db()
    assert (run.status, run.started, run.skipped) == ("succeeded", 3, 2)
    assert {e.contact_id for e in Execution.objects.all()} == {c.pk for c in vips}


def test_a_flow_paused_mid_run_fails_the_run_with_what_it_started(workspace, monkeypatch):
    monkeypatch.setattr(services, "BULK_BATCH", 1)
    contacts = ContactFactory.create_batch(3, workspace=workspace)
    schedule = FlowScheduleFactory(workspace=workspace, now=at("2025-06-01T12:00:00Z"),
                                   audience={"contact_ids": [str(c.pk) for c in contacts]})
    [run] = schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:00:00Z"))
    assert schedule_run_advance(run_id=run.pk) is True
    services.flow_set_status(flow=schedule.flow, status=Flow.Status.PAUSED)
    assert schedule_run_advance(run_id=run.pk) is False
    run.refresh_from_db()
    assert (run.status, run.started) == ("failed", 1) and "paused" in run.error
    assert BulkStart.objects.get(pk=run.bulk_start_id).status == "failed"
    schedule.refresh_from_db()
    assert (schedule.successes, schedule.failures, schedule.last_run_status) == (0, 1, "failed")
    assert schedule_run_advance(run_id=run.pk) is False  # a duplicate batch task: no-op


# --- catch-up after downtime -----------------------------------------------------------------

def test_catch_up_skip_records_a_missed_occurrence_without_starting_it(workspace):
    schedule = FlowScheduleFactory(workspace=workspace, cron="0 9 * * *",
                                   now=at("2025-06-01T12:00:00Z"))
    # Everything was down from before 09:00 until 11:00.
    [run] = schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T11:00:00Z"))
    assert (run.status, run.occurrence_at) == ("skipped", at("2025-06-02T09:00:00Z"))
    assert schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T11:00:15Z")) == []
    assert not BulkStart.objects.exists()
    schedule.refresh_from_db()
    assert (schedule.runs, schedule.last_run_at) == (0, None)
    assert schedule.next_run_at == at("2025-06-03T09:00:00Z")


def test_catch_up_run_once_starts_only_the_latest_missed_occurrence_once(workspace):
    schedule = FlowScheduleFactory(workspace=workspace, cron="0 * * * *",
                                   catch_up=FlowSchedule.CatchUp.RUN_ONCE,
                                   now=at("2025-06-02T05:30:00Z"))
    # Down from 05:40 to 09:40: 06:00, 07:00, 08:00 and 09:00 were missed.
    [run] = schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:40:00Z"))
    assert (run.status, run.occurrence_at) == ("running", at("2025-06-02T09:00:00Z"))
    assert schedule_fire(schedule_id=schedule.pk, now=at("2025-06-02T09:40:15Z")) == []
    assert ScheduleRun.objects.count() == 1
    schedule.refresh_from_db()
    assert schedule.runs == 1 and schedule.next_run_at == at("2025-06-02T10:00:00Z")


# --- the sweep: beat is only the fast path ---------------------------------------------------

def test_the_sweep_fires_a_due_schedule_beat_did_not_wake(workspace):
    schedule = FlowScheduleFactory(workspace=workspace, cron="30 2 * * *",
                                   timezone="America/New_York", now=at("2025-03-08T12:00:00Z"))
    assert schedule.next_run_at == at("2025-03-09T07:00:00Z")  # 02:30 does not exist: 03:00
    assert schedules.schedules_sweep(now=at("2025-03-09T06:59:50Z"))["fired"] == 0
    assert schedules.schedules_sweep(now=at("2025-03-09T07:00:10Z"))["fired"] == 1
    assert schedules.schedules_sweep(now=at("2025-03-09T07:00:25Z"))["due"] == 0
    schedule.refresh_from_db()
    assert schedule.next_run_at == at("2025-03-10T06:30:00Z")


def test_the_sweep_requeues_a_stalled_run_then_fails_it_after_the_timeout(workspace, settings):
    schedule = FlowScheduleFactory(workspace=workspace, cron="* * * * *",
                                   now=timezone.now() - timedelta(seconds=70))
    [run, *_] = schedule_fire(schedule_id=schedule.pk)
    ScheduleRun.objects.filter(pk=run.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.SCHEDULE_RUN_REQUEUE_SECONDS + 5))
    assert schedules.schedules_sweep()["requeued"] >= 1
    ScheduleRun.objects.filter(pk=run.pk).update(
        fired_at=timezone.now() - timedelta(seconds=settings.SCHEDULE_RUN_TIMEOUT_SECONDS + 5),
        updated_at=timezone.now() - timedelta(seconds=settings.SCHEDULE_RUN_REQUEUE_SECONDS + 5))
    assert schedules.schedules_sweep()["timed_out"] == 1
    run.refresh_from_db()
    assert run.status == "failed" and "did not finish" in run.error
    assert BulkStart.objects.get(pk=run.bulk_start_id).status == "failed"


def test_schedules_due_together_fire_in_one_pass_each_once_with_its_own_outcome(
        workspace, django_assert_max_num_queries):
    """Twelve schedules due at 09:00 fire in one pass: a handful of statements, not a
    transaction each; a second pass and beat's own wake-up fire nothing more."""
    created = at("2025-06-02T08:50:00Z")
    shared = FlowFactory(workspace=workspace, scheduled=True)
    ok = [FlowScheduleFactory(workspace=workspace, flow=shared, now=created) for _ in range(9)]
    Contact.objects.filter(pk=ok[0].audience["contact_id"]).delete()  # fails: contact gone
    paused = FlowScheduleFactory(workspace=workspace, now=created)
    services.flow_set_status(flow=paused.flow, status=Flow.Status.PAUSED)
    fired_early = FlowScheduleFactory(workspace=workspace, now=created)
    schedule_fire(schedule_id=fired_early.pk, now=at("2025-06-02T09:00:00Z"))
    berlin = FlowScheduleFactory(workspace=workspace, flow=shared, now=created,
                                 cron="0 11 * * *",
                                 timezone="Europe/Berlin")  # 11:00 CEST is 09:00 UTC
    now = at("2025-06-02T09:00:01Z")
    # ~12 statements for all of them, plus ~7 for each run that fails (its event, counters).
    with django_assert_max_num_queries(30):
        due, fired = schedules.schedules_fire_due(now=now)
    assert (due, fired) == (11, 11)
    assert schedules.schedules_fire_due(now=now) == (0, 0)
    assert schedule_fire(schedule_id=ok[1].pk, now=at("2025-06-02T09:00:02Z")) == []
    runs = {r.schedule_id: r for r in ScheduleRun.objects.all()}
    assert len(runs) == 12
    assert all(r.occurrence_at == at("2025-06-02T09:00:00Z") for r in runs.values())
    assert runs[ok[0].pk].status == "failed" and "no longer exists" in runs[ok[0].pk].error
    assert runs[paused.pk].status == "failed" and "paused" in runs[paused.pk].error
    for schedule in (*ok[1:], berlin):
        run = runs[schedule.pk]
        assert (run.status, run.fired_at) == ("running", now)
        assert run.bulk_start.contact_ids == [schedule.audience["contact_id"]]
        drain(run)
        run.refresh_from_db()
        assert (run.status, run.started) == ("succeeded", 1)
    counts = {s.pk: (s.runs, s.successes, s.failures, s.next_run_at)
              for s in FlowSchedule.objects.all()}
    tomorrow = at("2025-06-03T09:00:00Z")
    assert counts[ok[0].pk] == counts[paused.pk] == (1, 0, 1, tomorrow)
    assert {counts[s.pk] for s in (*ok[1:], berlin)} == {(1, 1, 0, tomorrow)}
    assert counts[fired_early.pk] == (1, 0, 0, tomorrow)  # fired before, not drained


# --- beat sees changes; sync_schedules -------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_beat_sees_disabling_editing_and_deleting_without_a_restart(api, workspace):
    from config.celery import app

    schedule = FlowScheduleFactory(workspace=workspace, cron="*/10 * * * *")
    name = f"{schedules.TASK_PREFIX}{schedule.pk}"
    beat = DatabaseScheduler(app=app)  # what `celery beat` runs, reading the same tables
    assert name in beat.schedule  # (its first change check only records the timestamp)
    url = f"/api/v1/schedules/{schedule.pk}"
    api.patch(url, {"enabled": False}, format="json")
    assert name not in beat.schedule
    api.patch(url, {"enabled": True, "cron": "*/7 * * * *", "timezone": "Asia/Tokyo"},
              format="json")
    entry = beat.schedule[name]
    assert entry.schedule.minute == set(range(0, 60, 7))
    assert entry.schedule.tz == ZoneInfo("Asia/Tokyo")
    assert entry.kwargs == {"schedule_id": str(schedule.pk)} and entry.task == schedules.FIRE_TASK
    api.delete(url)
    assert name not in beat.schedule


def test_sync_schedules_repairs_every_mismatch_and_reports_it(workspace):
    missing, wrong, fine = FlowScheduleFactory.create_batch(3, workspace=workspace,
                                                            cron="0 9 * * *",
                                                            timezone="Europe/Berlin")
    PeriodicTask.objects.filter(pk=missing.periodic_task_id).delete()
    task = task_of(wrong.pk)
    task.crontab = CrontabSchedule.objects.create(minute="5", hour="3", timezone="UTC")
    task.enabled = False
    task.save()
    orphan = PeriodicTask.objects.create(
        name=f"{schedules.TASK_PREFIX}{uuid.uuid4()}", task=schedules.FIRE_TASK,
        crontab=task.crontab)
    fine_task = task_of(fine.pk)

    dry = StringIO()
    call_command("sync_schedules", "--dry-run", stdout=dry)
    assert f"would repair schedule {missing.pk}: missing" in dry.getvalue()
    assert PeriodicTask.objects.filter(pk=orphan.pk).exists()

    out = StringIO()
    call_command("sync_schedules", stdout=out)
    report = out.getvalue()
    assert f"repaired schedule {missing.pk}: missing" in report
    assert f"repaired schedule {wrong.pk}: enabled, crontab" in report
    assert f"removed orphaned periodic task {orphan.name}" in report
    assert "3 schedule(s) checked, 2 repaired, 1 orphaned periodic task(s) removed." in report
    assert str(fine.pk) not in report
    for schedule in (missing, wrong, fine):
        task = task_of(schedule.pk)
        assert task.enabled and (task.crontab.hour, str(task.crontab.timezone)) == (
            "9", "Europe/Berlin")
    assert task_of(fine.pk).date_changed == fine_task.date_changed
    assert not PeriodicTask.objects.filter(pk=orphan.pk).exists()

    again = StringIO()
    call_command("sync_schedules", stdout=again)
    assert again.getvalue().strip() == ("3 schedule(s) checked, 0 repaired, 0 orphaned "
                                        "periodic task(s) removed.")


def test_beat_start_runs_the_sync_and_has_the_scheduler_read_the_repaired_table(workspace):
    schedule = FlowScheduleFactory(workspace=workspace)
    PeriodicTask.objects.filter(pk=schedule.periodic_task_id).delete()
    class Service:  # beat's Service, as far as the handler looks at it
        scheduler = SimpleNamespace(_initial_read=False)

    service = Service()
    beat_init.send(sender=service)
    assert task_of(schedule.pk).enabled
    assert service.scheduler._initial_read is True


def test_admin_lists_schedules_and_changes_them_through_the_services(client, workspace):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    schedule = FlowScheduleFactory(workspace=workspace, cron="0 9 * * *")
    schedule_fire(schedule_id=schedule.pk, now=schedule.next_run_at)
    for url in ("/admin/flows/flowschedule/", f"/admin/flows/flowschedule/{schedule.pk}/change/",
                "/admin/flows/schedulerun/"):
        assert client.get(url).status_code == 200, url
    client.post("/admin/flows/flowschedule/", {"action": "disable",
                                               "_selected_action": [schedule.pk]})
    assert task_of(schedule.pk).enabled is False
    response = client.post(f"/admin/flows/flowschedule/{schedule.pk}/change/", {
        "cron": "15 7 * * *", "timezone": "Europe/Berlin", "enabled": "on",
        "audience": json.dumps(schedule.audience), "data": "{}", "catch_up": "skip"})
    assert response.status_code == 302
    task = task_of(schedule.pk)
    assert task.enabled and (task.crontab.minute, task.crontab.hour) == ("15", "7")
    schedule.refresh_from_db()
    assert schedule.runs == 1 and schedule.next_run_at is not None


# --- end to end on a real worker -------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_a_woken_schedule_starts_the_flow_on_a_real_worker(workspace, live_worker):
    contacts = ContactFactory.create_batch(2, workspace=workspace)
    schedule = FlowScheduleFactory(workspace=workspace, cron="* * * * *",
                                   audience={"contact_ids": [str(c.pk) for c in contacts]},
                                   now=timezone.now() - timedelta(seconds=61))
    fire_schedule.apply_async(args=[str(schedule.pk)], queue="flows")
    wait_until(lambda: ScheduleRun.objects.exists() and not ScheduleRun.objects.filter(
        status="running").exists(), timeout=30)
    runs = list(ScheduleRun.objects.all())
    assert {r.status for r in runs} == {"succeeded"} and len(runs) in (1, 2)
    wait_until(lambda: Execution.objects.filter(status="completed").count() == 2 * len(runs))
    schedule.refresh_from_db()
    assert (schedule.runs, schedule.successes, schedule.last_run_status) == (
        len(runs), len(runs), "succeeded")
    assert Contact.objects.filter(attributes__scheduled=True).count() == 2
