"""make lint's secret scan (scripts/check_secrets.py, detect-secrets): a new secret in a
tracked file fails it, naming the file; one listed in the baseline does not. (The project's
own tree is checked by `make lint` itself, in CI.)"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_secrets.py"
DETECT_SECRETS = Path(sys.executable).parent / "detect-secrets"
# Built at run time so this file holds no secret-looking line itself.
FAKE_AWS_KEY = "AKIA" + "ZZZZEXAMPLE7TESTQ"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   cwd=repo, check=True, capture_output=True)


def check(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT)], cwd=repo, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with the project's baseline settings and no known secret."""
    shutil.copy(ROOT / ".secrets.baseline", tmp_path / ".secrets.baseline")
    subprocess.run([str(DETECT_SECRETS), "scan", "--baseline", ".secrets.baseline"],
                   cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "settings.py").write_text('DEBUG = True\n')
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    return tmp_path


def test_a_new_secret_fails_naming_its_file(repo: Path):
    assert check(repo).returncode == 0
    (repo / "settings.py").write_text(f'AWS_ACCESS_KEY_ID = "{FAKE_AWS_KEY}"\n')
    git(repo, "add", ".")
    result = check(repo)
    assert result.returncode == 1
    assert "settings.py:1: AWS Access Key not in .secrets.baseline" in result.stdout


def test_a_secret_listed_in_the_baseline_passes_even_when_its_line_moves(repo: Path):
    (repo / "settings.py").write_text(f'AWS_ACCESS_KEY_ID = "{FAKE_AWS_KEY}"\n')
    git(repo, "add", ".")
    subprocess.run([str(DETECT_SECRETS), "scan", "--baseline", ".secrets.baseline"],
                   cwd=repo, check=True, capture_output=True)
    (repo / "settings.py").write_text(f'DEBUG = True\n\nAWS_ACCESS_KEY_ID = "{FAKE_AWS_KEY}"\n')
    result = check(repo)
    assert result.returncode == 0, result.stdout
