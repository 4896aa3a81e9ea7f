"""scripts/audit_deps.py: a vulnerability with a fix fails, one without warns, and an
audit that could not look is never a pass."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import audit_deps

ROOT = Path(__file__).resolve().parent.parent


def report(*dependencies: dict) -> dict:
    return {"dependencies": list(dependencies), "fixes": []}


def test_a_vulnerability_with_a_fixed_release_fails(monkeypatch, capsys):
    monkeypatch.setattr(audit_deps, "run_audit", lambda args: (report(
        {"name": "django", "version": "4.2.0", "vulns": [
            {"id": "PYSEC-2023-100", "fix_versions": ["4.2.2"], "aliases": ["CVE-2023-1"]}]},
        {"name": "requests", "version": "2.32.3", "vulns": []}), ""))
    assert audit_deps.main([]) == 1
    err = capsys.readouterr().err
    assert "django 4.2.0: PYSEC-2023-100 (CVE-2023-1) fixed in 4.2.2" in err
    assert "pyproject.toml" in err  # says how to update


def test_a_vulnerability_without_a_fix_only_warns(monkeypatch, capsys):
    monkeypatch.setattr(audit_deps, "run_audit", lambda args: (report(
        {"name": "x", "version": "1.0", "vulns": [{"id": "GHSA-1", "fix_versions": []}]}), ""))
    assert audit_deps.main([]) == 0
    assert "warning: x 1.0: GHSA-1 has no fixed release yet" in capsys.readouterr().out


@pytest.mark.parametrize("allow, code", [([], 2), (["--allow-unavailable"], 0)])
def test_packages_pypi_did_not_answer_for_are_not_a_pass(monkeypatch, capsys, allow, code):
    skipped = {"name": "django", "skip_reason": "Dependency not found on PyPI"}
    monkeypatch.setattr(audit_deps, "run_audit", lambda args: (report(skipped), ""))
    assert audit_deps.main(allow) == code
    assert "DEPENDENCY AUDIT NOT PERFORMED" in capsys.readouterr().err


def test_without_a_network_the_real_audit_exits_2_and_says_so(tmp_path):
    # A proxy nobody listens on: every query fails; a fresh cache so none is answered from it.
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    result = subprocess.run(
        [sys.executable, "scripts/audit_deps.py", "--cache-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-500:]
    assert "DEPENDENCY AUDIT NOT PERFORMED" in result.stderr
