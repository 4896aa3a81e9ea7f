"""Real worker processes for tests that kill them."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

from messaging.channels import ALL_QUEUES

ROOT = Path(__file__).resolve().parents[2]
QUEUES = ",".join(ALL_QUEUES)


def database_url() -> str:
    """Return a DATABASE_URL that reaches the test database this process uses."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgresql://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    """Return the environment for a child process on the test database and broker."""
    return {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "SECRET_KEY": "test",
            "DJANGO_SETTINGS_MODULE": "config.settings", **extra}


def start_worker(concurrency: int = 1, log: Path | None = None,
                 **env: str) -> subprocess.Popen:
    """Start a prefork Celery worker in its own process group (its log to `log` if given)."""
    out = log.open("ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", QUEUES,
             "--concurrency", str(concurrency), "-P", "prefork", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-l", "warning"],
            cwd=ROOT, env=child_env(**env), start_new_session=True,
            stdout=out, stderr=out)
    finally:
        if log:
            out.close()


def kill(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send a signal to the worker and all its children, then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    process.wait(30)
