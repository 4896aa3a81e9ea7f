"""A headless Chromium driven through Selenium and Debian's chromedriver.

Nothing is downloaded: the browser and the driver come from the system packages
(`apt-get install chromium chromium-driver`, which `.ci/run` does). Without them the browser
tests skip on a developer machine and fail in CI (CI set), where a skip would hide that the
dashboard was never exercised in a real browser.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver")
DESKTOP = (1366, 900)
CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def _unavailable(reason: str) -> None:
    message = f"no browser for the browser tests: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def csp_violations(driver: Any) -> list[str]:
    """Return the console messages since the last call that report a Content-Security-Policy
    violation (Chromium logs each refused script, style or resource as a severe message)."""
    return [entry["message"] for entry in driver.get_log("browser")
            if "Content Security Policy" in entry["message"]
            or "Content-Security-Policy" in entry["message"]]


@pytest.fixture
def browser() -> Iterator[Any]:
    """Yield a Selenium WebDriver for a fresh headless Chromium profile; the test fails if
    the console reported a Content-Security-Policy violation on any page it opened."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        _unavailable(f"selenium is not installed ({exc})")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            _unavailable(f"{path} is missing (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in [*CHROME_ARGS, f"--user-data-dir={profile}",
                     f"--window-size={DESKTOP[0]},{DESKTOP[1]}"]:
        options.add_argument(argument)
    # The console's messages, for csp_violations().
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
        violations = csp_violations(driver)
        assert not violations, f"CSP violations in the console: {violations}"
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def live_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Run pytest-django's live server with static files served by WhiteNoise, as gunicorn
    does: its default wrapper looks files up by source name (dashboard.css) and answers 404
    for the hashed names (dashboard.1a2b3c.css) that pages link from the manifest."""
    from pytest_django.live_server_helper import LiveServer

    address = (request.config.getvalue("liveserver")
               or os.environ.get("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost")
    server = LiveServer(address, start=False)
    server.thread.static_handler = _through_the_middleware
    server.start()
    yield server
    server.stop()


def _through_the_middleware(application: Any) -> Any:
    """Return the application unwrapped: WhiteNoiseMiddleware answers /static/ itself."""
    return application
