"""The dashboard in a real browser: log in, read the overview, replay a dead letter, open an
execution, and look at it on a phone. Screenshots land in test-artifacts/screenshots/."""
from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from core.models import DeadLetter
from flows.models import Execution
from messaging.models import MessageStatus
from tests.factories import (
    PASSWORD,
    AlertEventFactory,
    AlertRuleFactory,
    ExecutionFactory,
    FlowFactory,
    MessageFactory,
    StaffUserFactory,
    WorkspaceFactory,
    failed_execution,
    failed_message,
    sent_message,
)

SCREENSHOTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"
DESKTOP_WIDTH, PHONE_WIDTH = 1366, 390
WAIT_SECONDS = 15

pytestmark = pytest.mark.django_db(transaction=True)  # the live server reads committed rows


@pytest.fixture
def scene() -> dict[str, Any]:
    """Build a workspace with a day of traffic: sends, failures, executions, dead letters."""
    workspace = WorkspaceFactory(name="Acme Dental", timezone="Europe/Berlin")
    WorkspaceFactory(name="Zeta Clinic")  # a second tenant for the picker
    now = timezone.now()
    for hour in range(18):
        sent_message(workspace, created=now - timedelta(hours=hour, minutes=7),
                     latency=1 + (hour % 5) * 0.7,
                     status=MessageStatus.DELIVERED if hour % 3 else MessageStatus.SENT)
    for hour in range(10):  # the previous 24 h, for the trends
        sent_message(workspace, created=now - timedelta(hours=30 + hour), latency=4)
    for status in (MessageStatus.QUEUED, MessageStatus.QUEUED, MessageStatus.RETRYING):
        MessageFactory(workspace=workspace, status=status)
    MessageFactory(workspace=workspace, status=MessageStatus.SCHEDULED,
                   scheduled_for=now + timedelta(hours=2))
    failed_message(workspace, created=now - timedelta(hours=9), error="invalid number")
    failed_message(workspace, created=now - timedelta(hours=5), error="HTTP 503 upstream")
    message, letter = failed_message(workspace, created=now - timedelta(hours=2),
                                     error="HTTP 500 from provider")
    flow = FlowFactory(workspace=workspace, name="Appointment reminder")
    for hour in range(6):
        started = now - timedelta(hours=hour * 3 + 1)
        ExecutionFactory(workspace=workspace, flow=flow, started_at=started,
                         completed_at=started + timedelta(seconds=20 + hour * 15))
    ExecutionFactory(workspace=workspace, flow=flow, status=Execution.Status.WAITING)
    execution, _, _ = failed_execution(workspace, started=now - timedelta(hours=4))
    return {"workspace": workspace, "user": StaffUserFactory(), "message": message,
            "letter": letter, "execution": execution}


def _wait(browser: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_SECONDS)


def _css(browser: Any, selector: str) -> Any:
    """Wait for an element to be present and return it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    return _wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, selector)))


def _all(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)


def _viewport(browser: Any, width: int, height: int, *, mobile: bool = False) -> None:
    # Device emulation rather than a window resize: Chrome keeps windows at least ~500 px
    # wide, and `mobile` makes it honour the viewport meta tag like a phone does.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def _screenshot(browser: Any, name: str, *, width: int = DESKTOP_WIDTH,
                mobile: bool = False) -> Path:
    """Save the whole page (not only the visible part) as test-artifacts/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _viewport(browser, width, 900, mobile=mobile)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    _viewport(browser, width, int(height), mobile=mobile)
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    path = SCREENSHOTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    _viewport(browser, width, 900, mobile=mobile)
    return path


def _log_in(browser: Any, base_url: str, user: Any) -> None:
    browser.get(f"{base_url}/admin/login/?next=/dashboard/")
    _css(browser, "#id_username").send_keys(user.username)
    _css(browser, "#id_password").send_keys(PASSWORD)
    _css(browser, "#login-form [type=submit]").click()
    _css(browser, ".kpis")


def _kpis(browser: Any) -> dict[str, str]:
    return {card.get_attribute("data-kpi"): card.find_element("css selector", ".kpi-value").text
            for card in _all(browser, ".kpi")}


