"""`make run` keeps serving when one process dies: the stack started as scripts/run.sh
starts it (supervisord over the Procfile, embedded Redis, SQLite, a private var directory
and free ports), its worker SIGKILLed, then a message sent afterwards is still delivered;
Ctrl-C stops every process. Takes about a minute on a busy two-core machine."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from config import embedded_redis
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 180

pytestmark = pytest.mark.timeout(420)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    process: subprocess.Popen
    port: int
    var: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def pid_of(self, name: str) -> int:
        """Return the pid supervisord reports for the process (0 while it is not running)."""
        result = subprocess.run(
            [str(ROOT / ".venv/bin/supervisorctl"), "-c", str(self.var / "supervisord.conf"),
             "pid", name], capture_output=True, text=True, timeout=30)
        return int(result.stdout.strip()) if result.stdout.strip().isdigit() else 0


def answers(url: str, **kwargs: object) -> requests.Response | None:
    with contextlib.suppress(requests.RequestException):
        return requests.get(url, timeout=5, **kwargs)  # type: ignore[arg-type]
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) has stopped too.
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    return False


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    var = tmp_path / "var"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "VAR_DIR": str(var), "ENV_FILE": str(tmp_path / "no.env"),
           "PORT": str(free_port()), "FLOWER_PORT": str(free_port()),
           "WEB_CONCURRENCY": "1", "WORKER_CONCURRENCY": "1", "LOG_LEVEL": "warning"}
    log = tmp_path / "run.log"
    with log.open("w") as out:
        process = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    stack = Stack(process, int(env["PORT"]), var, log)
    try:
        yield stack
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(120)


def send_sms(stack: Stack, key: str) -> str:
    response = requests.post(stack.url("/api/v1/messages"), timeout=10,
                             headers={"Authorization": f"Bearer {key}"},
                             json={"channel": "sms", "to": "+14155552671", "body": "hello"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def status_of(stack: Stack, key: str, message_id: str) -> str:
    response = answers(stack.url(f"/api/v1/messages/{message_id}"),
                       headers={"Authorization": f"Bearer {key}"})
    return response.json()["status"] if response is not None else ""


def test_a_killed_worker_is_restarted_and_ctrl_c_stops_everything(stack: Stack) -> None:
    key = wait_until(lambda: (re.search(r"API key \(shown once\): (\S+)", stack.output())
                              or [None, None])[1], timeout=STARTUP_SECONDS, interval=0.5)
    wait_until(lambda: stack.pid_of("worker") and answers(stack.url("/health/live")),
               timeout=STARTUP_SECONDS, interval=0.5)
    pids = {name: stack.pid_of(name) for name in ("web", "worker", "beat", "flower",
                                                  "dispatcher")}
    assert all(pids.values()), (pids, stack.output())

    os.kill(pids["worker"], signal.SIGKILL)
    assert answers(stack.url("/health/live")).status_code == 200  # type: ignore[union-attr]
    restarted = wait_until(lambda: stack.pid_of("worker") not in (0, pids["worker"])
                           and stack.pid_of("worker"), timeout=60, interval=0.5)
    message_id = send_sms(stack, key)
    wait_until(lambda: status_of(stack, key, message_id) == "sent", timeout=120, interval=0.5)
    assert stack.process.poll() is None
    assert all(alive(pid) for name, pid in pids.items() if name != "worker")

    # What run.sh printed works: the dashboard link and the metrics scrape line.
    output = stack.output()
    assert f"Dashboard: http://localhost:{stack.port}/dashboard/" in output
    token = (stack.var / "metrics_token").read_text().strip()
    assert f"curl -H 'Authorization: Bearer {token}' http://localhost:{stack.port}/metrics" \
        in output
    scrape = answers(stack.url("/metrics"), headers={"Authorization": f"Bearer {token}"})
    assert scrape is not None and scrape.status_code == 200
    assert "relay_messages" in scrape.text
    assert answers(stack.url("/metrics")).status_code == 401  # type: ignore[union-attr]

    # Ctrl-C in the terminal: SIGINT to run.sh's whole process group.
    os.killpg(stack.process.pid, signal.SIGINT)
    assert stack.process.wait(120) == 0, stack.output()
    stopped = [*pids.values(), restarted]
    wait_until(lambda: not any(alive(pid) for pid in stopped), timeout=60, interval=0.5)
    assert answers(stack.url("/health/live")) is None
    assert not embedded_redis.is_up(stack.var / "redis.sock")

