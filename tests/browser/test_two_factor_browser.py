"""Two-factor sign-in in a real browser, as a staff user would do it: sign in, set up the
authenticator app from the page (its QR code shows, the key is typed into the "app"),
keep the recovery codes, sign out, and sign in again with password and code. Runs under the
Content-Security-Policy; the `browser` fixture fails on any violation."""
from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from django_otp.oath import hotp

from tests.factories import PASSWORD, StaffUserFactory

pytestmark = pytest.mark.django_db(transaction=True)  # the live server reads committed rows

WAIT_SECONDS = 15


@pytest.fixture(autouse=True)
def _staff_need_two_factor(settings) -> None:
    settings.TWO_FACTOR_REQUIRED_FOR_STAFF = True


class AuthenticatorApp:
    """What a phone's authenticator app does with the key typed from the setup page."""

    def __init__(self, secret: str) -> None:
        self.key = base64.b32decode(secret + "=" * (-len(secret) % 8))
        self.used: set[int] = set()

    def code(self) -> str:
        """Return the code of the current 30 s step, or of the next one when the current
        step's code was already used (a server accepts each step once)."""
        step = int(time.time() // 30)
        while step in self.used:
            step += 1
        self.used.add(step)
        return f"{hotp(self.key, step, digits=6):06d}"


def _css(browser: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_SECONDS).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, selector)))


def _sign_in(browser: Any, base_url: str, user: Any) -> None:
    browser.get(f"{base_url}/accounts/login/")
    _css(browser, "#id_username").send_keys(user.username)
    _css(browser, "#id_password").send_keys(PASSWORD)
    _css(browser, "#login-form [type=submit]").click()


def test_a_staff_user_turns_on_two_factor_and_signs_in_with_it(browser, live_server):
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    user = StaffUserFactory()
    _sign_in(browser, live_server.url, user)
    _css(browser, ".user")  # signed in: the top bar shows the user
    browser.find_element("link text", "Two-factor").click()
    assert "replaying, discarding, pausing" in _css(browser, "#two-factor").text
    _css(browser, "#two-factor-start [type=submit]").click()

    qr = _css(browser, "img.qr")
    assert browser.execute_script("return arguments[0].naturalWidth", qr) > 0  # data: image
    app = AuthenticatorApp(_css(browser, "#totp-secret").text)
    _css(browser, "#two-factor-confirm [name=token]").send_keys(app.code())
    _css(browser, "#two-factor-confirm [type=submit]").click()
    _css(browser, "#recovery-codes code")  # the confirm's answer has come
    codes = [element.text for element in browser.find_elements("css selector",
                                                               "#recovery-codes code")]
    assert len(codes) == 10
    _css(browser, "#continue").click()
    sign_out = _css(browser, ".user form [type=submit]")
    sign_out.click()
    # Leaving before the answer came would cancel the sign-out.
    WebDriverWait(browser, WAIT_SECONDS).until(ec.staleness_of(sign_out))

    _sign_in(browser, live_server.url, user)
    _css(browser, "#verify-form")
    assert "/accounts/2fa/verify/" in browser.current_url
    browser.get(f"{live_server.url}/admin/")  # the password alone opens nothing
    _css(browser, "#verify-form")
    _css(browser, "#verify-form [name=token]").send_keys(app.code())
    _css(browser, "#verify-form [type=submit]").click()
    _css(browser, "#site-name")  # the admin, after the second step
    assert browser.current_url.endswith("/admin/")

    browser.get(f"{live_server.url}/accounts/2fa/")
    assert "is on" in _css(browser, "#two-factor-state").text
