"""Settings read in a new shell: what `make run` generated and `.env` are found without
exports, and a real environment variable always wins."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".env.example"


def settings_in_new_shell(var_dir: Path, *names: str, **env: str) -> subprocess.CompletedProcess:
    """Print the named settings (default SECRET_KEY), one a line, from a fresh process."""
    code = ("import django; django.setup(); from django.conf import settings; "
            f"[print(getattr(settings, name)) for name in {list(names or ['SECRET_KEY'])!r}]")
    clean = {key: value for key, value in os.environ.items()
             if key not in ("SECRET_KEY", "DEBUG", "METRICS_TOKEN", "TIME_ZONE")}
    clean.update({"VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "config.settings",
                  "ENV_FILE": str(var_dir / "no.env"), **env})
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=60)


def test_a_new_shell_reads_the_key_make_run_generated(tmp_path):
    (tmp_path / "secret_key").write_text("generated-by-make-run\n")
    result = settings_in_new_shell(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "generated-by-make-run"


def test_without_a_key_anywhere_the_settings_refuse_to_start(tmp_path):
    result = settings_in_new_shell(tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_a_new_shell_reads_the_metrics_token_make_run_generated(tmp_path):
    (tmp_path / "metrics_token").write_text("scrape-me\n")
    result = settings_in_new_shell(tmp_path, "METRICS_TOKEN", SECRET_KEY="k")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "scrape-me"
    result = settings_in_new_shell(tmp_path, "METRICS_TOKEN", SECRET_KEY="k",
                                   METRICS_TOKEN="from-env")
    assert result.stdout.strip() == "from-env"


def test_a_relative_var_dir_is_taken_from_the_project_root_not_the_working_directory(tmp_path):
    result = settings_in_new_shell(tmp_path, "VAR_DIR", SECRET_KEY="k", VAR_DIR="var")
    assert result.stdout.strip() == str(ROOT / "var")


def test_a_dotenv_value_reaches_the_settings_and_the_environment_wins(tmp_path):
    (tmp_path / "custom.env").write_text(
        'SECRET_KEY=from-dotenv\nTIME_ZONE=Europe/Berlin\nAPI_RATE_LIMIT="5/s burst 10"\n')
    result = settings_in_new_shell(tmp_path, "SECRET_KEY", "TIME_ZONE", "API_RATE_LIMIT",
                                   ENV_FILE=str(tmp_path / "custom.env"),
                                   TIME_ZONE="America/New_York")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["from-dotenv", "America/New_York", "5/s burst 10"]


def documented_variables() -> set[str]:
    """Return the variable names of the README's configuration table."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in table.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    return names


def test_every_variable_of_the_example_is_documented_and_parses():
    values = dotenv_values(EXAMPLE)
    assert values["API_RATE_LIMIT"] == "50/s burst 100"
    assert set(values) - documented_variables() == set()
    assert len(values) > 50


def test_bash_sources_the_example_to_the_same_values_as_dotenv():
    keys = list(dotenv_values(EXAMPLE))
    script = 'set -eu; set -a; . ./.env.example; set +a; for k in "$@"; do ' \
             'printf "%s=%s\\n" "$k" "${!k}"; done'
    result = subprocess.run(["bash", "-c", script, "bash", *keys], cwd=ROOT,
                            env={"PATH": os.environ["PATH"]}, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    sourced = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert sourced == {key: value or "" for key, value in dotenv_values(EXAMPLE).items()}
