"""make chaos: inject faults while messages flow; count lost and duplicated (Jepsen-style).

    python -m bench.chaos [--scenario kill,redis,postgres,publish,provider,visibility,
                                      sigterm,sigterm-group,provider-outage,many]
                          [--n 10000] [--broker redis|amqp] [--out var/bench/chaos.json]

Every scenario sends N SMS through the API to the recording stand-in provider (which
deduplicates by Idempotency-Key, as the contract requires), injects its fault, waits for
recovery and a full drain, then reports attempted, accepted (201), sent, lost (accepted
but never received), duplicate requests (a key received more than once: absorbed by the
provider's dedupe), and the recovery time (last fault -> everything delivered), plus what
a scenario measured of its own (`details`). A scenario whose parts are missing here (no
RabbitMQ, no initdb) is reported as skipped, with the reason.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import (
    ROOT,
    Cluster,
    PrivatePostgres,
    RabbitVhost,
    Unavailable,
    free_port,
    http_json,
    wait_port,
)
from bench.load import Client, Connection
from messaging.channels import SMS

# Short recovery knobs so a run takes minutes, not hours; the logic is the production one.
CHAOS_ENV = {
    "DELIVERY_LEASE_SECONDS": "10", "REQUEUE_AFTER_SECONDS": "10",
    "PROVIDER_TIMEOUT_SECONDS": "2", "PROVIDER_CONNECT_TIMEOUT_SECONDS": "1",
    "RETRY_BASE_SECONDS": "1", "RETRY_CAP_SECONDS": "20", "MAX_ATTEMPTS_SMS": "15",
}
SWEEP_EVERY = 2.0  # the driver runs the sweepers this often (beat does it every 15 s)


class Run:
    """One scenario: a cluster, a sender, a sweeper loop and the counters."""

    def __init__(self, name: str, n: int, env: dict[str, str] | None = None,
                 web_config: str | None = None, private_postgres: bool = False,
                 broker: str = "redis"):
        """Raise Unavailable when a part the scenario needs cannot be had here. Nothing
        outside this process exists until start()."""
        self.name, self.n, self.broker = name, n, broker
        self.pg = PrivatePostgres() if private_postgres else None
        self.vhost = RabbitVhost(f"relay_chaos_{name}") if broker == "amqp" else None
        # BENCH_DATABASE_NAME (as for make bench) keeps parallel runs' databases apart.
        prefix = os.environ.get("BENCH_DATABASE_NAME", "relay")
        self.cluster = Cluster(name=f"{prefix}_chaos_{name}", env={**CHAOS_ENV, **(env or {})},
                               database_url=self.pg.url() if self.pg else None)
        self.web_config = web_config
        self.details: dict[str, Any] = {}  # what a scenario measured beyond the counters
        self.accepted: list[str] = []
        self.attempted = 0
        self.errors: dict[str, int] = {}
        self.last_fault = 0.0
        self.restarts: dict[str, int] = {}
        self.stop = threading.Event()
        # What a scenario measures once everything is delivered (into `details`).
        self.after_drain: Callable[[], None] = lambda: None
        # The message ids the provider(s) received (a scenario with two providers: both).
        self.received: Callable[[], set[str]] = lambda: {
            r["key"] for r in self.cluster.stub_records()}

    def start(self) -> None:
        c = self.cluster
        if self.pg:
            self.pg.create()
        if self.vhost:
            self.vhost.create()
            c.broker_url = self.vhost.url
            self.details["vhost"] = self.vhost.vhost
        c.start_redis()
        c.reset_database()
        c.setup_django()
        c.start_stub()
        if self.web_config:
            c.spawn("web", [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind",
                            f"127.0.0.1:{c.web_port}", "--workers", "2", "-c",
                            str(ROOT / self.web_config)])
            from bench.harness import wait_port

            wait_port(c.web_port)
        else:
            c.start_web()
        c.workers = 2
        c.start_worker("worker-a")
        c.start_worker("worker-b")
        c.start_dispatcher()
        _, self.key = c.workspace(self.name)
        threading.Thread(target=self._sweep_loop, daemon=True).start()
        threading.Thread(target=self._supervise, daemon=True).start()
        time.sleep(2)

    def _supervise(self) -> None:
        """Restart a worker or dispatcher that exited, as systemd or Kubernetes would: a
        Celery worker can exit on a broker outage ("Unrecoverable error") instead of
        reconnecting, and production runs every process under such a supervisor."""
        restart = {"worker-a": lambda: self.cluster.start_worker("worker-a"),
                   "worker-b": lambda: self.cluster.start_worker("worker-b"),
                   "dispatcher": self.cluster.start_dispatcher}
        while not self.stop.is_set():
            for name, start in restart.items():
                proc = self.cluster.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    start()
            time.sleep(1)

    def _sweep_loop(self) -> None:
        from django.db import close_old_connections

        from flows import engine
        from messaging.delivery import sweeper

        while not self.stop.is_set():
            try:
                sweeper.sweep()
                engine.sweep()
            except Exception:  # the database or broker is down mid-fault: try again
                close_old_connections()
            time.sleep(SWEEP_EVERY)

    def send(self, batch: int = 50, on_progress: Callable[[int], None] | None = None,
             seconds: float = 0.0, more: Callable[[], bool] | None = None) -> None:
        """Send N messages in batches of `batch` (spread over `seconds` if given); keep the
        ids of every 201. With `more`, go on at the same pace past N while it says so."""
        client = Client(self.cluster.web_url, {"Authorization": f"Bearer {self.key}"})
        batch = max(1, min(batch, int(self.n / seconds))) if seconds else batch
        started = time.monotonic()
        offset = 0
        while offset < self.n or (more is not None and more()):
            if seconds:
                time.sleep(max(0.0, started + seconds * offset / self.n - time.monotonic()))
            count = min(self.n, offset + batch) - offset if offset < self.n else batch
            items = [{"channel": SMS, "to": "+14155552671", "body": f"chaos {i}"}
                     for i in range(offset, offset + count)]
            offset += count
            self.attempted += len(items)
            try:
                status, answer = client.post("/api/v1/messages/batch", {"messages": items})
            except Exception as exc:  # connection refused/reset while web or db is down
                self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
                time.sleep(0.2)
                continue
            if status == 201:
                self.accepted.extend(m["id"] for m in answer["messages"])
            else:
                self.errors[str(status)] = self.errors.get(str(status), 0) + 1
            if on_progress:
                on_progress(offset)

    def drain(self, timeout: float = 600) -> dict[str, Any]:
        """Wait until every accepted message reached the provider and is recorded `sent`
        (a worker killed after the call leaves it `sending` until the sweeper takes it back
        and it is sent again, deduplicated), or until time runs out."""
        from messaging.models import Message

        wanted = set(self.accepted)
        deadline = time.monotonic() + timeout
        received: set[str] = set()
        while time.monotonic() < deadline:
            received = self.received()
            if wanted <= received and Message.objects.filter(
                    pk__in=self.accepted, status="sent").count() == len(wanted):
                break
            time.sleep(1)
        done = time.time()
        self.stop.set()
        stats = self.cluster.stub_stats()
        received = self.received()
        persisted = set(map(str, Message.objects.filter(pk__in=self.accepted)
                            .values_list("pk", flat=True)))
        sent = Message.objects.filter(pk__in=self.accepted, status="sent").count()
        return {"scenario": self.name, "broker": self.broker, "attempted": self.attempted,
                "accepted": len(self.accepted), "accepted_not_persisted": len(
                    wanted - persisted), "sent": sent, "received": len(wanted & received),
                "lost": len(wanted - received), "duplicate_requests": stats["deduplicated"],
                "recovery_seconds": round(done - self.last_fault, 1) if self.last_fault
                else None, "client_errors": self.errors,
                "supervisor_restarts": self.restarts, "details": self.details}

    def close(self) -> None:
        """Stop every process, then remove the private cluster and vhost (also after a
        failure: run_scenario calls this in `finally`)."""
        from django.apps import apps
        from django.db import connections

        self.stop.set()
        self.cluster.stop_all()
        if apps.ready:
            connections.close_all()
        if self.pg:
            self.pg.remove()
        if self.vhost:
            self.vhost.remove()


def in_background(fn: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


# --- the scenarios --------------------------------------------------------------------------

def kill(run: Run) -> None:
    """SIGKILL a random worker (its whole process group) every 2 s while sending; restart.

    Details: the kills, the repeats per kill (mean) and the most any one kill caused (a
    repeat is charged to the first kill after the key's first request), against the calls
    a worker can have in flight (pool processes x PROVIDER_CONCURRENCY)."""
    kills: list[float] = []
    sender = in_background(lambda: run.send(seconds=max(10.0, run.n / 100)))
    while sender.is_alive():
        time.sleep(2)
        name = random.choice(["worker-a", "worker-b"])
        kills.append(time.time())
        run.cluster.stop(name, sig=signal.SIGKILL)
        run.cluster.start_worker(name)
        run.last_fault = time.time()
    run.after_drain = lambda: run.details.update(repeats_per_kill(run, kills))


def repeats_per_kill(run: Run, kills: list[float]) -> dict[str, Any]:
    """Charge each repeated request to the first kill after its key's first request."""
    from bisect import bisect_left

    from django.conf import settings

    first = {r["key"]: r["at"] for r in run.cluster.stub_records()}
    repeats = http_json(f"{run.cluster.stub_url}/_repeats")
    per_kill = [0] * len(kills)
    for repeat in repeats:
        index = bisect_left(kills, first.get(repeat["key"], repeat["at"]))
        if index < len(kills):
            per_kill[index] += 1
    return {"kills": len(kills), "repeats": len(repeats),
            "repeats_per_kill": round(len(repeats) / len(kills), 2) if kills else None,
            "max_repeats_one_kill": max(per_kill, default=0),
            "calls_in_flight_bound": run.cluster.workers * settings.PROVIDER_CONCURRENCY}


def redis(run: Run) -> None:
    """FLUSHALL mid-run, then restart Redis mid-run."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(run.cluster.redis_url)
    half = run.n // 3

    def faults(done: int) -> None:
        if done >= half and not getattr(run, "flushed", False):
            run.flushed = True
            client.flushall()
            run.last_fault = time.time()
        if done >= 2 * half and not getattr(run, "restarted", False):
            run.restarted = True
            run.cluster.stop("redis")
            time.sleep(2)
            run.cluster.start_redis_on_same_port()
            run.last_fault = time.time()

    run.send(on_progress=faults)


PG_OUTAGE_SECONDS = 3.0  # the private cluster stays down this long (a bare restart is ~1 s)
PG_POSTERS = 4  # client threads posting single messages at a fixed total rate


def postgres(run: Run) -> None:
    """Stop the run's private PostgreSQL cluster (-m fast) a third of the way through a
    stream of single POSTs, keep it down PG_OUTAGE_SECONDS, start it again.

    Answers during the outage must be 503 with Retry-After (or a refused connection), never
    500 or another 5xx: the scenario fails on any. A 201 must mean a stored row that is sent.
    Details: 5xx, 503s and connection errors during the outage, 5xx other than 503 over the
    whole run (`500s`), 503s without Retry-After, the first 201 after the start, and rows
    stored although the client got no 201.
    """
    from django.db import connections

    assert run.pg is not None
    log: list[tuple[float, float, int | str, str | None]] = []
    sender = in_background(lambda: post_stream(run, log, seconds=max(20.0, run.n / 30)))
    while sender.is_alive() and len(log) < run.n // 3:
        time.sleep(0.05)
    stopping = time.time()
    run.pg.stop()
    time.sleep(PG_OUTAGE_SECONDS)
    run.pg.start()
    up = run.last_fault = time.time()
    sender.join()
    connections.close_all()  # this thread's connection died with the server
    run.details.update(outage_report(run, log, stopping, up))


def post_stream(run: Run, log: list[tuple[float, float, int | str, str | None]], *,
                seconds: float) -> None:
    """POST n single messages at an even rate over `seconds` from PG_POSTERS threads, one
    attempt each (no client retry, so an error answer is counted, never hidden); append
    (started, finished, status or exception name, message id) to `log`."""
    rate = run.n / seconds
    indexes = iter(range(run.n))
    lock = threading.Lock()
    begin = time.monotonic()
    headers = {"Authorization": f"Bearer {run.key}", "Content-Type": "application/json"}
    port = run.cluster.web_port

    def poster() -> None:
        conn = Connection("127.0.0.1", port, timeout=30)
        for i in indexes:
            time.sleep(max(0.0, begin + i / rate - time.monotonic()))
            body = json.dumps({"channel": SMS, "to": "+14155552671", "body": f"pg {i}"})
            started = time.time()
            try:
                conn.request("POST", "/api/v1/messages", body, headers)
                response = conn.getresponse()
                answer = json.loads(response.read() or b"null")
                status: int | str = response.status
                if status == 503 and not (response.getheader("Retry-After") or "").isdigit():
                    status = "503 without Retry-After"
            except (OSError, ValueError, http.client.HTTPException) as exc:
                conn.close()
                conn = Connection("127.0.0.1", port, timeout=30)
                status, answer = type(exc).__name__, None
            ident = answer.get("id") if status == 201 and isinstance(answer, dict) else None
            with lock:
                run.attempted += 1
                log.append((started, time.time(), status, ident))
                if ident:
                    run.accepted.append(ident)
                else:
                    run.errors[str(status)] = run.errors.get(str(status), 0) + 1

    threads = [threading.Thread(target=poster) for _ in range(PG_POSTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def outage_report(run: Run, log: list[tuple[float, float, int | str, str | None]],
                  stopping: float, up: float) -> dict[str, Any]:
    """Summarise the POSTs around the outage (stop begun at `stopping`, started at `up`)."""
    from messaging.models import Message

    after = sorted(finished for started, finished, status, _ in log
                   if status == 201 and started >= up)
    back = after[0] if after else None
    window = [status for started, _, status, _ in log
              if started >= stopping and (back is None or started < back)]
    stored = Message.objects.filter(workspace__name=run.name).count()
    return {"outage_s": round(up - stopping, 1),
            "first_201_after_restart_s": round(back - up, 2) if back else None,
            "requests_in_outage": len(window),
            "5xx_in_outage": sum(1 for s in window if isinstance(s, int) and s >= 500),
            # The outage must answer 503 with Retry-After, never another 5xx (a 500 is a bug).
            "503_in_outage": sum(1 for s in window if s == 503),
            "500s": sum(1 for _, _, s, _ in log if isinstance(s, int) and s >= 500 and s != 503),
            "503_without_retry_after": sum(1 for _, _, s, _ in log
                                           if s == "503 without Retry-After"),
            "connection_errors_in_outage": sum(1 for s in window if isinstance(s, str)
                                               and s != "503 without Retry-After"),
            "stored_without_201": stored - len(set(run.accepted))}


def publish(run: Run) -> None:
    """Every on-commit publish is lost (web "killed" after commit): the sweeper sends all."""
    run.send()
    run.last_fault = time.time()


def provider(run: Run) -> None:
    """The provider answers 503 for 30 s, then hangs past the timeout, then drops
    connections; everything is sent after it recovers."""
    c = run.cluster
    sender = in_background(run.send)
    time.sleep(1)
    c.stub_mode(mode="error", status=503)
    time.sleep(30)
    c.stub_mode(mode="slow", delay=5)
    time.sleep(10)
    c.stub_mode(mode="drop")
    time.sleep(10)
    c.stub_mode(mode="ok")
    run.last_fault = time.time()
    sender.join()


OUTAGE_SECONDS = 30  # provider-outage: 503 for the first half, refused connections after


def provider_outage(run: Run) -> None:
    """Two SMS providers in order, the primary (http) down for OUTAGE_SECONDS while N
    messages are sent over OUTAGE_SECONDS + 15 s: it answers 503 for half the outage, then
    refuses connections (its process stopped), then comes back. Every message must be sent
    exactly once in total across the two providers (the secondary, twilio-shaped, receives
    `<id>:twilio`), none may reach the dead letters, the primary's breaker must open and
    close again, and a provider_down alert rule must fire."""
    from core.models import DeadLetter
    from messaging.providers import breaker
    from messaging.providers.registry import providers_for
    from monitoring import alerts
    from monitoring.models import AlertEvent, AlertRule

    c = run.cluster
    secondary = Secondary(c)
    workspace = secondary.route(run.name)
    primary_breaker = providers_for(workspace, SMS)[0].breaker_id
    rule = AlertRule.objects.create(workspace=workspace, name="sms provider down",
                                    type=AlertRule.Type.PROVIDER_DOWN, threshold=1,
                                    window_seconds=60, channel=AlertRule.Channel.EMAIL,
                                    recipients=["ops@example.com"])
    evaluating = in_background(lambda: evaluate_until(run, alerts.alerts_evaluate))
    kept: list[dict] = []  # the primary's records from before its process was stopped
    run.received = lambda: secondary.received() | {r["key"] for r in [
        *kept, *c.stub_records()]}
    sender = in_background(lambda: run.send(batch=10, seconds=OUTAGE_SECONDS + 15))
    time.sleep(3)
    c.stub_mode(mode="error", status=503)
    time.sleep(OUTAGE_SECONDS / 2)
    kept.extend(c.stub_records())
    c.stop("stub")  # connections refused from here on
    time.sleep(OUTAGE_SECONDS / 2)
    c.start_stub()
    run.last_fault = time.time()
    sender.join()

    def measure() -> None:
        evaluating.join(5)
        primary = [*kept, *c.stub_records()]
        by_primary = [r["key"] for r in primary]
        by_secondary = secondary.keys()
        both = set(by_primary) & set(by_secondary)
        state = breaker.read(primary_breaker)
        events = AlertEvent.objects.filter(rule=rule)
        run.details.update({
            "sent_by_primary": len(set(by_primary)), "sent_by_secondary": len(set(by_secondary)),
            "sent_by_both": len(both),
            "repeated_keys": (len(by_primary) - len(set(by_primary))
                              + len(by_secondary) - len(set(by_secondary))),
            "deduplicated_by_secondary": secondary.stats()["deduplicated"],
            "dead_letters": DeadLetter.objects.filter(workspace=workspace).count(),
            "breaker_opened": state.times_opened, "breaker_closed": state.times_closed,
            "breaker_state": state.state, "alert_fired": events.exists(),
            "alert_resolved": events.filter(resolved_at__isnull=False).exists()})
        broken = [name for name, bad in (
            ("a message reached both providers", both),
            ("a provider was asked twice for one message", run.details["repeated_keys"]),
            ("dead letters", run.details["dead_letters"]),
            ("the breaker never opened", not state.times_opened),
            ("the breaker never closed", not state.times_closed or state.state != "closed"),
            ("the alert did not fire", not run.details["alert_fired"])) if bad]
        run.details["broken"] = broken
        secondary.stop()

    run.after_drain = measure


def evaluate_until(run: Run, evaluate: Callable[[], Any]) -> None:
    """Evaluate the alert rules every 2 s, as beat does every minute, until the run ends."""
    from django.db import close_old_connections

    while not run.stop.is_set():
        try:
            evaluate()
        except Exception:  # the database is busy or down mid-fault: try again
            close_old_connections()
        time.sleep(2)


class Secondary:
    """A second recording provider, answering the Twilio API's path, behind the first."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.port = cluster, free_port()
        cluster.spawn("stub-secondary", [sys.executable, "-m", "bench.stub_provider",
                                         str(self.port)])
        wait_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def route(self, name: str) -> Any:
        """Return the run's workspace with sms through the primary, then this provider."""
        from core.models import Workspace

        workspace = Workspace.objects.get(name=name)
        workspace.settings = {**workspace.settings, "providers": {
            **workspace.settings["providers"],
            SMS: [{"name": "http", "api_url": self.cluster.stub_url},
                  {"name": "twilio", "api_base": self.url, "account_sid": "ACchaos",
                   "auth_token": "chaos", "from_number": "+14155550000"}],
            "email": {"name": "console"}}}
        workspace.save(update_fields=["settings"])
        return workspace

    def keys(self) -> list[str]:
        """Return the message ids this provider received (its key is `<id>:twilio`)."""
        return [r["key"].removesuffix(":twilio") for r in http_json(f"{self.url}/_records")]

    def received(self) -> set[str]:
        return set(self.keys())

    def stats(self) -> dict:
        return http_json(f"{self.url}/_stats")

    def stop(self) -> None:
        self.cluster.stop("stub-secondary")


# Each provider call takes this long, so a batch of 50 (8 calls at a time) is in flight for
# about 3.5 s: a signal lands mid-batch. Below the chaos provider timeout (2 s): no retries.
SLOW_PROVIDER_SECONDS = 0.5


def sigterm(run: Run, *, group: bool = False) -> None:
    """A deploy: roll both workers while their batches are in flight through a slow
    provider. For each, wait until it runs a delivery task, start its replacement, send
    SIGTERM to the old worker's main process only (as Kubernetes, supervisord or
    systemd's KillMode=mixed do) and wait for its warm shutdown.

    Expected: the running batch finishes, unstarted ones go back to the broker (acks_late),
    so nothing is lost and nothing reaches the provider twice.
    """
    from django.conf import settings

    run.cluster.stub_mode(mode="slow", delay=SLOW_PROVIDER_SECONDS)
    # Faster than one worker can send (its processes' calls at once through the slow
    # provider), so neither worker can take all the batches while the other idles; and on
    # past N until both rolls are done, so each roll finds a batch in flight.
    one_worker = run.cluster.workers * settings.PROVIDER_CONCURRENCY / SLOW_PROVIDER_SECONDS
    rolling = threading.Event()
    rolling.set()
    sender = in_background(lambda: run.send(seconds=run.n / (1.5 * one_worker),
                                            more=rolling.is_set))
    try:
        run.details["rolls"] = [roll_worker(run, name, group=group)
                                for name in ("worker-a", "worker-b")]
    finally:
        rolling.clear()
    sender.join()
    run.cluster.stub_mode(mode="ok")
    run.last_fault = time.time()


def sigterm_group(run: Run) -> None:
    """The same deploy with SIGTERM sent to the worker's whole process group, as systemd's
    default KillMode=control-group or `kill -TERM -PGID` do: the pool processes get it too
    and die mid-batch (Celery resets SIGTERM to the default in them). Nothing may be lost;
    the interrupted batch is sent again after its lease, deduplicated by the provider."""
    sigterm(run, group=True)


# Seconds between two `inspect active` polls of a worker being rolled.
INSPECT_EVERY = 0.2


def _in_flight(active: list[dict]) -> list[str]:
    """Return the ids of the messages these running delivery tasks hold: the ids a task was
    published with, and for a lane task (published without ids, it claims its lane's next
    rows) the messages it has claimed, which its delivery attempts name."""
    from messaging.models import DeliveryAttempt

    ids = {str(mid) for task in active for mid in task["args"][0]}
    ids.update(str(mid) for mid in DeliveryAttempt.objects.filter(
        task_id__in=[task["id"] for task in active]).values_list("message_id", flat=True))
    return sorted(ids)


def roll_worker(run: Run, name: str, *, group: bool = False,
                timeout: float = 120.0) -> dict[str, Any]:
    """Replace one worker while it runs a batch (a delivery task holding messages); return
    what was in flight and how its warm shutdown went."""
    from config.celery import app
    from messaging.models import Message

    old, node = run.cluster.procs[name], run.cluster.nodes[name]
    deadline = time.monotonic() + timeout
    active: list[dict] = []
    polls = replies = 0
    waited = time.monotonic()
    in_flight: list[str] = []
    while not in_flight and time.monotonic() < deadline:
        answer = app.control.inspect(destination=[node], timeout=1.0).active() or {}
        polls, replies = polls + 1, replies + (node in answer)
        active = [task for task in answer.get(node, [])
                  if task.get("name") == "messaging.tasks.deliver_messages"]
        in_flight = _in_flight(active)
        if not in_flight:
            # A worker answers at once, and every worker's event loop takes every broadcast:
            # polled in a tight loop (hundreds a second) the worker spent its loop answering
            # and took no task for the whole wait.
            time.sleep(INSPECT_EVERY)
    waited = time.monotonic() - waited
    run.cluster.start_worker(name)  # the new release; the supervisor now watches it
    signalled = time.monotonic()
    if group:
        os.killpg(old.pid, signal.SIGTERM)
    else:
        old.send_signal(signal.SIGTERM)
    code = old.wait(timeout)
    shutdown = time.monotonic() - signalled
    return {"worker": name, "batches_in_flight": len(active),
            "messages_in_flight": len(in_flight),
            "in_flight_sent_when_it_exited": Message.objects.filter(
                pk__in=in_flight, status="sent").count(),
            "warm_shutdown_s": round(shutdown, 1), "exit_code": code,
            "inspect": {"polls": polls, "replies": replies, "waited_s": round(waited, 1)}}


def visibility(run: Run) -> None:
    """Messages scheduled 2 h ahead with a 60 s visibility timeout: sent exactly once.

    Time is accelerated by moving the durable timer (due_at) once the visibility timeout
    has passed twice, which is when a broker holding ETA tasks would redeliver them.
    """
    from datetime import timedelta

    from django.utils import timezone

    from messaging.models import Message

    client = Client(run.cluster.web_url, {"Authorization": f"Bearer {run.key}"})
    send_at = (timezone.now() + timedelta(hours=2)).isoformat()
    for offset in range(0, run.n, 50):
        items = [{"channel": SMS, "to": "+14155552671", "body": f"later {i}",
                  "send_at": send_at} for i in range(offset, min(run.n, offset + 50))]
        run.attempted += len(items)
        status, answer = client.post("/api/v1/messages/batch", {"messages": items})
        if status == 201:
            run.accepted.extend(m["id"] for m in answer["messages"])
    time.sleep(125)
    Message.objects.filter(pk__in=run.accepted).update(due_at=timezone.now())
    run.last_fault = time.time()


MANY_SCHEDULES = 4  # cron schedules firing every minute, each for its own contacts
MANY_SCHEDULE_CONTACTS = 10
MANY_OCCURRENCES = 2  # minute boundaries every schedule must have fired


def many(run: Run) -> None:
    """Two of every process against one PostgreSQL and one Redis: two gunicorn workers,
    two Celery workers, two dispatchers and two beats (django-celery-beat's scheduler, each
    with its own state file), plus the driver's own sweep loop. While N single-message
    sends stream in through the API, a bulk start runs a journey (send, 2 s delay, send)
    for N/10 contacts, and MANY_SCHEDULES cron schedules (`* * * * *`) start a sending flow
    for their contacts at every minute until each fired MANY_OCCURRENCES times.

    Every accepted send must reach the provider exactly once (the provider counts a key
    asked twice), every cron occurrence must run once per schedule and start each of its
    contacts once, every journey must complete with its two messages sent once. Details
    list what broke (`broken`, which fails the scenario)."""
    from collections import Counter

    from core.models import Contact, Workspace
    from flows import schedules, services
    from flows.models import Execution, Flow, FlowSchedule, ScheduleRun
    from messaging.models import Message

    c = run.cluster
    c.spawn("dispatcher-2", [sys.executable, "manage.py", "run_dispatcher"])
    for name in ("beat-1", "beat-2"):
        c.spawn(name, [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "warning",
                       "-s", str(ROOT / "var" / "bench" / f"{c.db_name}-{name}.db")])
    workspace = Workspace.objects.get(name=run.name)
    journeys = max(10, run.n // 10)
    people = Contact.objects.bulk_create(
        [Contact(workspace=workspace, external_id=f"m{i}", phone="+14155552671")
         for i in range(journeys + MANY_SCHEDULES * MANY_SCHEDULE_CONTACTS)])
    journey = Flow.objects.create(
        workspace=workspace, name="journey", trigger={"type": "manual"},
        nodes=[{"id": "s1", "type": "send_sms", "data": {"body": "first"}},
               {"id": "d", "type": "delay", "data": {"seconds": 2}},
               {"id": "s2", "type": "send_sms", "data": {"body": "second"}}],
        edges=[{"id": "a", "source": "s1", "target": "d"},
               {"id": "b", "source": "d", "target": "s2"}])
    cron_flow = Flow.objects.create(
        workspace=workspace, name="cron", trigger={"type": "schedule"},
        nodes=[{"id": "s", "type": "send_sms", "data": {"body": "cron"}}], edges=[])
    for flow in (journey, cron_flow):
        services.flow_set_status(flow=flow, status=Flow.Status.ACTIVE)
    cron_people = people[journeys:]
    for i in range(MANY_SCHEDULES):
        group = cron_people[i * MANY_SCHEDULE_CONTACTS:(i + 1) * MANY_SCHEDULE_CONTACTS]
        schedules.schedule_create(workspace=workspace, flow=cron_flow, cron="* * * * *",
                                  timezone="UTC",
                                  audience={"contact_ids": [str(p.pk) for p in group]})
    sender = in_background(lambda: run.send(seconds=max(10.0, run.n / 100)))
    services.bulk_start_create(flow=journey, contact_ids=[str(p.pk) for p in people[:journeys]],
                               rules=None, data={})
    sender.join()
    runs = ScheduleRun.objects.filter(schedule__flow=cron_flow)
    deadline = time.monotonic() + 60 * (MANY_OCCURRENCES + 2)
    while time.monotonic() < deadline and len({
            occurrence for occurrence, n in Counter(runs.values_list(
                "occurrence_at", flat=True)).items()
            if n >= MANY_SCHEDULES}) < MANY_OCCURRENCES:
        time.sleep(2)
    for schedule in FlowSchedule.objects.filter(flow=cron_flow):
        schedules.schedule_update(schedule=schedule, enabled=False)
    run.last_fault = time.time()
    flows_done = Execution.objects.filter(flow__in=[journey, cron_flow]).exclude(
        status="completed")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and (flows_done.exists() or Execution.objects.filter(
            flow=journey).count() < journeys):
        time.sleep(2)

    def account() -> None:
        broken: list[str] = []
        flow_messages = set(map(str, Message.objects.filter(workspace=workspace).exclude(
            pk__in=run.accepted).values_list("pk", flat=True)))
        received = run.received()
        per_run = Counter(runs.values_list("schedule_id", "occurrence_at"))
        fired = runs.exclude(status=ScheduleRun.Status.SKIPPED)
        runs_per_schedule = Counter(map(str, fired.values_list("schedule_id", flat=True)))
        audience = {str(p): str(schedule.pk) for schedule in FlowSchedule.objects.filter(
            flow=cron_flow) for p in schedule.audience["contact_ids"]}
        cron_starts = Counter(map(str, Execution.objects.filter(flow=cron_flow).values_list(
            "contact_id", flat=True)))
        executions = Execution.objects.filter(flow=journey)
        journey_starts = Counter(executions.values_list("contact_id", flat=True))
        occurrences = sorted({occurrence for _, occurrence in per_run})
        expected_cron = sum(runs_per_schedule[schedule] for schedule in audience.values())
        details = {
            "processes": sorted(c.procs), "journeys": journeys,
            "journeys_completed": executions.filter(status="completed").count(),
            "cron_occurrences": len(occurrences), "cron_runs": len(per_run),
            "cron_executions": sum(cron_starts.values()),
            "flow_messages": len(flow_messages),
            "flow_messages_lost": len(flow_messages - received),
        }
        if details["journeys_completed"] != journeys:
            broken.append(f"{journeys - details['journeys_completed']} journeys unfinished")
        if any(n > 1 for n in journey_starts.values()):
            broken.append("a journey started twice for one contact")
        if any(n > 1 for n in per_run.values()):
            broken.append("a cron occurrence ran twice")
        if any(cron_starts[contact] != runs_per_schedule[schedule]
               for contact, schedule in audience.items()):
            broken.append("a cron contact was not started exactly once per occurrence")
        if len(occurrences) < MANY_OCCURRENCES:
            broken.append(f"only {len(occurrences)} cron occurrences fired")
        if len(flow_messages) != 2 * journeys + expected_cron:
            broken.append(f"{len(flow_messages)} flow messages, "
                          f"{2 * journeys + expected_cron} expected")
        if details["flow_messages_lost"]:
            broken.append(f"{details['flow_messages_lost']} flow messages never sent")
        details["broken"] = broken
        run.details.update(details)

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        wanted = set(map(str, Message.objects.filter(workspace=workspace).values_list(
            "pk", flat=True)))
        if wanted <= run.received():
            break
        time.sleep(2)
    run.after_drain = account


SCENARIOS: dict[str, tuple[Callable[[Run], None], dict]] = {
    "kill": (kill, {}),
    "redis": (redis, {}),
    "postgres": (postgres, {"private_postgres": True}),
    "publish": (publish, {"web_config": "bench/drop_publish.py"}),
    "provider": (provider, {}),
    "visibility": (visibility, {"env": {"CELERY_VISIBILITY_TIMEOUT": "60"}}),
    "sigterm": (sigterm, {}),
    "sigterm-group": (sigterm_group, {}),
    # A short cool-down so the breaker is seen to probe and close within the run.
    "provider-outage": (provider_outage, {"env": {"PROVIDER_BREAKER_COOLDOWN_SECONDS": "5"}}),
    # No fault but the duplication itself, so the production lease: a slow batch on a busy
    # machine must not be taken back (a repeat would be the lease's doing, not the copies').
    "many": (many, {"env": {"DELIVERY_LEASE_SECONDS": "90", "REQUEUE_AFTER_SECONDS": "120"}}),
}
BROKERS = ("redis", "amqp")
# Scenarios whose promise is exactly once at the provider, not only nothing lost.
EXACTLY_ONCE = {"sigterm", "provider-outage", "many"}


def run_scenario(name: str, n: int, broker: str = "redis") -> dict[str, Any]:
    """Run one scenario end to end and return its report (a `skipped` one, saying why,
    when a part it needs cannot be had on this machine)."""
    fn, options = SCENARIOS[name]
    try:
        run = Run(name, n, broker=broker, **options)
    except Unavailable as exc:
        return skipped(name, broker, str(exc))
    try:
        run.start()
        started = time.time()
        fn(run)
        if not run.last_fault:
            run.last_fault = started
        report = run.drain()
        run.after_drain()
        return {**report, "details": run.details}
    except Unavailable as exc:
        return skipped(name, broker, str(exc))
    finally:
        run.close()


def skipped(name: str, broker: str, reason: str) -> dict[str, Any]:
    return {"scenario": name, "broker": broker, "skipped": reason, "attempted": 0,
            "accepted": 0, "accepted_not_persisted": 0, "sent": 0, "received": 0,
            "lost": None, "duplicate_requests": None, "recovery_seconds": None,
            "client_errors": {}, "details": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default=",".join(SCENARIOS))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--broker", choices=BROKERS, default="redis",
                        help="redis (a private redis-server) or amqp (a private vhost on "
                             "the RabbitMQ at CHAOS_AMQP_URL); results and locks stay on "
                             "Redis either way")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "chaos.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one scenario in this process
    args = parser.parse_args()
    if args.one:
        # A SIGTERM (make interrupted, a CI timeout) still runs the `finally` that removes
        # the private PostgreSQL cluster and the RabbitMQ vhost.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        Path(args.out).write_text(json.dumps(run_scenario(args.one, args.n, args.broker)))
        return
    reports = []
    for name in [s.strip() for s in args.scenario.split(",") if s.strip()]:
        if name not in SCENARIOS:
            sys.exit(f"unknown scenario {name}; choose from {', '.join(SCENARIOS)}")
        print(f"chaos: {name} with {args.n} messages, {args.broker} broker", flush=True)
        reports.append(run_isolated(name, args.n, args.broker))
        print(f"  {reports[-1]}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(reports, indent=2))
    print(table(reports))
    if any(failed(r) for r in reports):
        sys.exit(1)


def run_isolated(name: str, n: int, broker: str = "redis") -> dict[str, Any]:
    """Run a scenario in a fresh process (each has its own database and Django setup)."""
    out = ROOT / "var" / "bench" / f"chaos-{name}-{broker}.json"
    out.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "bench.chaos", "--one", name, "--n", str(n),
                    "--broker", broker, "--out", str(out)], cwd=ROOT, check=False)
    if not out.exists():
        return {**skipped(name, broker, ""), "skipped": None, "attempted": n,
                "client_errors": {"scenario crashed": 1}}
    return json.loads(out.read_text())


