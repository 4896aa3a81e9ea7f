"""Sign-in throttling: what django-axes needs from the project, and what it reports.

django-axes (https://django-axes.readthedocs.io/) counts failed password checks per
username and per client address in the database, shared by every web process; after
`LOGIN_FAILURE_LIMIT` failures for either within the cool-off window, it refuses further
attempts (the right password too) until `LOGIN_COOLOFF_MINUTES` after the last failure.
This module gives it the client address (the audit log's: REMOTE_ADDR, or the one the
trusted proxies saw; never an X-Forwarded-For the client wrote), the page a locked-out
client sees, a guard for the password change form (which checks a password without
`authenticate()`), and turns its signals into audit entries and the counters `/metrics`
reads.
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import redis
from axes.backends import AxesStandaloneBackend
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.db.models import Max, Q
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from core.audit import Actor, audit
from core.audit import client_ip as audit_client_ip

logger = logging.getLogger(__name__)

LOCKOUT_ACTION = "auth.lockout"
# One Redis hash shared by every process: /metrics reads it at scrape time.
COUNTERS_KEY = "relay:signin:counters"


class RequestOnlyAxesBackend(AxesStandaloneBackend):
    """Refuse locked-out sign-ins; let through authentication that has no request.

    Every password form of the service passes its request. Calls without one (management
    commands, Django's test client `login()`) are not reachable over HTTP, so there is no
    client to throttle; axes' own backend would raise for them instead.
    """

    def authenticate(self, request: HttpRequest | None, username: str | None = None,
                     password: str | None = None, **kwargs: Any) -> None:
        """Return None, or raise PermissionDenied while the client is locked out."""
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def client_ip(request: HttpRequest) -> str | None:
    """Return the address the lockout counts, the one the audit log records: REMOTE_ADDR, or
    behind TRUSTED_PROXY_HOPS proxies the address they saw, never one the client wrote."""
    return audit_client_ip(request)


def _kind(request: HttpRequest) -> str:
    """Return which form the request used: admin, password (change) or login."""
    path = request.path
    if path.startswith("/admin/"):
        return "admin"
    return "password" if "/password" in path else "login"


def retry_after_seconds(request: HttpRequest, username: str | None) -> int:
    """Return the seconds until the newest failure of this username or address leaves the
    cool-off window (the whole window when none is stored)."""
    cool_off = get_cool_off(request) or timedelta(0)
    match = Q(ip_address=client_ip(request))
    if username:
        match |= Q(username=username)
    latest = AccessAttempt.objects.filter(match).aggregate(t=Max("attempt_time"))["t"]
    if latest is None:
        return int(cool_off.total_seconds())
    return max(1, int((latest + cool_off - timezone.now()).total_seconds()) + 1)


def _wants_json(request: HttpRequest) -> bool:
    accept = request.META.get("HTTP_ACCEPT", "")
    return ("json" in accept and "html" not in accept) or (
        request.META.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest")


def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict[str, Any] | None = None) -> HttpResponse:
    """Answer a locked-out attempt: 429 with Retry-After, a page for browsers and the API's
    error shape for clients that ask for JSON (axes' AXES_LOCKOUT_CALLABLE)."""
    username = (credentials or {}).get("username")
    seconds = retry_after_seconds(request, username)
    minutes = max(1, (seconds + 59) // 60)
    message = (f"Too many failed sign-in attempts. Try again in {minutes} minute"
               f"{'s' if minutes != 1 else ''}.")
    response: HttpResponse
    if _wants_json(request):
        response = JsonResponse({"error": {"code": "locked_out", "message": message,
                                           "retry_after": seconds}}, status=429)
    else:
        response = render(request, "registration/locked_out.html",
                          {"message": message, "minutes": minutes, "retry_after": seconds,
                           "failure_limit": get_failure_limit(request, credentials)},
                          status=429)
    response["Retry-After"] = str(seconds)
    return response


def password_check_allowed(request: HttpRequest, username: str) -> bool:
    """Return whether this client and username may check a password now; when not, mark
    the request so AxesMiddleware answers with the lockout page."""
    if AxesProxyHandler.is_allowed(request, {"username": username}):
        return True
    request.axes_locked_out = True  # type: ignore[attr-defined]
    request.axes_credentials = {"username": username}  # type: ignore[attr-defined]
    return False


def password_check_failed(request: HttpRequest, username: str) -> None:
    """Count a wrong password typed outside `authenticate()` (the password change form) as
    a failed sign-in, through the same signal axes and the counters listen to."""
    user_login_failed.send(sender=__name__, credentials={"username": username},
                           request=request)


# --- counters and audit -----------------------------------------------------------------
_lock = threading.Lock()
_client: tuple[str, redis.Redis] | None = None


def _redis() -> redis.Redis:
    """Return this process's Redis client (rebuilt if REDIS_URL changed)."""
    global _client
    url = settings.REDIS_URL
    with _lock:
        if _client is None or _client[0] != url:
            _client = (url, redis.Redis.from_url(url, decode_responses=True,
                                                 socket_timeout=2, socket_connect_timeout=2))
        return _client[1]


def _count(field: str, kind: str) -> None:
    """Add one to a sign-in counter; a Redis outage must not break signing in."""
    try:
        _redis().hincrby(COUNTERS_KEY, f"{field}:{kind}", 1)
    except redis.RedisError:
        logger.warning("signin: could not count %s in Redis", field, exc_info=True)


def counts() -> dict[tuple[str, str], int]:
    """Return {(failures|lockouts, form): count} since Redis was last emptied."""
    result: dict[tuple[str, str], int] = {}
    stored: dict[str, str] = _redis().hgetall(COUNTERS_KEY)  # type: ignore[assignment]
    for key, value in stored.items():
        field, _, kind = key.partition(":")
        result[(field, kind)] = int(value)
    return result


@receiver(user_login_failed, dispatch_uid="relay-signin-failure-count")
def _on_failure(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None,
                **kwargs: Any) -> None:
    if request is not None:
        _count("failures", _kind(request))


@receiver(user_locked_out, dispatch_uid="relay-signin-lockout-audit")
def _on_lockout(sender: Any, request: HttpRequest, username: str | None,
                ip_address: str | None, **kwargs: Any) -> None:
    """Audit and count the failure that locks a username or address out (once: the
    attempts refused during the cool-off are not new lockouts)."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None or failures != get_failure_limit(request, None):
        return
    kind = _kind(request)
    _count("lockouts", kind)
    logger.warning("signin: locked out username=%r ip=%s after %s failures on %s",
                   username, ip_address, failures, kind)
    actor = Actor(name=f"signin:{username or '?'}"[:150], source=kind, ip=ip_address)
    with transaction.atomic():
        audit(actor=actor, action=LOCKOUT_ACTION, target_type="user",
              target_id=username or "",
              detail={"username": username, "ip": ip_address, "form": kind,
                      "failures": failures,
                      "cool_off_seconds": int((get_cool_off(request) or
                                               timedelta(0)).total_seconds())})
