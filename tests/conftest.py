"""Shared fixtures: embedded Redis when none is configured, API clients, a live Celery
worker on the real broker, and a local HTTP server standing in for providers."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from config import embedded_redis
from tests.factories import StaffUserFactory, WorkspaceFactory
from tests.support.stub_server import StubServer

_started_redis = False


def pytest_configure(config: pytest.Config) -> None:
    global _started_redis
    if not os.environ.get("REDIS_URL") and not os.environ.get("CELERY_BROKER_URL"):
        _started_redis = embedded_redis.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _started_redis:
        embedded_redis.stop()


@pytest.fixture
def workspace(db):
    return WorkspaceFactory()


@pytest.fixture
def api_key(workspace) -> str:
    from core.services import api_key_create

    _, secret = api_key_create(workspace=workspace)
    return secret


@pytest.fixture
def api(api_key) -> APIClient:
    """An API client authenticated as `workspace`."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


@pytest.fixture
def staff(client: Client) -> Client:
    """A test client logged in as a staff superuser (admin and dashboard pages)."""
    client.force_login(StaffUserFactory())
    return client


@pytest.fixture
def other_api(db) -> APIClient:
    """An API client of a second, unrelated workspace."""
    from core.services import api_key_create

    _, secret = api_key_create(workspace=WorkspaceFactory())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def stub_server() -> Iterator[StubServer]:
    """A real HTTP server on 127.0.0.1 that records requests and replies as scripted."""
    server = StubServer().start()
    yield server
    server.stop()


@pytest.fixture
def second_stub_server() -> Iterator[StubServer]:
    """Another such server: a second provider, for failover."""
    server = StubServer().start()
    yield server
    server.stop()


@pytest.fixture
def live_worker(transactional_db) -> Iterator[object]:
    """A Celery worker consuming every queue of the real broker, in this process."""
    from config.celery import app
    from tests.support.worker import threaded_worker

    app.control.purge()
    with threaded_worker() as worker:
        yield worker


@pytest.fixture
def dispatcher(transactional_db) -> Iterator[None]:
    """The dispatcher loop (run_dispatcher's pass: messages and flow timers) in a thread."""
    import threading
    import time

    from django.db import connection

    from flows.engine import dispatch_timers
    from messaging.delivery.timers import dispatch_due

    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.is_set():
                if dispatch_due() + dispatch_timers() == 0:
                    time.sleep(0.05)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(30)
    # A pass still running would write while the test database is flushed.
    assert not thread.is_alive(), "the dispatcher thread did not stop"


@pytest.fixture
def fast_retries(settings) -> None:
    """Retry a failed delivery after a fraction of a second instead of the real backoff."""
    settings.RETRY_BASE_SECONDS = 0.2
    settings.RETRY_CAP_SECONDS = 0.5


@pytest.fixture
def allow_local(settings) -> None:
    """Let user-supplied URLs reach the local stand-in servers (the SSRF allow-list)."""
    settings.SSRF_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]



@pytest.fixture(autouse=True)
def _staff_act_without_two_factor() -> Iterator[None]:
    """Let staff act from a password-only session, as before two-factor sign-in existed:
    the tests of actions are about the actions. tests/core/test_two_factor.py and the
    browser test of it turn the requirement back on. (override_settings, not the
    `settings` fixture: some tests have a parameter of that name.)"""
    from django.test import override_settings

    with override_settings(TWO_FACTOR_REQUIRED_FOR_STAFF=False):
        yield


@pytest.fixture(autouse=True)
def _background_publishes_sent() -> Iterator[None]:
    """Let a test's background publishes (API requests hand theirs to a thread) go out
    within the test, so none lands in the broker after the next one has purged it."""
    from core.publishing import background_flush

    yield
    background_flush(30)


@pytest.fixture(autouse=True)
def _no_lane_task_waiting() -> Iterator[None]:
    """Forget the lane tasks an earlier test published (messaging.publishing.WAITING_KEY):
    the broker may have been purged since, and this test's messages must not join them."""
    from messaging.publishing import WAITING_KEY
    from messaging.ratelimit import client

    keys = list(client().scan_iter(match=WAITING_KEY.format(lane="*")))
    if keys:
        client().delete(*keys)
    yield


@pytest.fixture(autouse=True)
def _forget_parsed_graphs() -> Iterator[None]:
    """Forget the engine's parsed flow versions: ids come again after a test's database is
    flushed, and a version of an earlier test must not stand in for this one's."""
    from flows.engine import graph_of

    graph_of.cache_clear()
    yield


@pytest.fixture(scope="session", autouse=True)
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Collect static files once, with production's storage, into a temporary STATIC_ROOT.

    Pages then link the same hashed names as under gunicorn (WhiteNoise serves them), and
    a `{% static %}` of a file that does not exist fails its test instead of shipping a 404.
    """
    from django.core.management import call_command
    from django.test import override_settings

    root = tmp_path_factory.mktemp("static")
    with override_settings(STATIC_ROOT=root):
        call_command("collectstatic", interactive=False, verbosity=0)
        yield root


@pytest.fixture(scope="session", autouse=True)
def _plain_http() -> Iterator[None]:
    """Speak plain http, as `make run` does: DEBUG is off under pytest, which would turn on
    the production defaults (redirect to https, secure-only cookies) for a test client and
    a live server that have no TLS. tests/test_deploy_checks.py checks those defaults and
    tests/test_gunicorn.py runs them behind a proxy header."""
    from django.test import override_settings

    with override_settings(SECURE_SSL_REDIRECT=False, SESSION_COOKIE_SECURE=False,
                           CSRF_COOKIE_SECURE=False):
        yield
