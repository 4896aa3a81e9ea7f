"""The Content-Security-Policy header on every HTML page (dashboard, admin, sign-in, password,
unsubscribe, lockout), and pages that need nothing it forbids: no inline script without the
request's nonce, no inline style at all. The browser tests check the console for violations."""
from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.factories import (
    AlertRuleFactory,
    StaffUserFactory,
    WorkspaceFactory,
    failed_execution,
    failed_message,
)

pytestmark = pytest.mark.django_db

DASHBOARD_PAGES = ["overview", "executions", "messages", "dead-letters", "schedules", "alerts",
                   "endpoints", "rate-limits", "outbox", "queues", "audit-log"]
ADMIN_PAGES = ["/admin/", "/admin/core/workspace/", "/admin/core/workspace/add/",
               "/admin/core/auditentry/", "/admin/axes/accessattempt/",
               "/admin/messaging/message/", "/admin/flows/flow/add/",
               "/admin/django_celery_beat/periodictask/add/", "/admin/auth/user/add/"]


def policy(response) -> dict[str, list[str]]:
    """Return the response's CSP as {directive: [sources]}."""
    header = response["Content-Security-Policy"]
    return {name: sources for name, *sources in
            (part.split() for part in header.split(";") if part.strip())}


def assert_strict(response) -> None:
    """Assert the strict policy, and a page that needs nothing the policy forbids."""
    # 400: the unsubscribe page of a bad link; 429: the lockout page.
    assert response.status_code in (200, 400, 429), response.status_code
    directives = policy(response)
    assert directives["default-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["script-src"][0] == "'self'"
    assert all(source.startswith("'nonce-") for source in directives["script-src"][1:])
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    html = response.content.decode()
    nonces = {source[7:-1] for source in directives["script-src"][1:]}
    for tag in re.findall(r"<script\b[^>]*>", html):
        if 'type="application/json"' in tag:  # data for a script, never run (the admin's)
            continue
        assert "src=" in tag or any(f'nonce="{n}"' in tag for n in nonces), tag
    assert not re.search(r"<style\b", html)
    assert not re.search(r"\sstyle\s*=", html), re.search(r".{60}\sstyle\s*=.{60}", html)
    assert not re.search(r"\son[a-z]+\s*=\s*[\"']", html)  # onclick= and friends


@pytest.fixture
def scene() -> dict:
    workspace = WorkspaceFactory()
    message, letter = failed_message(workspace, error="HTTP 500")
    execution, _, _ = failed_execution(workspace)
    rule = AlertRuleFactory(workspace=workspace)
    return {"workspace": workspace, "message": message, "execution": execution, "rule": rule}


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(StaffUserFactory())
    return client


def test_every_dashboard_page_carries_the_strict_policy(staff, scene):
    workspace = scene["workspace"]
    urls = [reverse(f"dashboard:{name}") for name in DASHBOARD_PAGES] + [
        reverse("dashboard:execution-detail", args=[scene["execution"].pk]),
        reverse("dashboard:message-detail", args=[scene["message"].pk]),
        reverse("dashboard:alert-rule-edit", args=[scene["rule"].pk])]
    for url in urls:
        response = staff.get(url, {"workspace": str(workspace.pk)})
        assert_strict(response)


def test_admin_pages_carry_the_strict_policy(staff, scene):
    for url in ADMIN_PAGES:
        assert_strict(staff.get(url))


def test_sign_in_password_and_unsubscribe_pages_carry_the_strict_policy(staff):
    anonymous = Client()
    for response in (anonymous.get("/accounts/login/"), anonymous.get("/admin/login/"),
                     staff.get("/accounts/password/"), anonymous.get("/u/not-a-token")):
        assert_strict(response)


def test_the_two_factor_pages_carry_the_strict_policy(staff):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    assert_strict(staff.get("/accounts/2fa/"))
    setup = staff.post("/accounts/2fa/", {"step": "start"})  # with the QR code (data: image)
    assert 'src="data:image/svg+xml' in setup.content.decode()
    assert_strict(setup)
    user = StaffUserFactory()
    TOTPDevice.objects.create(user=user, name="app", confirmed=True)
    second_step = Client()
    second_step.force_login(user)
    assert_strict(second_step.get("/accounts/2fa/verify/"))


def test_the_lockout_page_carries_the_strict_policy():
    for n in range(settings.AXES_FAILURE_LIMIT + 1):
        response = Client().post("/accounts/login/", {"username": f"x{n}", "password": "no"},
                                 REMOTE_ADDR="192.0.2.200")
    assert response.status_code == 429
    assert_strict(response)


def test_the_api_docs_relax_styles_only():
    directives = policy(Client().get("/api/docs/"))
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'", "'unsafe-inline'"]


def test_json_answers_carry_the_policy_too(api):
    directives = policy(api.get("/api/v1/workspace"))
    assert directives["default-src"] == ["'self'"]