def failed(report: dict[str, Any]) -> bool:
    """A scenario fails when it lost a message, answered 201 without a row, accepted
    nothing at all (then it proved nothing), answered a 5xx other than 503 or a 503 without
    Retry-After (the postgres scenario), or, where its promise is exactly once, reached the
    provider twice with one message. A skipped one (a part it needs is not on
    this machine) is reported, not failed."""
    if report.get("skipped"):
        return False
    return bool(report["lost"] is None or report["lost"] or report["accepted_not_persisted"]
                or not report["accepted"]
                or (report["scenario"] in EXACTLY_ONCE and report["duplicate_requests"])
                or report["details"].get("broken")
                or report["details"].get("500s") or report["details"].get(
                    "503_without_retry_after"))


def table(reports: list[dict[str, Any]]) -> str:
    lines = ["", "| scenario | broker | attempted | accepted | sent | lost | duplicate "
                 "requests (absorbed by provider dedupe) | recovery s | client errors | "
                 "supervisor restarts |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        if r.get("skipped"):
            lines.append(f"| {r['scenario']} | {r['broker']} | skipped: {r['skipped']} |")
            continue
        lines.append(f"| {r['scenario']} | {r.get('broker', 'redis')} | {r['attempted']} | "
                     f"{r['accepted']} | {r['sent']} | {r['lost']} | "
                     f"{r['duplicate_requests']} | {r['recovery_seconds']} | "
                     f"{r['client_errors'] or ''} | {r.get('supervisor_restarts') or ''} |")
    details = [f"- {r['scenario']} ({r.get('broker', 'redis')}): {r['details']}"
               for r in reports if r.get("details")]
    return "\n".join(lines + ([""] + details if details else []))


if __name__ == "__main__":
    main()
