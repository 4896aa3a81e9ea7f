"""Worker liveness by consumption: the heartbeat task's round trip feeds /health/ready."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from messaging import ratelimit
from messaging.channels import ALL_QUEUES
from monitoring import health
from monitoring.tasks import heartbeat
from tests.support.waiting import wait_until


@pytest.fixture(autouse=True)
def no_heartbeats() -> Iterator[None]:
    """Start and end without stored heartbeats (other tests' readiness must not see ours)."""
    ratelimit.client().delete(health.HEARTBEAT_KEY)
    yield
    ratelimit.client().delete(health.HEARTBEAT_KEY)


@pytest.mark.django_db
def test_without_any_heartbeat_the_worker_is_unknown_and_readiness_holds(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    worker = response.json()["checks"]["worker"]
    assert (worker["status"], worker["age_seconds"]) == ("unknown", None)
    assert "beat" in worker["reason"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_a_consumed_heartbeat_makes_the_worker_up_and_a_stale_one_fails_readiness(
        client, live_worker):
    heartbeat.apply_async(args=["default"], queue="default")
    heartbeat.apply_async(args=["sms"], queue="sms")
    wait_until(lambda: health.heartbeat_ages().get("sms") is not None)
    wait_until(lambda: health.heartbeat_ages().get("default") is not None)
    body = client.get("/health/ready").json()
    worker = body["checks"]["worker"]
    assert body["status"] == "ok" and worker["status"] == "up"
    assert worker["age_seconds"] < 10 and worker["queues"]["sms"] < 10
    assert worker["queues"]["ai"] is None  # never sent there

    health.heartbeat_record(queue="default", now=time.time() - 600)
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["worker"]
    assert "600 s ago" in response.json()["checks"]["worker"]["error"]
    assert client.get("/health").json()["status"] == "error"


@pytest.mark.django_db
def test_the_worker_check_can_be_switched_off(client, settings):
    settings.HEALTH_WORKER_MAX_AGE_SECONDS = 0
    health.heartbeat_record(queue="default", now=time.time() - 600)
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert "worker" not in response.json()["checks"]


def test_beat_sends_a_heartbeat_to_every_queue(settings):
    entries = {name: entry for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
               if entry["task"] == "monitoring.tasks.heartbeat"}
    queues = {entry["options"]["queue"] for entry in entries.values()}
    assert queues == set(ALL_QUEUES)
    assert all(entry["args"] == [entry["options"]["queue"]] for entry in entries.values())
    assert settings.CELERY_BEAT_SCHEDULE["evaluate-alerts"]["schedule"] == 60.0


@pytest.mark.django_db(transaction=True)  # the scheduler closes its database connection
def test_beats_database_scheduler_installs_the_heartbeats_with_queue_and_expiry(settings):
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from config.celery import app

    DatabaseScheduler(app=app)
    task = PeriodicTask.objects.get(name="heartbeat-sms")
    assert (task.task, task.queue, task.priority, task.args) == (
        "monitoring.tasks.heartbeat", "sms", 0, '["sms"]')
    assert task.expire_seconds == settings.WORKER_HEARTBEAT_SECONDS
    assert PeriodicTask.objects.filter(name="evaluate-alerts", enabled=True).exists()
