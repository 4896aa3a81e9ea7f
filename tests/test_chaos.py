"""The short chaos run CI does: kill workers, flush/restart Redis, lose every publish, roll
the workers with SIGTERM mid-batch, restart PostgreSQL, and the recovery runs again with
RabbitMQ as the broker.

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


def test_a_provider_outage_fails_over_and_sends_every_message_once():
    """The primary SMS provider answers 503, then refuses connections, for 30 s."""
    report = run("provider-outage", 300)
    assert_none_lost(report, 300)
    details = report["details"]
    assert details["broken"] == [], details
    assert details["sent_by_both"] == 0 and details["dead_letters"] == 0, details
    assert details["sent_by_secondary"] > 0 and details["breaker_closed"] >= 1, details
    assert details["alert_fired"], details
