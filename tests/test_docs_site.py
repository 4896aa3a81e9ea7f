"""The documentation site (make docs): built in strict mode, complete, and offline."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.docs_site import ROOT, build_site

# Tags and attributes the browser fetches on its own while loading a page.
FETCHED = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src",
           "video": "src", "audio": "src", "embed": "src", "object": "data"}


class _Fetches(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.classes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in FETCHED and values.get(FETCHED[tag]):
            self.urls.append(values[FETCHED[tag]] or "")
        if values.get("srcset"):
            self.urls.append(values["srcset"] or "")
        self.classes += (values.get("class") or "").split()
        self.urls += re.findall(r"url\(([^)]*)\)", values.get("style") or "")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_site(tmp_path_factory.mktemp("site"))


def test_every_page_of_the_navigation_is_built(site: Path) -> None:
    for page in ["index.html", "getting-started.html", "concepts.html", "journeys.html",
                 "migration.html", "reference/cron.html", "operations/deploying.html",
                 "operations/scaling.html", "operations/backups.html",
                 "operations/retention.html", "operations/upgrades.html",
                 "operations/troubleshooting.html", "operations/runbooks.html",
                 "guides/messages.html", "guides/flows.html", "guides/schedules.html",
                 "glossary.html", "security.html", "benchmarks.html"]:
        assert (site / page).is_file(), page


def test_no_page_makes_an_external_request(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 30
    offenders = []
    for page in pages:
        parser = _Fetches()
        parser.feed(page.read_text())
        for url in parser.urls:
            if re.match(r"\s*['\"]?(https?:)?//", url):
                offenders.append(f"{page.relative_to(site)}: {url}")
        # The theme fetches mermaid from a CDN for elements of class "mermaid": none exist.
        assert "mermaid" not in parser.classes, page
    for sheet in site.rglob("*.css"):
        for url in re.findall(r"url\(([^)]*)\)|@import\s+['\"]([^'\"]+)", sheet.read_text()):
            if re.match(r"\s*['\"]?(https?:)?//", "".join(url)):
                offenders.append(f"{sheet.relative_to(site)}: {url}")
    assert offenders == []


@pytest.mark.skipif(shutil.which("npm") is None,
                    reason="npm is not installed: mermaid.js comes from the npm registry")
def test_the_architecture_diagram_is_drawn_by_the_npm_package(site: Path) -> None:
    # Copied from node_modules (package-lock.json) by the build, not kept in docs/.
    assert not (ROOT / "docs/assets/javascripts/mermaid.min.js").exists()
    html = (site / "concepts.html").read_text()
    assert '<div class="diagram">flowchart LR' in html
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert "assets/javascripts/mermaid.min.js" in scripts
    served = (site / "assets/javascripts/mermaid.min.js").read_bytes()
    assert served == (ROOT / "node_modules/mermaid/dist/mermaid.min.js").read_bytes()
    assert len(served) > 1_000_000
    assert (site / "assets/javascripts/mermaid.LICENSE").read_text().startswith("The MIT")
    assert not re.search(r"fonts\.googleapis|fonts\.gstatic", html)


def test_the_api_reference_documents_every_operation_of_the_schema(site: Path) -> None:
    schema = json.loads((site / "reference/api/openapi.json").read_text())
    text = "\n".join(page.read_text() for page in (site / "reference/api").glob("*.html"))
    operations = [(method.upper(), path) for path, item in schema["paths"].items()
                  for method in item if method in {"get", "post", "put", "patch", "delete"}]
    assert len(operations) > 60
    missing = [op for op in operations if f"<code>{op[0]} {op[1]}</code>" not in text]
    assert missing == []
    schemas = (site / "reference/api/schemas.html").read_text()
    for name in schema["components"]["schemas"]:
        assert f'id="{name.lower()}"' in schemas, name


def test_a_broken_link_fails_the_strict_build(site: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    (docs / "index.md").write_text((docs / "index.md").read_text()
                                   + "\n[nowhere](no-such-page.md)\n")
    config = (ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
    config = config.replace("scripts/docs_hooks.py", str(ROOT / "scripts/docs_hooks.py"))
    (tmp_path / "mkdocs.yml").write_text(config)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OPENAPI_SCHEMA_FILE": str(site / "reference/api/openapi.json")})
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr
