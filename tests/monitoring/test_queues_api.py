"""Queue health/metrics/statistics and rate-limit endpoints."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from messaging import ratelimit
from tests.factories import ExecutionFactory, MessageFactory, StaffUserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def empty_broker() -> Iterator[None]:
    from config.celery import app
    from messaging import ratelimit
    from monitoring.health import HEARTBEAT_KEY

    app.control.purge()
    # The heartbeats of workers that earlier tests ran and stopped: stale by now, they
    # would make every queue look degraded.
    ratelimit.client().delete(HEARTBEAT_KEY)
    yield
    app.control.purge()


@pytest.fixture
def staff_api() -> APIClient:
    client = APIClient()
    client.force_login(StaffUserFactory())
    return client


def test_queue_metrics_report_depth_rows_and_success_rate_per_queue(api, workspace,
                                                                    empty_broker):
    from messaging.tasks import deliver_messages

    for priority in (0, 6):
        deliver_messages.apply_async(args=[["00000000-0000-0000-0000-000000000000"]],
                                     queue="sms", priority=priority)
    now = timezone.now()
    MessageFactory(workspace=workspace, status="queued", enqueued_at=now - timedelta(minutes=2))
    MessageFactory(workspace=workspace, channel="mms", status="sending")
    MessageFactory(workspace=workspace, status="scheduled", due_at=now + timedelta(hours=1))
    MessageFactory.create_batch(3, workspace=workspace, status="sent", sent_at=now)
    MessageFactory(workspace=workspace, status="failed", failed_at=now)
    MessageFactory(workspace=workspace, status="failed", failed_at=now - timedelta(hours=3))
    MessageFactory(workspace=WorkspaceFactory(), status="queued")  # not this workspace's
    ExecutionFactory(workspace=workspace, status="waiting", wake_at=now + timedelta(hours=1))
    ExecutionFactory(workspace=workspace, status="failed", completed_at=now)

    body = api.get("/api/v1/queues/metrics?window=1h").json()
    assert body["window_seconds"] == 3600
    sms = body["queues"]["sms"]
    assert (sms["depth"], sms["waiting"], sms["active"], sms["scheduled"]) == (2, 1, 1, 1)
    assert (sms["completed"], sms["failed"], sms["success_rate"]) == (3, 1, 75.0)
    assert 115 <= sms["oldest_waiting_seconds"] <= 180
    assert sms["paused"] is False
    flows = body["queues"]["flows"]
    assert (flows["scheduled"], flows["failed"], flows["success_rate"]) == (1, 1, 0.0)
    assert body["queues"]["email"]["success_rate"] is None  # nothing to judge
    assert list(body["queues"]) == ["sms", "email", "ai", "webhook", "flows", "default"]


def test_queue_health_turns_degraded_when_a_row_waits_too_long(api, workspace, settings,
                                                               empty_broker):
    body = api.get("/api/v1/queues/health").json()
    assert body["status"] == "healthy" and body["broker"] == {"connected": True}
    settings.HEALTH_QUEUE_STALE_SECONDS = 60
    MessageFactory(workspace=workspace, channel="email", status="queued",
                   enqueued_at=timezone.now() - timedelta(minutes=5))
    response = api.get("/api/v1/queues/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["queues"]["email"]["status"] == "degraded"
    assert body["queues"]["sms"]["status"] == "healthy"


def test_queue_health_is_unhealthy_when_the_broker_is_unreachable(api, settings):
    from monitoring import selectors

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.HEALTH_CHECK_TIMEOUT_SECONDS = 0.5
    selectors._redis_broker.cache_clear()
    try:
        response = api.get("/api/v1/queues/health")
    finally:
        selectors._redis_broker.cache_clear()
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"


def test_queue_statistics_sum_the_queues(api, workspace, empty_broker):
    now = timezone.now()
    MessageFactory.create_batch(2, workspace=workspace, channel="email", status="sent",
                                sent_at=now)
    MessageFactory(workspace=workspace, channel="webhook", status="failed", failed_at=now)
    body = api.get("/api/v1/queues/statistics?window=30m").json()
    assert body["window_seconds"] == 1800
    assert (body["totals"]["completed"], body["totals"]["failed"]) == (2, 1)
    assert body["success_rate"] == pytest.approx(66.67)
    assert body["throughput_per_minute"] == pytest.approx(0.1)
    assert body["dispatcher_lag_seconds"] == 0.0


def test_suppressed_messages_are_counted_apart_from_outcomes(api, workspace, empty_broker):
    now = timezone.now()
    MessageFactory(workspace=workspace, channel="sms", status="sent", sent_at=now)
    MessageFactory.create_batch(2, workspace=workspace, channel="mms", status="suppressed",
                                suppressed_reason="unsubscribed")
    old = MessageFactory(workspace=workspace, channel="sms", status="suppressed")
    type(old).objects.filter(pk=old.pk).update(updated_at=now - timedelta(hours=2))
    body = api.get("/api/v1/queues/statistics?window=1h").json()
    assert body["totals"]["suppressed"] == 2
    assert body["queues"]["sms"]["suppressed"] == 2
    assert body["success_rate"] == 100.0
    assert api.get("/api/v1/queues/metrics?window=1h").json()["queues"]["sms"]["suppressed"] == 2


def test_a_bad_window_answers_400(api):
    assert api.get("/api/v1/queues/metrics?window=soon").status_code == 400


def test_queue_endpoints_need_a_key_or_staff(client):
    assert client.get("/api/v1/queues/health").status_code == 401


def test_rate_limit_events_are_listed_with_timestamps_per_workspace(api, workspace, other_api):
    workspace.settings = {"rate_limits": {"sms": "5/s"}}
    workspace.save()
    try:
        for delay in (0.2, 0.4):
            ratelimit.record_deferral(workspace_id=str(workspace.pk), channel="sms",
                                      delay=delay)
        body = api.get("/api/v1/rate-limits").json()["workspaces"]
        assert len(body) == 1
        report = body[0]
        assert (report["workspace_id"], report["deferrals"], report["total"]) == (
            str(workspace.pk), {"sms": 2}, 2)
        assert report["limits"]["sms"] == "5/s"
        assert [e["delay_seconds"] for e in report["events"]] == [0.4, 0.2]  # newest first
        assert report["last_event_at"] == report["events"][0]["at"]
        assert other_api.get("/api/v1/rate-limits").json()["workspaces"][0]["total"] == 0
        future = (timezone.now() + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
        assert api.get("/api/v1/rate-limits", {"since": future}).json()[
            "workspaces"][0]["events"] == []
    finally:
        ratelimit.reset(str(workspace.pk))


def test_only_staff_may_reset_rate_limits(api, workspace, staff_api):
    ratelimit.record_deferral(workspace_id=str(workspace.pk), channel="sms", delay=0.1)
    try:
        refused = api.post("/api/v1/rate-limits/reset", {"workspace": str(workspace.pk)},
                           format="json")
        assert refused.status_code == 403
        assert ratelimit.deferral_counts(str(workspace.pk)) == {"sms": 1}
        everyone = staff_api.get("/api/v1/rate-limits").json()["workspaces"]
        assert str(workspace.pk) in {report["workspace_id"] for report in everyone}
        done = staff_api.post("/api/v1/rate-limits/reset", {"workspace": workspace.slug},
                              format="json")
        assert done.status_code == 200, done.json()
        assert ratelimit.deferral_counts(str(workspace.pk)) == {}
        assert staff_api.post("/api/v1/rate-limits/reset", {"workspace": "nope"},
                              format="json").status_code == 404
    finally:
        ratelimit.reset(str(workspace.pk))
