"""Health endpoints: /health (compatible), /health/live, /health/ready."""
from __future__ import annotations

import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from kombu import Connection

from config.env import redis_url_for_kombu

STARTED_AT = time.monotonic()


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


def readiness_checks() -> dict[str, Callable[[], None]]:
    """Return the named checks /health/ready runs (broker only when it is not REDIS_URL)."""
    checks: dict[str, Callable[[], None]] = {"database": check_database, "redis": check_redis}
    if settings.CELERY_BROKER_URL != redis_url_for_kombu(settings.REDIS_URL):
        checks["broker"] = check_broker
    return checks


def run_checks(checks: dict[str, Callable[[], None]]) -> tuple[bool, dict[str, dict]]:
    """Run each check, timing it; return whether all passed and the per-check report."""
    report: dict[str, dict] = {}
    healthy = True
    for name, check in checks.items():
        start = time.perf_counter()
        try:
            check()
        except Exception as exc:  # a health check reports every failure, whatever its type
            healthy = False
            report[name] = {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            report[name] = {"status": "up"}
        report[name]["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
    return healthy, report


def health(request: HttpRequest) -> JsonResponse:
    """Answer like the older service: {"status": "ok", ...}, 503 when a dependency is down."""
    healthy, report = run_checks(readiness_checks())
    body = {
        "status": "ok" if healthy else "error",
        "timestamp": timezone.now().isoformat(),
        "uptime_seconds": round(time.monotonic() - STARTED_AT, 1),
        "checks": report,
    }
    return JsonResponse(body, status=200 if healthy else 503)


def live(request: HttpRequest) -> JsonResponse:
    """Say the process is up and serving; checks nothing else."""
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    """Check every dependency; 503 naming the failing ones."""
    healthy, report = run_checks(readiness_checks())
    failing = [name for name, item in report.items() if item["status"] != "up"]
    body = {"status": "ok" if healthy else "unavailable", "failing": failing, "checks": report}
    return JsonResponse(body, status=200 if healthy else 503)
