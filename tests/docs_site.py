"""Build the documentation site once per test session (make docs' command, into a temp dir)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_built: dict[str, Path] = {}


def build_site(into: Path) -> Path:
    """Run `mkdocs build --strict` into `into` (once per session) and return the site."""
    if "site" not in _built:
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        result = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(into)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-4000:]
        _built["site"] = into
    return _built["site"]
