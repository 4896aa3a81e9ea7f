"""The Content-Security-Policy in a real browser: the sign-in, admin, password and lockout
pages run their scripts and styles with it on and the console reports no violation (the
`browser` fixture fails a test on any); an inline script is refused and reported."""
from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from tests.browser.conftest import csp_violations
from tests.factories import PASSWORD, StaffUserFactory

pytestmark = pytest.mark.django_db(transaction=True)  # the live server reads committed rows

WAIT_SECONDS = 15


def _css(browser: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_SECONDS).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, selector)))


def _submit_login(browser: Any, base_url: str, username: str, password: str) -> None:
    """Sign in through the form and wait for the answer's page: leaving before it came
    would cancel the POST, and a failure that was never counted cannot lock anyone out."""
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{base_url}/accounts/login/")
    _css(browser, "#id_username").send_keys(username)
    _css(browser, "#id_password").send_keys(password)
    submit = _css(browser, "#login-form [type=submit]")
    submit.click()
    WebDriverWait(browser, WAIT_SECONDS).until(ec.staleness_of(submit))


def test_admin_pages_with_their_scripts_run_under_the_policy(browser, live_server):
    user = StaffUserFactory()
    browser.get(f"{live_server.url}/admin/login/")
    _css(browser, "#id_username").send_keys(user.username)
    _css(browser, "#id_password").send_keys(PASSWORD)
    _css(browser, "[type=submit]").click()
    _css(browser, "#user-tools")
    for path in ("/admin/", "/admin/core/workspace/add/", "/admin/auth/user/add/",
                 "/admin/django_celery_beat/periodictask/add/", "/admin/axes/accessattempt/",
                 "/accounts/password/", "/dashboard/"):
        browser.get(f"{live_server.url}{path}")
        _css(browser, "body")
    # The periodic task form's helper (a static file under the policy) hid its field.
    browser.get(f"{live_server.url}/admin/django_celery_beat/periodictask/add/")
    assert not _css(browser, ".field-crontab_translation").is_displayed()


def test_the_lockout_page_shows_in_the_browser_under_the_policy(browser, live_server):
    from axes.models import AccessAttempt
    from django.test import Client

    user = StaffUserFactory()
    # The failures go through the sign-in form over the test client (the same views, rows
    # the live server reads): the browser's part is the page a locked-out person sees, and
    # six page round trips on a loaded machine only added ways to time out.
    answers = [Client().post("/accounts/login/",
                             {"username": user.username, "password": "wrong-password"})
               .status_code for _ in range(settings.AXES_FAILURE_LIMIT)]
    # The form again with its error, until the failure that reaches the limit locks.
    assert answers == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    failures = sum(AccessAttempt.objects.filter(username=user.username)
                   .values_list("failures_since_start", flat=True))
    assert failures == settings.AXES_FAILURE_LIMIT
    _submit_login(browser, live_server.url, user.username, PASSWORD)
    panel = _css(browser, "#locked-out")
    assert "Too many failed sign-in attempts" in panel.text
    assert "/dashboard/" not in browser.current_url
    # Chromium reports the 429 itself in the console; that is not a policy violation.
    assert not csp_violations(browser)


def test_an_inline_script_is_refused_and_reported(browser, live_server):
    browser.get(f"{live_server.url}/accounts/login/")
    _css(browser, "#login-form")
    browser.execute_script(
        "var s = document.createElement('script');"
        "s.textContent = 'document.body.dataset.injected = \"yes\"';"
        "document.head.appendChild(s);")
    assert browser.execute_script("return document.body.dataset.injected") is None
    assert csp_violations(browser)  # seen, so the fixture's check is not blind
