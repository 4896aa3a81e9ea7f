"""The web process as `make run` and production start it: collectstatic, then gunicorn.

A real gunicorn on config.wsgi with DEBUG off serves the admin, the dashboard and the API
docs with their static files (WhiteNoise: hashed names cached for a year, gzip), behind a
TLS-terminating proxy that says so in X-Forwarded-Proto.
"""
from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.test import Client

from tests.support.processes import ROOT, child_env, kill
from tests.support.waiting import wait_until

YEAR_OR_MORE = re.compile(r"max-age=(\d+)")
BEHIND_TLS = {"X-Forwarded-Proto": "https"}


class Web:
    """A running gunicorn and its base URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("headers", BEHIND_TLS)
        return requests.get(self.base_url + path, allow_redirects=False, timeout=30, **kwargs)

    def asset(self, html: str, pattern: str) -> requests.Response:
        """Fetch the static file of the page whose URL matches pattern; it must be hashed."""
        url = re.search(rf'(?:src|href)="(/static/{pattern})"', html)
        assert url, f"the page links no /static/{pattern}"
        return self.get(url.group(1))


def production_env(static_root: Path) -> dict[str, str]:
    return child_env(DEBUG="0", SECRET_KEY=settings.SECRET_KEY, STATIC_ROOT=str(static_root),
                     SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto", ALLOWED_HOSTS="127.0.0.1",
                     SECURE_SSL_REDIRECT="", SESSION_COOKIE_SECURE="", CSRF_COOKIE_SECURE="",
                     SECURE_HSTS_SECONDS="")


@pytest.fixture(scope="module")
def web(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Web]:
    """Collect static files as scripts/run.sh does, then serve on a socket of our own."""
    env = production_env(tmp_path_factory.mktemp("static_root"))
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=ROOT,
                   env=env, check=True, capture_output=True, timeout=300)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--workers", "1",
         "--bind", f"fd://{listener.fileno()}"],
        cwd=ROOT, env=env, pass_fds=[listener.fileno()], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener.close()
    server = Web(f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: _answers(server), timeout=60)
        yield server
    finally:
        kill(process)


def _answers(server: Web) -> bool:
    try:
        return server.get("/health/live").status_code == 200
    except requests.ConnectionError:
        return False


def assert_hashed_and_cached(response: requests.Response, content_type: str) -> None:
    assert response.status_code == 200, response.url
    assert response.headers["Content-Type"].startswith(content_type)
    assert int(YEAR_OR_MORE.search(response.headers["Cache-Control"]).group(1)) >= 365 * 86400
    assert "immutable" in response.headers["Cache-Control"]


def test_the_admin_login_is_styled(web):
    page = web.get("/admin/login/")
    assert page.status_code == 200
    css = web.asset(page.text, r"admin/css/base\.[0-9a-f]{12}\.css")
    assert_hashed_and_cached(css, "text/css")
    assert css.headers["Content-Encoding"] == "gzip"  # requests asks for gzip
    assert "body" in css.text


def test_the_dashboard_loads_its_own_css_and_js(web, transactional_db, django_user_model):
    staff = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    cookies = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}
    page = web.get("/dashboard/", cookies=cookies)
    assert page.status_code == 200
    assert_hashed_and_cached(web.asset(page.text, r"dashboard/dashboard\.[0-9a-f]{12}\.css"),
                             "text/css")
    assert_hashed_and_cached(web.asset(page.text, r"dashboard/dashboard\.[0-9a-f]{12}\.js"),
                             "text/javascript")


def test_the_api_docs_load_swagger_ui_from_this_service(web):
    page = web.get("/api/docs/")
    assert page.status_code == 200
    assert "://" not in page.text
    bundle = web.asset(page.text, r"drf_spectacular_sidecar/swagger-ui-dist/"
                                  r"swagger-ui-bundle\.[0-9a-f]{12}\.js")
    assert_hashed_and_cached(bundle, "text/javascript")


def test_a_source_name_is_served_but_not_cached_for_long(web):
    """Unhashed names may change at the next deploy, so WhiteNoise caches them briefly."""
    response = web.get("/static/dashboard/dashboard.css")
    assert response.status_code == 200
    assert "immutable" not in response.headers["Cache-Control"]


def test_plain_http_is_redirected_to_https_except_probes(web):
    redirect = web.get("/admin/login/", headers={})
    assert redirect.status_code == 301
    assert redirect.headers["Location"] == web.base_url.replace("http:", "https:") + "/admin/login/"
    assert web.get("/health/live", headers={}).status_code == 200


def test_https_answers_carry_hsts_and_secure_cookies(web):
    page = web.get("/admin/login/")
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert "Secure" in page.headers["Set-Cookie"]  # the CSRF cookie of the login form
