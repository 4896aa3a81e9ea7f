"""The HTTP helper every HTTP provider uses: timeouts, no redirects, error mapping."""
from __future__ import annotations

import email.utils
import os
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import requests
from django.conf import settings

from messaging.providers.base import ProviderError

# Requests' Session is not documented as thread-safe; keep one per thread (worker threads).
_local = threading.local()


def session() -> requests.Session:
    """Return this thread's pooled session (keep-alive to operator-configured providers)."""
    if getattr(_local, "session", None) is None:
        _local.session = requests.Session()
        if not _environment_matters():
            # requests reads proxy variables and ~/.netrc again on every request (a fifth
            # of a provider call's CPU); with neither there, take the CA bundle once.
            _local.session.trust_env = False
            _local.session.verify = (os.environ.get("REQUESTS_CA_BUNDLE")
                                     or os.environ.get("CURL_CA_BUNDLE") or True)
    return _local.session


def _environment_matters() -> bool:
    """Tell whether proxy variables or a netrc file could change a request."""
    netrc = [Path(os.environ["NETRC"])] if os.environ.get("NETRC") else [
        Path.home() / ".netrc", Path.home() / "_netrc"]
    return bool(urllib.request.getproxies()) or any(path.exists() for path in netrc)


def timeouts() -> tuple[float, float]:
    return (settings.PROVIDER_CONNECT_TIMEOUT_SECONDS, settings.PROVIDER_TIMEOUT_SECONDS)


def parse_retry_after(value: str | None) -> float | None:
    """Return seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def excerpt(response: requests.Response, limit: int = 2000) -> Any:
    """Return the response body as JSON when it is small and JSON, else as truncated text."""
    if len(response.content) <= limit:
        try:
            return response.json()
        except ValueError:
            pass
    return response.text[:limit]


def raise_for_response(response: requests.Response) -> None:
    """Raise ProviderError unless 2xx: 408/429/5xx are transient, other codes permanent.

    Redirects are never followed, so a 3xx is a permanent misconfiguration.
    """
    code = response.status_code
    if 200 <= code < 300:
        return
    transient = code in (408, 425, 429) or code >= 500
    raise ProviderError(
        f"HTTP {code}: {str(excerpt(response))[:300]}",
        permanent=not transient,
        status_code=code,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        response=excerpt(response),
    )


def request(method: str, url: str, *, guarded: bool, **kwargs: Any) -> requests.Response:
    """Send one request with the provider timeouts and no redirects.

    `guarded=True` for user-supplied URLs: the SSRF guard resolves the host once, refuses
    private addresses and connects to the checked address. Connection failures before the
    request was sent are transient; a timeout or a dropped connection after it was sent
    leaves the outcome unknown (the provider may have acted on it).
    """
    kwargs.setdefault("timeout", timeouts())
    kwargs["allow_redirects"] = False
    from messaging.providers.ssrf import UnsafeURL, safe_request

    try:
        if guarded:
            return safe_request(method, url, **kwargs)
        return session().request(method, url, **kwargs)
    except UnsafeURL as exc:
        # The address will not become public by retrying: fail for good.
        raise ProviderError(f"refused URL: {exc}", permanent=True, code="ssrf") from exc
    except requests.ConnectTimeout as exc:
        raise ProviderError(f"connect timeout: {exc}", permanent=False, code="timeout") from exc
    except requests.ReadTimeout as exc:
        raise ProviderError(f"read timeout: {exc}", permanent=False, outcome_unknown=True,
                            code="timeout") from exc
    except requests.ConnectionError as exc:
        # Refused/unreachable means nothing was sent; a reset mid-exchange may have been.
        sent = "refused" not in str(exc).lower() and "resolve" not in str(exc).lower()
        raise ProviderError(f"connection error: {exc}", permanent=False, outcome_unknown=sent,
                            code="connection") from exc
