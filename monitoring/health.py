"""Health checks and the endpoints /health/live, /health/ready (/health: health_views).

Worker liveness is measured by consumption, not by a process existing: beat sends a
heartbeat task to every queue every WORKER_HEARTBEAT_SECONDS and the worker that consumes it
stores the time in Redis. /health/ready reports the age of the last consumed heartbeat per
queue and fails (`worker` down) when the default queue's heartbeat is older than
HEALTH_WORKER_MAX_AGE_SECONDS. Only the default queue decides readiness: it carries light
work (sweeps, alerts, heartbeats), so its age says whether any worker consumes at all,
while a channel queue's age also grows with that channel's backlog, and a backlog must not
take the web tier out of its load balancer (Prometheus alerts on the per-queue ages). When
no heartbeat was ever recorded (beat not running yet, a fresh Redis, tests) the check says
`unknown` and does not fail readiness; HEALTH_WORKER_MAX_AGE_SECONDS=0 removes the check.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from kombu import Connection

from core.env import redis_url_for_kombu
from messaging import ratelimit
from messaging.channels import ALL_QUEUES

STARTED_AT = time.monotonic()
HEARTBEAT_KEY = "monitoring:heartbeats"  # hash: queue -> epoch seconds of last consumption


class CheckUnknown(Exception):
    """The check cannot tell yet; it is reported but does not fail readiness."""

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class CheckFailed(Exception):
    """The check ran and its dependency is down; details go into the report."""

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


def _redis_for_checks() -> redis.Redis:
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=timeout,
                                socket_timeout=timeout, decode_responses=True)


def heartbeat_record(*, queue: str, now: float | None = None) -> None:
    """Store that a worker consumed the heartbeat of this queue now."""
    ratelimit.client().hset(HEARTBEAT_KEY, queue, repr(now if now is not None else time.time()))


def heartbeat_ages(*, now: float | None = None,
                   client: redis.Redis | None = None) -> dict[str, float | None]:
    """Return the seconds since each queue's last consumed heartbeat (None: never)."""
    now = now if now is not None else time.time()
    # The client decodes responses: keys and values are text.
    stored = cast(dict[str, str], (client or ratelimit.client()).hgetall(HEARTBEAT_KEY))
    return {queue: (round(max(0.0, now - float(stored[queue])), 1) if queue in stored else None)
            for queue in sorted(set(ALL_QUEUES) | set(stored))}


def check_worker() -> dict:
    """Fail when the default queue's last consumed heartbeat is too old; report every queue."""
    limit = settings.HEALTH_WORKER_MAX_AGE_SECONDS
    client = _redis_for_checks()
    try:
        ages = heartbeat_ages(client=client)
    except redis.RedisError as exc:
        # Redis has its own check; counting its outage twice would hide which one is down.
        raise CheckUnknown(f"heartbeats unreadable: {type(exc).__name__}") from exc
    finally:
        client.close()
    age = ages.get("default")
    details = {"age_seconds": age, "max_age_seconds": limit, "queues": ages}
    if age is None:
        raise CheckUnknown("no heartbeat consumed yet (is beat running?)", details)
    if age > limit:
        raise CheckFailed(f"last heartbeat consumed {age:.0f} s ago (limit {limit} s)", details)
    return details


def check_database() -> None:
    """Run a trivial query on the default database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_redis() -> None:
    """PING the Redis that holds rate limits and locks."""
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=timeout,
                                  socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def check_broker() -> None:
    """Open a connection to the Celery broker."""
    with Connection(settings.CELERY_BROKER_URL,
                    connect_timeout=settings.HEALTH_CHECK_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1)


def readiness_checks() -> dict[str, Callable[[], dict | None]]:
    """Return the named checks /health/ready runs (broker only when it is not REDIS_URL;
    worker unless HEALTH_WORKER_MAX_AGE_SECONDS is 0)."""
    checks: dict[str, Callable[[], dict | None]] = {"database": check_database,
                                                    "redis": check_redis}
    if settings.CELERY_BROKER_URL != redis_url_for_kombu(settings.REDIS_URL):
        checks["broker"] = check_broker
    if getattr(settings, "HEALTH_WORKER_MAX_AGE_SECONDS", 0) > 0:
        checks["worker"] = check_worker
    return checks


def run_checks(checks: dict[str, Callable[[], dict | None]]) -> tuple[bool, dict[str, dict]]:
    """Run each check, timing it; return whether all passed and the per-check report.

    A check may return details for its report; CheckUnknown reports "unknown" without
    failing.
    """
    report: dict[str, dict] = {}
    healthy = True
    for name, check in checks.items():
        start = time.perf_counter()
        try:
            details = check()
        except CheckUnknown as exc:
            report[name] = {"status": "unknown", "reason": str(exc), **exc.details}
        except CheckFailed as exc:
            healthy = False
            report[name] = {"status": "down", "error": str(exc), **exc.details}
        except Exception as exc:  # a health check reports every failure, whatever its type
            healthy = False
            report[name] = {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            report[name] = {"status": "up", **(details or {})}
        report[name]["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
    return healthy, report


def live(request: HttpRequest) -> JsonResponse:
    """Say the process is up and serving; checks nothing else."""
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    """Check every dependency; 503 naming the failing ones."""
    healthy, report = run_checks(readiness_checks())
    failing = [name for name, item in report.items() if item["status"] == "down"]
    body = {"status": "ok" if healthy else "unavailable", "failing": failing, "checks": report}
    return JsonResponse(body, status=200 if healthy else 503)
