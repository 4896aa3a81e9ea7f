"""The documentation site in a real browser: the diagrams are drawn, and nothing is fetched
from anywhere but the site itself."""
from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.docs_site import build_site


@pytest.fixture(scope="module")
def site_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    site = build_site(tmp_path_factory.mktemp("site"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _resources(browser: Any) -> list[str]:
    return browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")


@pytest.mark.parametrize("page", ["concepts.html", "operations/scaling.html"])
def test_diagrams_are_drawn_offline(browser: Any, site_url: str, page: str) -> None:
    browser.get(f"{site_url}/{page}")
    WebDriverWait(browser, 30).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "div.diagram svg"))
    svg = browser.find_element(By.CSS_SELECTOR, "div.diagram svg")
    assert "PostgreSQL" in svg.get_attribute("textContent")
    fetched = _resources(browser)
    assert any(url.endswith("mermaid.min.js") for url in fetched)
    assert [url for url in fetched if not url.startswith(site_url)] == []


def test_search_and_api_reference_load_from_the_site_alone(browser: Any, site_url: str) -> None:
    browser.get(f"{site_url}/reference/api/messages.html")
    WebDriverWait(browser, 30).until(
        lambda driver: "POST /api/v1/messages/" in driver.find_element(By.TAG_NAME, "body").text)
    browser.get(f"{site_url}/index.html")
    WebDriverWait(browser, 30).until(lambda driver: any(
        "search_index.json" in url for url in _resources(driver)))
    assert [url for url in _resources(browser) if not url.startswith(site_url)] == []
