"""An owner pauses SMS from the dashboard, sends through the API, sees the message wait
(paused), resumes from the dashboard and sees it sent (live worker, stub SMS provider)."""
from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from core.models import Membership
from core.services import api_key_create
from tests.browser.test_dashboard_browser import _css, _screenshot, _wait
from tests.factories import PASSWORD, MembershipFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db(transaction=True)  # the live server reads committed rows


def log_in_as_owner(browser: Any, base_url: str, workspace: Any) -> None:
    """Log in, through the service's own login page, as an `owner` member of the workspace
    (not staff: an owner may pause its own workspace's queues)."""
    owner = MembershipFactory(workspace=workspace, role=Membership.Role.OWNER,
                              user__username="owner").user
    assert not owner.is_staff
    browser.get(f"{base_url}/accounts/login/?next=/dashboard/?workspace={workspace.pk}")
    _css(browser, "#id_username").send_keys(owner.username)
    _css(browser, "#id_password").send_keys(PASSWORD)
    _css(browser, "#login-form [type=submit]").click()
    _css(browser, ".kpis")


def _status_of(browser: Any, base_url: str, workspace: Any, message_id: str) -> str:
    browser.get(f"{base_url}/dashboard/messages/{message_id}/?workspace={workspace.pk}")
    return _css(browser, "h1 [data-status]").get_attribute("data-status")


def test_an_owner_pauses_sms_sees_a_message_wait_then_resumes_and_sees_it_sent(
        browser, live_server, stub_server, live_worker, dispatcher):
    workspace = WorkspaceFactory(name="Acme Dental", settings={
        "providers": {"sms": {"name": "http", "api_url": stub_server.url}}})
    _, secret = api_key_create(workspace=workspace)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    base = live_server.url
    log_in_as_owner(browser, base, workspace)

    browser.get(f"{base}/dashboard/queues/?workspace={workspace.pk}")
    _css(browser, "tr[data-queue=sms] input[name=reason]").send_keys("carrier maintenance")
    _css(browser, "tr[data-queue=sms] button.pause").click()
    _css(browser, "tr[data-queue=sms][data-paused=yes]")
    assert "carrier maintenance" in _css(browser, "tr[data-queue=sms] .pause-own").text
    assert "user:owner" in _css(browser, "tr[data-queue=sms] .pause-own").text

    message_id = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                               "body": "Your appointment is tomorrow"},
                          format="json").json()["id"]
    # The message waits: the worker holds it while the queue is paused.
    _wait(browser).until(lambda b: "paused: sms" in _waiting_text(b, base, workspace))
    row = _css(browser, f"tr[data-message='{message_id}']")
    assert "scheduled" in row.text and "paused: sms (workspace)" in row.text
    _css(browser, "a[href*='/dashboard/queues/']").click()
    assert _css(browser, "tr[data-queue=sms] .held").text == "1"
    _screenshot(browser, "queues-paused")
    assert stub_server.requests == []

    _css(browser, "tr[data-queue=sms] button.resume").click()
    _css(browser, "tr[data-queue=sms][data-paused=no]")
    _wait(browser).until(lambda b: _status_of(b, base, workspace, message_id) == "sent")
    assert [r.json()["message"] for r in stub_server.requests] == [
        "Your appointment is tomorrow"]

    browser.get(f"{base}/dashboard/audit-log/?workspace={workspace.pk}")
    actions = [row.get_attribute("data-action") for row in
               browser.find_elements("css selector", "tr[data-action]")]
    assert actions == ["queue.resume", "queue.pause"]


def _waiting_text(browser: Any, base_url: str, workspace: Any) -> str:
    browser.get(f"{base_url}/dashboard/messages/?workspace={workspace.pk}")
    return _css(browser, "table").text
