"""Circuit breakers on the real Redis: the states, and what counts as a failure."""
from __future__ import annotations

import time
import uuid

import pytest

from messaging.providers import breaker
from messaging.providers.base import ProviderError, Receipt


@pytest.fixture
def breaker_id(settings) -> str:
    settings.PROVIDER_BREAKER_FAILURES = 3
    settings.PROVIDER_BREAKER_COOLDOWN_SECONDS = 0.3
    settings.PROVIDER_BREAKER_MIN_CALLS = 10
    settings.PROVIDER_BREAKER_ERROR_RATE = 0.5
    settings.PROVIDER_BREAKER_WINDOW_SECONDS = 30
    return f"sms:test-{uuid.uuid4().hex}"


def record(breaker_id: str, kind: str, times: int, workspace_id: str, latency: float) -> str:
    """Record `times` results of one kind and return the state after the last."""
    state = ""
    for _ in range(times):
        state = breaker.record(breaker_id, workspace_id=workspace_id, kind=kind,
                               latency=latency)
    return state


def fail(breaker_id: str, times: int = 1, workspace_id: str = "w1") -> str:
    return record(breaker_id, breaker.FAILURE, times, workspace_id, latency=0.01)


def succeed(breaker_id: str, times: int = 1, workspace_id: str = "w1") -> str:
    return record(breaker_id, breaker.SUCCESS, times, workspace_id, latency=0.02)


def test_it_opens_after_consecutive_failures_and_refuses_calls(breaker_id):
    assert fail(breaker_id, 2) == breaker.CLOSED
    assert breaker.acquire(breaker_id)[0]
    assert fail(breaker_id) == breaker.OPEN
    allowed, wait = breaker.acquire(breaker_id)
    assert not allowed and 0 < wait <= 0.3
    assert breaker.read(breaker_id).times_opened == 1


def test_a_success_between_failures_keeps_it_closed(breaker_id):
    fail(breaker_id, 2)
    succeed(breaker_id)
    assert fail(breaker_id, 2) == breaker.CLOSED


def test_after_the_cool_down_one_probe_goes_and_its_success_closes_it(breaker_id):
    fail(breaker_id, 3)
    time.sleep(0.35)
    assert breaker.acquire(breaker_id)[0]  # the probe
    assert not breaker.acquire(breaker_id)[0]  # nobody else while it is out
    assert breaker.read(breaker_id).state == breaker.HALF_OPEN
    assert succeed(breaker_id) == breaker.CLOSED
    assert breaker.acquire(breaker_id)[0]
    assert breaker.read(breaker_id).times_closed == 1


def test_a_failed_probe_opens_it_again_for_another_cool_down(breaker_id):
    fail(breaker_id, 3)
    time.sleep(0.35)
    assert breaker.acquire(breaker_id)[0]
    assert fail(breaker_id) == breaker.OPEN
    assert not breaker.acquire(breaker_id)[0]


def test_an_error_rate_over_the_window_opens_it(breaker_id):
    for _ in range(5):  # 50 %, never 3 failures in a row
        succeed(breaker_id)
        assert fail(breaker_id) == breaker.CLOSED or _ == 4
    assert breaker.read(breaker_id).state == breaker.OPEN


def test_what_counts_as_a_failure():
    assert breaker.classify(Receipt()) == breaker.SUCCESS
    assert breaker.classify(ProviderError("bad number", permanent=True, status_code=400)) == (
        breaker.SUCCESS)
    assert breaker.classify(ProviderError("down", permanent=False, status_code=503)) == (
        breaker.FAILURE)
    assert breaker.classify(ProviderError("slow", permanent=False, status_code=429)) == (
        breaker.NEUTRAL)


def test_counts_are_kept_per_workspace_beside_the_shared_state(breaker_id):
    succeed(breaker_id, 2, workspace_id="a")
    fail(breaker_id, 1, workspace_id="b")
    assert breaker.workspace_stats(breaker_id, "a")["sent"] == 2
    assert breaker.workspace_stats(breaker_id, "a")["failed"] == 0
    assert breaker.workspace_stats(breaker_id, "b")["failed"] == 1
    assert breaker.workspace_stats(breaker_id, "a")["latency_p95_ms"] == 20.0
    state = breaker.read(breaker_id)
    assert (state.sent, state.failed) == (2, 1)


def test_no_breakers_when_disabled(breaker_id, settings):
    settings.PROVIDER_BREAKER_FAILURES = 0
    fail(breaker_id, 10)
    assert breaker.acquire(breaker_id)[0]


def test_many_results_are_counted_in_one_round_trip_as_one_by_one(breaker_id):
    breaker.record_many([(breaker_id, "w1", breaker.FAILURE, 0.01)] * 2
                        + [(breaker_id, "w2", breaker.SUCCESS, 0.03)])
    assert breaker.read(breaker_id).consecutive == 0
    breaker.record_many([(breaker_id, "w1", breaker.FAILURE, 0.01)] * 3)
    state = breaker.read(breaker_id)
    assert (state.state, state.sent, state.failed) == (breaker.OPEN, 1, 5)
    assert breaker.workspace_stats(breaker_id, "w2")["sent"] == 1
