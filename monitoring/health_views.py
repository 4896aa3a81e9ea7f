"""GET /health in the older services' shape, beside today's report.

The older monitors read `status`, `redis.connected` and `queues` ("healthy", "degraded" or
"unhealthy", as `/api/v1/queues/health` decides it); today's clients read `status`,
`timestamp`, `uptime_seconds` and `checks`. One answer carries both.
"""
from __future__ import annotations

import logging
import time

from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from monitoring.health import STARTED_AT, readiness_checks, run_checks
from monitoring.selectors import queue_health

logger = logging.getLogger(__name__)


def queues_status() -> str:
    """Return the queues' overall health in one word; "unhealthy" when it cannot be read."""
    try:
        return str(queue_health()["status"])
    except Exception:  # a health answer reports every failure, whatever its type
        logger.exception("queue health unreadable")
        return "unhealthy"


def health(request: HttpRequest) -> JsonResponse:
    """Answer like the older services: {"status": "ok", "redis": {"connected"}, "queues"},
    with today's checks; 503 when a dependency is down."""
    healthy, report = run_checks(readiness_checks())
    body = {
        "status": "ok" if healthy else "error",
        "timestamp": timezone.now().isoformat(),
        "uptime_seconds": round(time.monotonic() - STARTED_AT, 1),
        "checks": report,
        "redis": {"connected": report["redis"]["status"] == "up"},
        "queues": queues_status(),
    }
    return JsonResponse(body, status=200 if healthy else 503)
