"""The API's throttle: requests per API key, counted in Redis with the rate limiter's GCRA."""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import replace
from typing import Any

import redis
from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from core.parsing import Rate
from messaging.ratelimit import allow, api_key

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=32)
def _api_rate(text: str) -> Rate:
    rate = Rate.parse(text)
    # "N/s" for an API means N requests may arrive together (like DRF's own rates); spacing
    # every request by 1/N would refuse the second of two simultaneous calls.
    if "burst" not in text.lower():
        rate = replace(rate, burst=rate.count)
    return rate


class ApiKeyRateThrottle(BaseThrottle):
    """Throttle API requests per API key (request.auth.prefix) with GCRA via allow().

    The rate is settings.API_RATE_LIMIT (default "50/s burst 100"), read on each request; an
    empty string disables throttling. Without an explicit burst, "N/s" lets N requests go back
    to back. Unauthenticated requests are not throttled here. If Redis is unreachable the
    request is let through (and logged): throttling must not take the API down with it.
    """

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        """Return True when the request's API key is within its rate."""
        text = getattr(settings, "API_RATE_LIMIT", "50/s burst 100")
        prefix = getattr(request.auth, "prefix", None)
        if not text or not prefix:
            return True
        try:
            allowed, wait = allow(api_key(prefix), _api_rate(text))
        except redis.RedisError:
            logger.warning("rate limit check failed; letting the request through",
                           exc_info=True)
            return True
        self._wait = None if allowed else wait
        return allowed

    def wait(self) -> float | None:
        """Return the seconds to wait before retrying, rounded up for the Retry-After header."""
        if self._wait is None:
            return None
        # DRF writes Retry-After as an integer ("%d"), so 0.3 s must become 1, not 0.
        return float(max(1, math.ceil(self._wait)))
