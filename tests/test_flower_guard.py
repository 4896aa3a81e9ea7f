"""Flower starts only behind a strong basic-auth password (processes/flower.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from processes.flower import auth_problems

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("value", [
    "", "admin", "admin:", "admin:admin", "admin:password", "admin:short-pass",
    "flower:flower", "admin:aaaaaaaaaaaaaaaaaaaa", "ops:Str0ng-and-long-enough,admin:changeme",
])
def test_weak_default_or_missing_passwords_are_refused(value):
    assert auth_problems(value)


@pytest.mark.parametrize("value", ["admin:q3Vx8_LpZ0tRw2mNbYk7",
                                   "a:0123456789abcdefXY,b:Zz9-Yy8_Xx7.Ww6+"])
def test_long_random_passwords_pass(value):
    assert auth_problems(value) == []


def test_the_process_refuses_to_start_and_says_why(tmp_path):
    env = {**os.environ, "FLOWER_BASIC_AUTH": "admin:admin", "VAR_DIR": str(tmp_path),
           "ENV_FILE": str(tmp_path / "none.env")}
    result = subprocess.run([sys.executable, "-m", "processes.flower", "--port=1"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refusing to start Flower" in result.stderr
    assert "'admin'" in result.stderr


def test_the_procfile_starts_flower_through_the_guard():
    from config.supervisor import procfile_processes

    command = procfile_processes()["flower"]
    assert command.startswith("python -m processes.flower ")
    assert "--basic-auth" not in command  # Flower reads it from the environment, not argv
