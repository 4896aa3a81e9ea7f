"""A workspace viewer in a real browser: the service's own login page, only its workspace,
and no way to replay a dead letter (no button, and a forged POST answers 403)."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from core.models import DeadLetter, Membership
from tests.browser.test_dashboard_browser import _all, _css, _screenshot, _wait
from tests.factories import PASSWORD, MembershipFactory, WorkspaceFactory, failed_message

pytestmark = pytest.mark.django_db(transaction=True)  # the live server reads committed rows

POST_FROM_THE_PAGE = """
const [url, done] = [arguments[0], arguments[arguments.length - 1]];
const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
fetch(url, {method: "POST", credentials: "same-origin",
            headers: {"X-CSRFToken": token, "Content-Type": "application/x-www-form-urlencoded"},
            body: "next=/dashboard/dead-letters/", redirect: "manual"})
  .then(response => done(response.status), error => done(String(error)));
"""


def test_a_viewer_logs_in_sees_only_its_workspace_and_cannot_replay(browser: Any,
                                                                  live_server: Any):
    ours = WorkspaceFactory(name="Acme Dental")
    theirs = WorkspaceFactory(name="Zeta Clinic")
    _, letter = failed_message(ours, error="HTTP 500 from provider")
    failed_message(theirs, error="HTTP 500 elsewhere")
    viewer = MembershipFactory(workspace=ours, role=Membership.Role.VIEWER).user

    # The service's own login page, not the admin's.
    browser.get(f"{live_server.url}/dashboard/dead-letters/")
    _wait(browser).until(lambda b: "/accounts/login/" in b.current_url)
    _css(browser, "#id_username").send_keys(viewer.username)
    _css(browser, "#id_password").send_keys(PASSWORD)
    _css(browser, "#login-form [type=submit]").click()
    # The path, not the URL: the login page's own URL carries ?next=/dashboard/dead-letters/.
    _wait(browser).until(lambda b: urlsplit(b.current_url).path == "/dashboard/dead-letters/")

    # Only its workspace: the switcher lists one, and the other one's rows never show.
    options = [o.text for o in _all(browser, "#workspace-select option")]
    assert options == ["Acme Dental"]
    rows = _all(browser, "tr[data-dead-letter]")
    assert [r.get_attribute("data-dead-letter") for r in rows] == [str(letter.pk)]
    assert "elsewhere" not in browser.page_source

    # Read-only: no retry or discard button, no bulk retry, no admin link.
    assert not _all(browser, "button.retry")
    assert not _all(browser, "tr[data-dead-letter] form")
    assert "Retry all matching" not in browser.page_source
    assert not _all(browser, ".topbar a[href='/admin/']")
    _screenshot(browser, "20-viewer-dead-letters")

    # A POST to the replay URL made from the page, with a valid CSRF token: 403.
    status = browser.execute_async_script(
        POST_FROM_THE_PAGE, f"/dashboard/dead-letters/{letter.pk}/retry/")
    assert status == 403
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.OPEN and letter.replay_count == 0

    # The other workspace asked for by id is not found.
    browser.get(f"{live_server.url}/dashboard/?workspace={theirs.pk}")
    assert "Zeta Clinic" not in browser.page_source
