"""The README's management command lines, pasted into a new shell: no SECRET_KEY, no
REDIS_URL exported, only what `make run` generated under the var directory."""
from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
Shell = Callable[[str], subprocess.CompletedProcess]


def readme_key_lines() -> list[str]:
    """Return the README's `KEY=$(...)` lines, as written."""
    lines = re.findall(r"^KEY\w*=\$\(.*\)$", (ROOT / "README.md").read_text(), re.M)
    assert len(lines) >= 2, "the README shows how to create a workspace and a key"
    return lines


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="module")
def new_shell(var_dir: Path) -> Iterator[Shell]:
    """A bash with a clean environment over a var directory laid out as `make run` leaves
    it: the generated secret key, a migrated SQLite file and the embedded Redis (set up
    once: migrating is the slow part)."""
    tmp_path = var_dir
    (tmp_path / "secret_key").write_text(secrets.token_urlsafe(48) + "\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "VAR_DIR": str(tmp_path), "ENV_FILE": str(tmp_path / "no.env")}

    def run(script: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)

    started = run(".venv/bin/python -m config.embedded_redis start && "
                  ".venv/bin/python manage.py migrate --noinput -v0")
    assert started.returncode == 0, started.stderr
    yield run
    run(".venv/bin/python -m config.embedded_redis stop")


def test_the_readme_key_lines_yield_working_keys(new_shell: Shell) -> None:
    script = "set -e\n" + "\n".join(readme_key_lines()) + '\nprintf "%s\\n" "$KEY" "$KEY2"'
    result = new_shell(script)
    assert result.returncode == 0, result.stderr
    keys = result.stdout.split()
    assert len(keys) == 2 and all(key.startswith("rk_") for key in keys)
    check = ("from django.test import Client; import os; "
             "[print(Client().get('/api/v1/workspace', secure=True, "
             "HTTP_AUTHORIZATION='Bearer ' + key)"
             ".json()['slug']) for key in os.environ['KEYS'].split()]")
    result = new_shell(f"KEYS='{' '.join(keys)}' "
                       f".venv/bin/python manage.py shell -v 0 -c \"{check}\"")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["acme", "acme"]


@pytest.mark.parametrize(("command", "line"), [
    ("create_api_key nowhere", "CommandError: No workspace with slug or id 'nowhere'."),
    ("create_workspace ''", "CommandError: name: This field cannot be blank."),
    ("create_workspace Acme --timezone Nowhere/Land",
     "CommandError: timezone: 'Nowhere/Land' is not a valid IANA time zone."),
])
def test_a_failing_command_exits_non_zero_with_one_clear_line(new_shell: Shell, command: str,
                                                              line: str) -> None:
    result = new_shell(f"KEY=$(.venv/bin/python manage.py {command})")
    assert result.returncode != 0
    assert result.stderr.strip() == line


def test_a_python_without_django_is_told_which_python_to_use() -> None:
    # -S: no site-packages, as with a system python that never saw `make install`.
    result = subprocess.run([sys.executable, "-S", "manage.py", "check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Django is not installed for this python: run `make install`, then use "
        ".venv/bin/python manage.py ..."]


def test_a_command_in_a_new_shell_publishes_to_the_redis_make_run_started(
        new_shell: Shell, var_dir: Path) -> None:
    publish = ("from config.celery import app; app.send_task("
               "'monitoring.tasks.heartbeat', args=['default'], queue='default')")
    result = new_shell(f'.venv/bin/python manage.py shell -c "{publish}"')
    assert result.returncode == 0, result.stderr
    broker = redis.Redis(unix_socket_path=str(var_dir / "redis.sock"))
    try:
        assert broker.llen("default") == 1
    finally:
        broker.close()
