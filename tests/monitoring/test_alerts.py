"""Alert rules: measuring each type, firing once, cooldown, resolving, delivery, the API."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from flows.models import FlowSchedule, ScheduleRun
from messaging import ratelimit
from messaging.models import Message
from messaging.providers import breaker
from messaging.providers.registry import providers_for
from monitoring import alerts
from monitoring.models import AlertEvent, AlertRule
from tests.factories import (
    AlertRuleFactory,
    DeadLetterFactory,
    ExecutionFactory,
    FlowFactory,
    MessageFactory,
    WorkspaceFactory,
)
from tests.support.stub_server import StubServer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db


def outcomes(workspace, *, failed: int = 0, sent: int = 0, at=None, channel: str = "sms"):
    """Create messages that failed or were sent at the given time (default: a minute ago)."""
    at = at or timezone.now() - timedelta(minutes=1)
    MessageFactory.create_batch(failed, workspace=workspace, channel=channel, status="failed",
                                failed_at=at)
    MessageFactory.create_batch(sent, workspace=workspace, channel=channel, status="sent",
                                sent_at=at)


# --- firing, cooldown, resolving and delivery, end to end -------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_failure_rate_alert_fires_once_resolves_and_reaches_email_webhook_and_slack(
        workspace, stub_server: StubServer, live_worker, allow_local, api):
    workspace.settings = {"providers": {"email": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    AlertRuleFactory(workspace=workspace, name="sms failing", channel="email",
                     recipients=["ops@example.com"])
    AlertRuleFactory(workspace=workspace, name="sms failing", channel="webhook",
                     recipients=[f"{stub_server.url}/hooks/alert"])
    AlertRuleFactory(workspace=workspace, name="sms failing", channel="slack",
                     recipients=[f"{stub_server.url}/slack/T0/B0/x"])
    now = timezone.now()
    outcomes(workspace, failed=3, sent=1, at=now - timedelta(minutes=1))

    assert alerts.alerts_evaluate(now=now) == {"triggered": 3}
    by_path = {r.path: r for r in stub_server.wait_for(3)}
    email = by_path["/api/email/send"].json()
    assert email["to"] == "ops@example.com"
    assert email["subject"].startswith("[firing] sms failing: failure rate 75 %")
    hook = by_path["/hooks/alert"]
    body = Webhook(workspace.webhook_secret).verify(hook.body, hook.headers)
    assert (body["type"], body["event"]["value"], body["rule"]["threshold"]) == (
        "alert.triggered", 75.0, 50.0)
    assert by_path["/slack/T0/B0/x"].json() == {"text": email["subject"]}

    assert alerts.alerts_evaluate(now=now + timedelta(minutes=1)) == {"firing": 3}
    outcomes(workspace, sent=20, at=now + timedelta(minutes=1))
    assert alerts.alerts_evaluate(now=now + timedelta(minutes=2)) == {"resolved": 3}
    notices = stub_server.wait_for(6)[3:]
    assert all("[resolved]" in json.dumps(r.json()) for r in notices)

    outcomes(workspace, failed=40, at=now + timedelta(minutes=2))
    assert alerts.alerts_evaluate(now=now + timedelta(minutes=3)) == {"suppressed": 3}
    time.sleep(0.5)
    assert len(stub_server.requests) == 6  # nothing sent within the cooldown
    assert AlertEvent.objects.filter(notified=False, resolved_at__isnull=True).count() == 3

    wait_until(lambda: Message.objects.filter(source="alert", status="sent").count() == 6)
    events = api.get("/api/v1/alerts/events?state=resolved").json()["results"]
    assert len(events) == 3
    assert all(event["delivery"] == {"sent": 1, "failed": 0, "pending": 0, "delivered": True}
               for event in events)


# --- each rule type ----------------------------------------------------------------------------

def test_a_failure_rate_under_min_samples_is_not_judged(workspace):
    rule = AlertRuleFactory(workspace=workspace, min_samples=5)
    outcomes(workspace, failed=2)
    assert alerts.rule_measure(rule=rule) is None
    outcomes(workspace, failed=1, sent=2)
    assert alerts.rule_measure(rule=rule) == 60.0


def test_failure_rate_counts_one_channel_and_ignores_old_outcomes_and_alerts(workspace):
    rule = AlertRuleFactory(workspace=workspace, message_channel="email")
    outcomes(workspace, failed=3, channel="sms")
    outcomes(workspace, failed=1, sent=1, channel="email")
    outcomes(workspace, failed=5, channel="email", at=timezone.now() - timedelta(hours=1))
    MessageFactory(workspace=workspace, channel="email", status="failed", source="alert",
                   failed_at=timezone.now())
    assert alerts.rule_measure(rule=rule) == 50.0


def test_a_flow_failure_rate_counts_its_executions(workspace):
    flow = FlowFactory(workspace=workspace)
    rule = AlertRuleFactory(workspace=workspace, flow=flow)
    done = timezone.now() - timedelta(minutes=1)
    ExecutionFactory.create_batch(3, workspace=workspace, flow=flow, status="failed",
                                  completed_at=done)
    ExecutionFactory(workspace=workspace, flow=flow, status="completed", completed_at=done)
    ExecutionFactory(workspace=workspace, status="failed", completed_at=done)  # another flow
    assert alerts.rule_measure(rule=rule) == 75.0
    # Parallel branches are parts of an execution: only its own outcome counts.
    parent = ExecutionFactory(workspace=workspace, flow=flow, status="completed",
                              completed_at=done)
    ExecutionFactory.create_batch(2, workspace=workspace, flow=flow, status="failed",
                                  completed_at=done, parent=parent, root=parent)
    assert alerts.rule_measure(rule=rule) == 60.0


def test_the_dead_letter_count_skips_failed_alert_notifications(workspace):
    rule = AlertRuleFactory(workspace=workspace, type="dead_letters", threshold=2)
    DeadLetterFactory.create_batch(2, workspace=workspace)
    DeadLetterFactory(workspace=workspace, payload={"metadata": {"alert_event_id": 1}})
    DeadLetterFactory(workspace=workspace, created_at=timezone.now() - timedelta(hours=2))
    assert alerts.rule_measure(rule=rule) == 2.0
    assert alerts.rule_breached(rule=rule, value=2.0)


def test_the_backlog_counts_queued_messages_and_overdue_timers(workspace):
    rule = AlertRuleFactory(workspace=workspace, type="queue_backlog", threshold=10)
    now = timezone.now()
    MessageFactory.create_batch(2, workspace=workspace, status="queued")
    MessageFactory(workspace=workspace, status="retrying", due_at=now - timedelta(seconds=5))
    MessageFactory(workspace=workspace, status="scheduled", due_at=now + timedelta(hours=1))
    MessageFactory(workspace=WorkspaceFactory(), status="queued")
    assert alerts.rule_measure(rule=rule, now=now) == 3.0


def test_the_average_execution_time_covers_finished_executions_in_the_window(workspace):
    rule = AlertRuleFactory(workspace=workspace, type="avg_execution_time", threshold=30)
    now = timezone.now()
    for seconds in (10, 50):
        ExecutionFactory(workspace=workspace, status="completed",
                         started_at=now - timedelta(seconds=seconds + 60),
                         completed_at=now - timedelta(seconds=60))
    ExecutionFactory(workspace=workspace, status="running")
    assert alerts.rule_measure(rule=rule, now=now) == 30.0


def test_executions_stuck_past_their_due_time_fire_and_resolve_once_they_move(workspace):
    rule = AlertRuleFactory(workspace=workspace, type="executions_stuck", threshold=2,
                            window_seconds=300)
    now = timezone.now()
    late = now - timedelta(minutes=10)
    timer = ExecutionFactory(workspace=workspace, status="waiting", wake_at=late)
    ExecutionFactory(workspace=workspace, status="running", updated_at=late)  # nobody advances
    ExecutionFactory(workspace=workspace, status="running", updated_at=late,
                     lease_until=now + timedelta(seconds=30))  # a worker has it now
    ExecutionFactory(workspace=workspace, status="waiting", wake_at=now - timedelta(minutes=1))
    ExecutionFactory(workspace=workspace, status="waiting", wake_at=late, paused_at=late)
    ExecutionFactory(workspace=WorkspaceFactory(), status="waiting", wake_at=late)

    assert alerts.rule_measure(rule=rule, now=now) == 2.0
    assert alerts.alert_rule_evaluate(rule_id=rule.pk, now=now) == "triggered"
    event = AlertEvent.objects.get(rule=rule)
    assert "executions stuck past their due time" in event.summary
    timer.status = "completed"
    timer.save()
    assert alerts.alert_rule_evaluate(rule_id=rule.pk, now=now) == "resolved"


def test_the_execution_success_rate_fires_when_it_falls_below_the_threshold(workspace):
    flow = FlowFactory(workspace=workspace)
    rule = AlertRuleFactory(workspace=workspace, type="execution_success_rate",
                            threshold=80, flow=flow, min_samples=2)
    done = timezone.now() - timedelta(minutes=1)
    ExecutionFactory(workspace=workspace, flow=flow, status="completed", completed_at=done)
    assert alerts.rule_measure(rule=rule) is None  # under min_samples
    ExecutionFactory.create_batch(3, workspace=workspace, flow=flow, status="completed",
                                  completed_at=done)
    ExecutionFactory(workspace=workspace, flow=flow, status="cancelled", completed_at=done)
    ExecutionFactory(workspace=workspace, status="failed", completed_at=done)  # another flow
    assert alerts.rule_measure(rule=rule) == 100.0
    assert not alerts.rule_breached(rule=rule, value=100.0)
    ExecutionFactory.create_batch(2, workspace=workspace, flow=flow, status="failed",
                                  completed_at=done)
    assert alerts.rule_measure(rule=rule) == round(100 * 4 / 6, 2)
    assert alerts.rule_breached(rule=rule, value=alerts.rule_measure(rule=rule))


def test_rate_limit_events_count_the_deferrals_in_the_window(workspace):
    rule = AlertRuleFactory(workspace=workspace, type="rate_limit_events", threshold=3,
                            message_channel="sms")
    try:
        for channel in ("sms", "sms", "email"):
            ratelimit.record_deferral(workspace_id=str(workspace.pk), channel=channel,
                                      delay=0.5)
        assert alerts.rule_measure(rule=rule) == 2.0
        assert alerts.rule_measure(rule=rule, now=timezone.now() + timedelta(hours=1)) == 0.0
    finally:
        ratelimit.reset(str(workspace.pk))


def test_a_provider_down_alert_fires_while_a_breaker_is_open_and_for_a_window_after(
        workspace, settings):
    settings.PROVIDER_BREAKER_FAILURES = 2
    settings.PROVIDER_BREAKER_COOLDOWN_SECONDS = 0.1
    workspace.settings = {"providers": {"sms": [{"name": "http", "api_url": "https://a.example"},
                                                {"name": "console"}]}}
    workspace.save()
    rule = AlertRuleFactory(workspace=workspace, type="provider_down", threshold=1,
                            message_channel="sms", window_seconds=300)
    email_rule = AlertRuleFactory(workspace=workspace, type="provider_down", threshold=1,
                                  message_channel="email")
    [first, _] = providers_for(workspace, "sms")
    assert alerts.rule_measure(rule=rule) == 0.0
    for _ in range(2):
        breaker.record(first.breaker_id, workspace_id=str(workspace.pk), kind=breaker.FAILURE,
                       latency=0.1)
    assert alerts.alert_rule_evaluate(rule_id=rule.pk) == "triggered"
    assert alerts.rule_measure(rule=email_rule) == 0.0
    time.sleep(0.15)  # the cool-down: a probe succeeds and closes it
    assert breaker.acquire(first.breaker_id)[0]
    breaker.record(first.breaker_id, workspace_id=str(workspace.pk), kind=breaker.SUCCESS,
                   latency=0.1)
    assert alerts.rule_measure(rule=rule) == 1.0  # opened within the window
    later = timezone.now() + timedelta(minutes=6)
    assert alerts.alert_rule_evaluate(rule_id=rule.pk, now=later) == "resolved"


def test_a_schedule_without_a_successful_run_in_the_window_fires(workspace):
    flow = FlowFactory(workspace=workspace)
    schedule = FlowSchedule.objects.create(workspace=workspace, flow=flow, cron="0 * * * *",
                                             active_since=timezone.now())
    rule = AlertRuleFactory(workspace=workspace, type="schedule_no_success", threshold=1,
                            schedule_id=str(schedule.pk), window_seconds=3600)
    now = timezone.now()
    ScheduleRun.objects.create(schedule=schedule, occurrence_at=now - timedelta(minutes=10),
                         status="failed", fired_at=now)
    assert alerts.rule_measure(rule=rule, now=now) == 0.0
    assert alerts.rule_breached(rule=rule, value=0.0)
    ScheduleRun.objects.create(schedule=schedule, occurrence_at=now - timedelta(minutes=5),
                         status="succeeded", fired_at=now)
    assert not alerts.rule_breached(rule=rule, value=alerts.rule_measure(rule=rule, now=now))


def test_a_disabled_rule_is_not_evaluated(workspace):
    rule = AlertRuleFactory(workspace=workspace, enabled=False)
    outcomes(workspace, failed=3)
    assert alerts.alerts_evaluate() == {}
    assert alerts.alert_rule_evaluate(rule_id=rule.pk) == "skipped"


def test_an_alert_notifies_again_after_its_cooldown(workspace):
    rule = AlertRuleFactory(workspace=workspace, cooldown_seconds=600)
    now = timezone.now()
    outcomes(workspace, failed=1, at=now - timedelta(minutes=1))
    assert alerts.alert_rule_evaluate(rule_id=rule.pk, now=now) == "triggered"
    assert alerts.alert_rule_evaluate(rule_id=rule.pk, now=now + timedelta(minutes=6)) == \
        "resolved"  # the failure left the 5 min window
    outcomes(workspace, failed=1, at=now + timedelta(minutes=10))
    assert alerts.alert_rule_evaluate(rule_id=rule.pk, now=now + timedelta(minutes=11)) == \
        "triggered"
    emails = Message.objects.filter(source="alert", channel="email")
    assert [m.content["subject"][:9] for m in emails.order_by("created_at")] == [
        "[firing] ", "[resolved", "[firing] "]


# --- REST API -------------------------------------------------------------------------------

RULE = {"name": "SMS failing", "type": "failure_rate", "threshold": 20, "window_seconds": 600,
        "message_channel": "sms", "channel": "email", "recipients": ["ops@example.com"],
        "cooldown_seconds": 1800}


def test_alert_rules_are_created_listed_updated_and_deleted_per_workspace(api, other_api):
    created = api.post("/api/v1/alerts", RULE, format="json")
    assert created.status_code == 201, created.json()
    rule = created.json()
    assert (rule["state"], rule["enabled"], rule["flow"]) == ("ok", True, None)
    assert [r["id"] for r in api.get("/api/v1/alerts").json()["results"]] == [rule["id"]]
    assert other_api.get(f"/api/v1/alerts/{rule['id']}").status_code == 404
    patched = api.patch(f"/api/v1/alerts/{rule['id']}", {"enabled": False}, format="json")
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert api.delete(f"/api/v1/alerts/{rule['id']}").status_code == 204
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize(("change", "field"), [
    ({"recipients": ["not-an-email"]}, "recipients"),
    ({"channel": "webhook", "recipients": ["http://10.0.0.1/hook"]}, "recipients"),
    ({"channel": "slack", "recipients": ["ftp://hooks.slack.com/x"]}, "recipients"),
    ({"threshold": 150}, "threshold"),
    ({"window_seconds": 5}, "window_seconds"),
    ({"type": "schedule_no_success"}, "schedule_id"),
    # Not a UUID: the lookup raised ValueError (a 500) before it was checked.
    ({"type": "schedule_no_success", "schedule_id": "f00d"}, "schedule_id"),
    ({"type": "schedule_no_success", "schedule_id": "0" * 64}, "schedule_id"),
])
def test_alert_rules_that_cannot_work_are_refused(api, change, field):
    response = api.post("/api/v1/alerts", {**RULE, **change}, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_a_schedule_id_that_is_not_a_uuid_answers_400_naming_it(api):
    response = api.post("/api/v1/alerts", {**RULE, "type": "schedule_no_success",
                                           "schedule_id": "f00d"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["schedule_id"] == [
        "Not a schedule id (a UUID)."]


def test_an_alert_rule_cannot_watch_another_workspaces_flow(api):
    foreign = FlowFactory(workspace=WorkspaceFactory())
    response = api.post("/api/v1/alerts", {**RULE, "flow": str(foreign.pk)}, format="json")
    assert response.status_code == 400
    assert "flow" in response.json()["error"]["fields"]


def test_alert_events_list_filters_by_state_and_rule(api, workspace, other_api):
    rule = AlertRuleFactory(workspace=workspace)
    outcomes(workspace, failed=2)
    assert alerts.alert_rule_evaluate(rule_id=rule.pk) == "triggered"
    firing = api.get("/api/v1/alerts/events?state=firing").json()["results"]
    assert [(e["rule"], e["state"], e["value"], e["notified"]) for e in firing] == [
        (rule.pk, "firing", 100.0, True)]
    assert firing[0]["delivery"]["pending"] == 1  # no worker here: still queued
    assert api.get("/api/v1/alerts/events?state=resolved").json()["results"] == []
    assert api.get(f"/api/v1/alerts/{rule.pk}").json()["state"] == "firing"
    assert other_api.get("/api/v1/alerts/events").json()["results"] == []
