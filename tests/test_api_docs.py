"""/api/docs/ works offline: Swagger UI comes from this service, never from a CDN."""
from __future__ import annotations

import re

HASHED_BUNDLE = re.compile(r"/swagger-ui-bundle\.[0-9a-f]{12}\.js$")


def page_assets(html: str) -> list[str]:
    """Return every src and href of a page."""
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_the_docs_page_names_no_other_host(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "://" not in html
    assert any(HASHED_BUNDLE.search(asset) for asset in page_assets(html))


def test_every_file_the_docs_page_loads_is_served(client):
    for asset in page_assets(client.get("/api/docs/").content.decode()):
        response = client.get(asset)
        # Static files stream (WhiteNoise; the test client closes a stream read to its end,
        # away from the database); the page's setup script (?script) is a view.
        body = (b"".join(response.streaming_content) if response.streaming
                else response.content)
        assert response.status_code == 200, asset
        assert body, asset
        if HASHED_BUNDLE.search(asset):
            assert response["Content-Type"].startswith("text/javascript")