def test_an_operator_reviews_the_dashboard_and_replays_a_dead_letter(browser, live_server,
                                                                     scene):
    _log_in(browser, live_server.url, scene["user"])

    # The overview: KPIs with trends, two pies and three time series drawn as SVG.
    assert browser.current_url.startswith(f"{live_server.url}/dashboard/")
    kpis = _kpis(browser)
    assert kpis["sent"] == "18"
    assert kpis["failed"] == "3"
    assert kpis["success_rate"] == "85.7%"
    assert kpis["dead_letters"] == "4"
    assert "+80%" in _css(browser, '[data-kpi="sent"] .kpi-trend').text
    assert len(_all(browser, "svg.chart-pie")) == 2
    assert len(_all(browser, "svg.chart-pie circle")) >= 5
    assert len(_all(browser, "svg.chart-line polyline")) >= 5
    assert "Acme Dental" in _css(browser, "#workspace-select").text
    _screenshot(browser, "01-overview")

    # Changing the range reloads the page with the choice kept in the query string.
    from selenium.webdriver.support.ui import Select

    Select(_css(browser, "select[name=range]")).select_by_value("7d")
    _wait(browser).until(lambda b: "range=7d" in b.current_url)
    assert "last 7 days" in _css(browser, "h1").text
    _screenshot(browser, "02-overview-7d")

    # Dead letters: retry one; it is replayed and its message is queued again.
    _css(browser, ".tabs a[href*='/dashboard/dead-letters/']").click()
    letter, message = scene["letter"], scene["message"]
    row = _css(browser, f'tr[data-dead-letter="{letter.pk}"]')
    assert len(_all(browser, "tr[data-dead-letter]")) == 4  # 3 messages + 1 step
    _screenshot(browser, "03-dead-letters")
    row.find_element("css selector", "button.retry").click()
    assert "Replayed" in _css(browser, ".flash-success").text
    letter.refresh_from_db()
    message.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED
    assert letter.replay_count == 1
    assert message.status == MessageStatus.QUEUED
    assert not _all(browser, f'tr[data-dead-letter="{letter.pk}"]')  # no longer open
    _screenshot(browser, "04-dead-letter-replayed")

    # An execution's detail page: the step timeline with inputs, outputs and the error.
    _css(browser, ".tabs a[href*='/dashboard/executions/']").click()
    execution = scene["execution"]
    _css(browser, f'tr[data-execution="{execution.pk}"] a').click()
    _css(browser, ".timeline")
    assert [item.get_attribute("data-kind") for item in _all(browser, ".timeline .tl-item")
            ] == ["started", "step", "step", "failed"]
    steps = _all(browser, '.timeline .tl-item[data-kind="step"]')
    assert "webhook answered 502" in steps[1].text
    assert steps[1].find_element("css selector", "form button").text == "Retry step"
    for summary in _all(browser, ".timeline details summary"):
        summary.click()  # open inputs and outputs for the screenshot
    _screenshot(browser, "05-execution-detail")

    # On a phone the page fits the width: KPI cards wrap, wide tables scroll inside.
    _viewport(browser, PHONE_WIDTH, 844, mobile=True)
    browser.get(f"{live_server.url}/dashboard/?workspace={scene['workspace'].pk}")
    _css(browser, ".kpis")
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    _screenshot(browser, "06-overview-phone", width=PHONE_WIDTH, mobile=True)
    _css(browser, ".tabs a[href*='/dashboard/dead-letters/']").click()
    _css(browser, ".table-wrap")
    assert browser.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth") <= 0
    _screenshot(browser, "07-dead-letters-phone", width=PHONE_WIDTH, mobile=True)


def test_every_page_renders_with_data_and_fits_a_phone(browser, live_server, scene):
    from flows.schedules import schedule_create
    from messaging import ratelimit

    workspace = scene["workspace"]
    schedule_create(workspace=workspace,
                    flow=FlowFactory(workspace=workspace, name="Daily digest"),
                    cron="0 9 * * 1-5", timezone="Europe/Berlin", audience={})
    rule = AlertRuleFactory(workspace=workspace, name="SMS failure rate above 10%",
                            message_channel="sms", window_seconds=900, threshold=10.0)
    AlertEventFactory(rule=rule, value=12.5, summary="failure rate 12.5% over 15 min")
    ratelimit.reset(str(workspace.pk))
    for channel, delay in (("sms", 0.2), ("sms", 0.4), ("sms", 1.3), ("email", 0.05)):
        ratelimit.record_deferral(workspace_id=str(workspace.pk), channel=channel, delay=delay)
    _log_in(browser, live_server.url, scene["user"])
    pages = {  # path: (heading, something from the data that must show)
        "executions": ("Executions", "Appointment reminder"),
        "messages": ("Messages", "HTTP 503 upstream"),
        "schedules": ("Schedules", "Daily digest"),
        "alerts": ("Alerts", "failure rate 12.5% over 15 min"),
        "rate-limits": ("Rate limits", "1.3 s"),
    }
    try:
        for number, (path, (title, shown)) in enumerate(pages.items(), start=10):
            for width, mobile, suffix in ((DESKTOP_WIDTH, False, ""),
                                          (PHONE_WIDTH, True, "-phone")):
                _viewport(browser, width, 844, mobile=mobile)
                browser.get(f"{live_server.url}/dashboard/{path}/?workspace={workspace.pk}")
                assert _css(browser, "h1").text.startswith(title)
                assert shown in browser.page_source
                assert browser.execute_script(
                    "return document.documentElement.scrollWidth - window.innerWidth") <= 0
                _screenshot(browser, f"{number}-{path}{suffix}", width=width, mobile=mobile)
        message = scene["message"]
        _viewport(browser, DESKTOP_WIDTH, 900)
        browser.get(f"{live_server.url}/dashboard/messages/{message.pk}/")
        assert len(_all(browser, "tr[data-attempt]")) == 3
        _screenshot(browser, "20-message-detail")
    finally:
        ratelimit.reset(str(workspace.pk))
