"""The short chaos run CI does: kill workers, flush/restart Redis, lose every publish, roll
the workers with SIGTERM mid-batch, restart PostgreSQL, run two of every process, and the
recovery runs again with RabbitMQ as the broker.

Each scenario runs the real processes (gunicorn, two prefork workers, the dispatcher, a
private Redis, the recording provider) against its own PostgreSQL database.
"""
from __future__ import annotations

import os

import pytest

from bench.chaos import run_isolated

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                       reason="the chaos harness creates PostgreSQL databases"),
]


def run(scenario: str, n: int, broker: str = "redis") -> dict:
    """Run a scenario; skip the test, with the harness's reason, when a part it needs
    (RabbitMQ, initdb) is not on this machine."""
    report = run_isolated(scenario, n, broker)
    if report.get("skipped"):
        pytest.skip(report["skipped"])
    return report


def assert_none_lost(report: dict, n: int, *, at_least: bool = False) -> None:
    """Every attempted message was accepted, persisted and sent: exactly `n` of them, or
    `n` or more for a scenario that sends on until its faults are done."""
    assert report["accepted"] == report["attempted"], report
    assert report["attempted"] >= n if at_least else report["attempted"] == n, report
    assert report["accepted_not_persisted"] == 0, report
    assert report["lost"] == 0, report
    assert report["sent"] == report["accepted"], report


@pytest.mark.parametrize("scenario", ["kill", "redis", "publish"])
def test_no_accepted_message_is_lost(scenario):
    report = run(scenario, 300)
    assert_none_lost(report, 300)
    if scenario == "kill":
        # Outcomes are recorded as calls finish: a kill repeats at most the calls in flight.
        details = report["details"]
        assert details["kills"] > 0, report
        assert details["max_repeats_one_kill"] <= details["calls_in_flight_bound"], report


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_sigterm_mid_batch_finishes_the_batch_and_repeats_nothing(broker):
    report = run("sigterm", 300, broker)
    assert_none_lost(report, 300, at_least=True)
    assert report["duplicate_requests"] == 0, report
    for roll in report["details"]["rolls"]:
        assert roll["messages_in_flight"] > 0, roll  # the signal did land mid-batch
        assert roll["in_flight_sent_when_it_exited"] == roll["messages_in_flight"], roll
        assert roll["exit_code"] == 0, roll


def test_amqp_broker_loses_nothing_when_workers_are_killed():
    report = run("kill", 300, "amqp")
    assert_none_lost(report, 300)
    assert report["details"]["vhost"], report


def test_postgres_restart_never_answers_201_without_a_row():
    report = run("postgres", 300)
    details = report["details"]
    assert report["attempted"] == 300, report
    assert report["accepted_not_persisted"] == 0, report
    assert report["lost"] == 0, report
    assert report["sent"] == report["accepted"], report
    assert details["first_201_after_restart_s"] is not None, report  # it came back
    # The outage answered 503 with Retry-After (or refused the connection), never a 500.
    assert details["500s"] == 0 and details["503_without_retry_after"] == 0, report
    assert details["requests_in_outage"] > 0, report


def test_the_postgres_report_fails_a_500_or_a_503_without_retry_after(db):
    """The postgres scenario's verdict, from a request log as its posters write it."""
    from types import SimpleNamespace

    from bench.chaos import failed, outage_report

    run = SimpleNamespace(name="no-such-workspace", accepted=[])
    base = {"scenario": "postgres", "lost": 0, "accepted_not_persisted": 0, "accepted": 1}
    stop, up = 100.0, 103.0
    clean = [(99.0, 99.1, 201, "a"), (100.5, 100.6, 503, None), (101.0, 101.0, "OSError", None),
             (103.5, 103.6, 201, "b")]
    details = outage_report(run, clean, stop, up)
    assert (details["503_in_outage"], details["500s"], details["requests_in_outage"]) == (1, 0, 3)
    assert details["first_201_after_restart_s"] == 0.6
    assert not failed({**base, "details": details})
    with_500 = outage_report(run, [*clean, (100.7, 100.8, 500, None)], stop, up)
    assert with_500["500s"] == 1 and failed({**base, "details": with_500})
    bare = outage_report(run, [*clean, (100.7, 100.8, "503 without Retry-After", None)],
                         stop, up)
    assert bare["503_without_retry_after"] == 1 and failed({**base, "details": bare})


def test_a_provider_outage_fails_over_and_sends_every_message_once():
    """The primary SMS provider answers 503, then refuses connections, for 30 s."""
    report = run("provider-outage", 300)
    assert_none_lost(report, 300)
    details = report["details"]
    assert details["broken"] == [], details
    assert details["sent_by_both"] == 0 and details["dead_letters"] == 0, details
    assert details["sent_by_secondary"] > 0 and details["breaker_closed"] >= 1, details
    assert details["alert_fired"], details


def test_two_of_every_process_lose_nothing_and_send_nothing_twice():
    """Two web workers, workers, dispatchers and beats at once: sends, a journey and cron
    schedules each happen exactly once."""
    report = run("many", 300)
    assert_none_lost(report, 300)
    assert report["duplicate_requests"] == 0, report
    details = report["details"]
    assert details["broken"] == [], details
    assert {"beat-1", "beat-2", "dispatcher", "dispatcher-2", "worker-a",
            "worker-b"} <= set(details["processes"]), details
    assert details["cron_occurrences"] >= 2 and details["journeys_completed"] == 30, details
