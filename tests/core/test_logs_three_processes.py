"""One message followed through the JSON-lines logs of three real processes (README.md,
"Following a message through the logs"): gunicorn accepts it, the dispatcher fires its
timer, a Celery worker sends it; each process's lines about it carry the request id the
client gave, the message id and the workspace."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.utils import timezone

from core.services import api_key_create
from messaging.models import Message
from tests.factories import WorkspaceFactory
from tests.support.processes import QUEUES, ROOT, child_env, kill
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

REQUEST_ID = "ticket-4711-logs"


def _spawn(name: str, argv: list[str], logs: Path, **env: str) -> subprocess.Popen:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True,
                            env=child_env(LOG_JSON="1", LOG_LEVEL="INFO", DEBUG="0",
                                          ALLOWED_HOSTS="127.0.0.1", SECURE_SSL_REDIRECT="0",
                                          **env))


def _lines(path: Path) -> list[dict]:
    """Return the JSON lines of a process's log (other output, if any, is left out)."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Start web (gunicorn), worker (celery) and dispatcher; yield the web's URL and where
    their logs go."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    started = [
        _spawn("web", [sys.executable, "-m", "gunicorn", "config.wsgi", "--workers", "1",
                       "--bind", f"127.0.0.1:{port}"], tmp_path),
        _spawn("worker", [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q",
                          QUEUES, "--concurrency", "1", "-P", "solo", "--without-gossip",
                          "--without-mingle", "--without-heartbeat", "-l", "info"], tmp_path),
        _spawn("dispatcher", [sys.executable, "manage.py", "run_dispatcher"], tmp_path),
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), timeout=120)
        yield url, tmp_path
    finally:
        for process in started:
            kill(process)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/health/live", timeout=5).status_code == 200
    except requests.RequestException:  # not listening yet, or still starting up
        return False


def test_each_process_logs_the_request_id_with_the_message(processes):
    url, logs = processes
    workspace = WorkspaceFactory()
    _, key = api_key_create(workspace=workspace)
    send_at = timezone.now() + timedelta(seconds=2)
    answer = requests.post(f"{url}/api/v1/messages", timeout=30, json={
        "channel": "sms", "to": "+14155552671", "body": "hi", "send_at": send_at.isoformat()},
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": REQUEST_ID})
    assert answer.status_code == 201, answer.text
    assert answer.headers["X-Request-ID"] == REQUEST_ID
    message_id = answer.json()["id"]
    wait_until(lambda: Message.objects.get(pk=message_id).status == "sent", timeout=60)

    about = {}
    for name in ("web", "dispatcher", "worker"):
        wait_until(lambda name=name: any(line.get("message_id") == message_id
                                         for line in _lines(logs / f"{name}.log")),
                   timeout=30)
        about[name] = [line for line in _lines(logs / f"{name}.log")
                       if line.get("message_id") == message_id]
    for name, lines in about.items():
        assert {line["request_id"] for line in lines} == {REQUEST_ID}, name
        assert {line["workspace_id"] for line in lines} == {str(workspace.pk)}, name
    assert "sms message accepted: scheduled" in [line["message"] for line in about["web"]]
    assert "sms message due: queued" in [line["message"] for line in about["dispatcher"]]
    sent = [line for line in about["worker"] if line["message"] == "sms message sent"]
    assert sent and sent[0]["task_id"]
    # The web's request line names the request too, and the worker's task lines its id.
    assert any(line.get("name") == "relay.request" and line.get("request_id") == REQUEST_ID
               for line in _lines(logs / "web.log"))
    assert any(line.get("task_id") == sent[0]["task_id"] and "message_id" not in line
               and line.get("request_id") == REQUEST_ID
               for line in _lines(logs / "worker.log"))
