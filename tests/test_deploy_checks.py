"""Production checks: `check --deploy` and the OpenAPI schema stay free of warnings.

Both run as `.ci/run` runs them, in a child process with production-like settings, so a
new security warning or a schema warning (an untyped path id, an enum name collision)
fails the suite, not only CI.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def production_env(**extra: str) -> dict[str, str]:
    """Return a production-like environment: DEBUG off, a real key, a real host name."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SECURE_", "SESSION_COOKIE_", "CSRF_COOKIE_"))}
    env.update(DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50),
               ALLOWED_HOSTS="relay.example.com", DJANGO_SETTINGS_MODULE="config.settings")
    env.update(extra)
    return env


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT,
                          env=production_env(**env), capture_output=True, text=True,
                          timeout=120)


def test_the_deploy_check_reports_nothing_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_deploy_check_fails_when_https_is_turned_off():
    """The check above can fail: turning a production default off is reported."""
    result = manage("check", "--deploy", "--fail-level", "WARNING",
                    SESSION_COOKIE_SECURE="0")
    assert result.returncode != 0
    assert "security.W012" in result.stdout + result.stderr


def test_the_openapi_schema_validates_without_a_warning(tmp_path):
    schema = tmp_path / "schema.json"
    result = manage("spectacular", "--validate", "--fail-on-warn", "--format",
                    "openapi-json", "--file", str(schema))
    assert result.returncode == 0, result.stderr
    paths = json.loads(schema.read_text())["paths"]
    # Path ids are typed from the models (UUIDs), not strings by default.
    contact_id = next(p for p in paths["/api/v1/contacts/{id}/"]["get"]["parameters"]
                      if p["name"] == "id")
    assert contact_id["schema"] == {"type": "string", "format": "uuid"}


SHOW_HTTPS = ("import django, json; django.setup(); from django.conf import settings as s; "
              "print(json.dumps([s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
              "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER]))")


def https_settings(**env: str) -> list:
    result = subprocess.run([sys.executable, "-c", SHOW_HTTPS], cwd=ROOT,
                            env=production_env(**env), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_defaults_to_https_only():
    assert https_settings() == [True, 31_536_000, True, True, None]


def test_development_serves_plain_http():
    assert https_settings(DEBUG="1") == [False, 0, False, False, None]


def test_each_https_setting_is_overridden_by_its_variable():
    assert https_settings(SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="3600",
                          SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="no",
                          SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto") == [
        False, 3600, False, False, ["HTTP_X_FORWARDED_PROTO", "https"]]


def test_the_proxy_header_may_name_its_value():
    assert https_settings(SECURE_PROXY_SSL_HEADER="X-Forwarded-Ssl=on")[4] == [
        "HTTP_X_FORWARDED_SSL", "on"]


@pytest.mark.parametrize("value", ["=https", "X Forwarded=https", "X-Forwarded-Proto="])
def test_a_malformed_proxy_header_stops_the_settings_with_one_clear_line(value):
    result = subprocess.run([sys.executable, "-c", SHOW_HTTPS], cwd=ROOT,
                            env=production_env(SECURE_PROXY_SSL_HEADER=value),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER" in result.stderr.strip().splitlines()[-1]
