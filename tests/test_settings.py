"""Settings read in a new shell: what `make run` generated is found without exports."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRINT_KEY = "import django; django.setup(); from django.conf import settings; " \
            "print(settings.SECRET_KEY)"


def settings_in_new_shell(var_dir: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in ("SECRET_KEY", "DEBUG")}
    env.update(VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="config.settings")
    return subprocess.run([sys.executable, "-c", PRINT_KEY], cwd=ROOT, env=env,
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
