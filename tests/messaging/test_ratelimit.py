"""Rate limiting against the real Redis of settings.REDIS_URL (embedded one when unset).

Every test uses its own random keys and workspace ids so parallel runs never collide.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from django.test import override_settings
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from messaging import ratelimit
from messaging.api.throttling import ApiKeyRateThrottle
from messaging.ratelimit import (
    Rate,
    allow,
    channel_key,
    deferral_counts,
    deferral_events,
    record_deferral,
    reserve,
    reset,
)

# A fixed clock (epoch seconds) makes slot arithmetic exact where the test is about spacing.
NOW = 1_700_000_000.0


def _key() -> str:
    return f"rl:test:{uuid.uuid4().hex}"


@pytest.fixture
def workspace_id() -> Iterator[str]:
    workspace_id = str(uuid.uuid4())
    yield workspace_id
    reset(workspace_id)


# --- Rate.parse ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5/s", Rate(5, 1.0, 1)),
        ("20/min", Rate(20, 60.0, 1)),
        ("100/m", Rate(100, 60.0, 1)),
        ("1000/h", Rate(1000, 3600.0, 1)),
        ("10/2s", Rate(10, 2.0, 1)),
        ("5/s burst 5", Rate(5, 1.0, 5)),
        ("  3 / 1.5 s  BURST=2 ", Rate(3, 1.5, 2)),
        ("7/day", Rate(7, 86400.0, 1)),
        ("1/500ms", Rate(1, 0.5, 1)),
    ],
)
def test_parse_accepts(text: str, expected: Rate) -> None:
    assert Rate.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "5", "5/", "/s", "abc", "5/x", "5/fortnight", "0/s", "-1/s", "5/0s", "1.5/s",
     "5/s burst", "5/s burst 0", "5/s burst -1", "5/s bust 3", "5/s burst 5 extra"],
)
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="malformed rate"):
        Rate.parse(text)


def test_rate_refuses_nonsense_when_built_directly() -> None:
    with pytest.raises(ValueError):
        Rate(count=0, period=1.0)
    with pytest.raises(ValueError):
        Rate(count=1, period=0.0)
    with pytest.raises(ValueError):
        Rate(count=1, period=1.0, burst=0)


# --- reserve() ----------------------------------------------------------------------------


def test_reserve_spaces_50_bookings_at_5_per_second() -> None:
    key = _key()
    delays = [reserve(key, Rate.parse("5/s")) for _ in range(50)]
    assert delays[0] == pytest.approx(0.0, abs=0.05)
    assert all(later > earlier for earlier, later in zip(delays, delays[1:], strict=False))
    # Each booking lands 0.2 s after the previous one, minus the real time between the calls.
    gaps = [later - earlier for earlier, later in zip(delays, delays[1:], strict=False)]
    assert all(0.15 < gap <= 0.2 + 1e-9 for gap in gaps), gaps
    assert 9.0 <= delays[-1] <= 10.0


def test_reserve_with_a_fixed_clock_is_exact() -> None:
    key = _key()
    delays = [reserve(key, Rate.parse("5/s"), now=NOW) for _ in range(50)]
    assert delays == pytest.approx([i * 0.2 for i in range(50)])


def test_reserve_lets_a_burst_go_at_once() -> None:
    key = _key()
    delays = [reserve(key, Rate.parse("5/s burst 5"), now=NOW) for _ in range(8)]
    assert delays[:5] == [0.0] * 5
    assert delays[5:] == pytest.approx([0.2, 0.4, 0.6])


def test_reserve_frees_slots_as_time_passes() -> None:
    key = _key()
    rate = Rate.parse("5/s")
    assert reserve(key, rate, now=NOW) == 0.0
    assert reserve(key, rate, now=NOW) == pytest.approx(0.2)
    # A second later the queue has drained: the next event goes at once.
    assert reserve(key, rate, now=NOW + 1.0) == 0.0


def test_reserve_keys_are_independent(workspace_id: str) -> None:
    other_workspace = str(uuid.uuid4())
    rate = Rate.parse("1/s")
    busy = channel_key(workspace_id, "sms")
    for _ in range(10):
        reserve(busy, rate, now=NOW)
    assert reserve(busy, rate, now=NOW) == pytest.approx(10.0)
    # Neither another workspace nor another channel of the same workspace is slowed.
    assert reserve(channel_key(other_workspace, "sms"), rate, now=NOW) == 0.0
    assert reserve(channel_key(workspace_id, "email"), rate, now=NOW) == 0.0
    reset(other_workspace)


def test_reserve_key_expires_when_no_longer_needed() -> None:
    key = _key()
    reserve(key, Rate.parse("5/s"))
    reserve(key, Rate.parse("5/s"))
    ttl_ms = ratelimit.client().pttl(key)
    # The TAT is 0.4 s ahead, so the key lives about that long and no longer.
    assert 0 < ttl_ms <= 400


def test_reserve_is_atomic_under_concurrency() -> None:
    key = _key()
    rate = Rate.parse("100/s")
    threads_count, per_thread = 8, 25
    barrier = threading.Barrier(threads_count)
    results: list[float] = []
    results_lock = threading.Lock()
    errors: list[BaseException] = []

    def book() -> None:
        try:
            barrier.wait()
            mine = [reserve(key, rate, now=NOW) for _ in range(per_thread)]
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)
            return
        with results_lock:
            results.extend(mine)

    threads = [threading.Thread(target=book) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    slots = sorted(NOW + delay for delay in results)
    assert len(slots) == 200
    assert len(set(slots)) == 200
    assert min(b - a for a, b in zip(slots, slots[1:], strict=False)) >= 0.0099
    assert slots[-1] - slots[0] == pytest.approx(1.99)


def test_channel_key_refuses_reserved_namespaces() -> None:
    assert channel_key("ws-1", "sms") == "rl:ws-1:sms"
    for reserved in ("api", "deferrals", "events", ""):
        with pytest.raises(ValueError):
            channel_key(reserved, "sms")


@pytest.mark.parametrize("bad", ["", "a b", "x*", "[x]", "a\\b", "k" * 101, 7, None])
def test_client_channel_key_refuses_keys_outside_the_safe_charset(bad) -> None:
    assert not ratelimit.client_key_valid(bad)
    with pytest.raises(ValueError):
        ratelimit.client_channel_key("ws-1", "ai", bad)


def test_client_keys_count_apart_inside_their_workspace(workspace_id: str) -> None:
    other_workspace = str(uuid.uuid4())
    other = ratelimit.client_channel_key(other_workspace, "ai", "user:1@x.y")
    mine = ratelimit.client_channel_key(workspace_id, "ai", "user:1@x.y")
    assert mine == f"rl:{workspace_id}:ai:key:user:1@x.y"
    rate = Rate.parse("1/h")
    assert reserve(mine, rate) == 0.0
    assert reserve(other, rate) == 0.0
    assert reserve(channel_key(workspace_id, "ai"), rate) == 0.0
    assert reserve(mine, rate) > 3000
    reset(workspace_id)
    assert reserve(mine, rate) == 0.0
    assert reserve(other, rate) > 3000  # another workspace's reset leaves it alone
    reset(other_workspace)


# --- allow() ------------------------------------------------------------------------------


def test_allow_refuses_after_the_burst_then_allows_after_the_wait() -> None:
    key = _key()
    rate = Rate.parse("20/s burst 3")
    assert [allow(key, rate) for _ in range(3)] == [(True, 0.0)] * 3
    allowed, wait = allow(key, rate)
    assert not allowed
    assert 0 < wait <= 0.05
    # A refusal consumes nothing: asking again right away is still refused, not pushed out.
    allowed_again, wait_again = allow(key, rate)
    assert not allowed_again
    assert 0 < wait_again <= wait
    time.sleep(wait_again)
    assert allow(key, rate) == (True, 0.0)


def test_allow_with_a_fixed_clock_is_exact() -> None:
    key = _key()
    rate = Rate.parse("20/s")
    assert allow(key, rate, now=NOW) == (True, 0.0)
    assert allow(key, rate, now=NOW) == (False, pytest.approx(0.05))
    assert allow(key, rate, now=NOW + 0.02) == (False, pytest.approx(0.03))
    assert allow(key, rate, now=NOW + 0.05) == (True, 0.0)


# --- deferrals ----------------------------------------------------------------------------


def test_deferrals_round_trip_and_reset(workspace_id: str) -> None:
    other_workspace = str(uuid.uuid4())
    before = time.time()
    record_deferral(workspace_id=workspace_id, channel="sms", delay=0.4)
    record_deferral(workspace_id=workspace_id, channel="sms", delay=0.6)
    record_deferral(workspace_id=workspace_id, channel="email", delay=1.5)
    record_deferral(workspace_id=other_workspace, channel="sms", delay=9.0)
    reserve(channel_key(workspace_id, "sms"), Rate.parse("1/h"))
    reserve(channel_key(workspace_id, "sms"), Rate.parse("1/h"))

    assert deferral_counts(workspace_id) == {"sms": 2, "email": 1}
    events = deferral_events(workspace_id)
    assert [(event["channel"], event["delay"]) for event in events] == [
        ("email", 1.5), ("sms", 0.6), ("sms", 0.4)
    ]
    assert all(before - 1 <= event["ts"] <= time.time() + 1 for event in events)
    assert len(deferral_events(workspace_id, limit=2)) == 2

    reset(workspace_id)
    assert deferral_counts(workspace_id) == {}
    assert deferral_events(workspace_id) == []
    assert reserve(channel_key(workspace_id, "sms"), Rate.parse("1/h")) == 0.0
    # The other workspace keeps its history.
    assert deferral_counts(other_workspace) == {"sms": 1}
    reset(other_workspace)


def test_deferral_events_are_capped(workspace_id: str) -> None:
    pipe = ratelimit.client().pipeline()
    for _ in range(ratelimit.EVENTS_KEEP + 10):
        pipe.lpush(f"rl:events:{workspace_id}", '{"ts": 0, "channel": "old", "delay": 0}')
    pipe.execute()
    record_deferral(workspace_id=workspace_id, channel="sms", delay=1.0)
    assert ratelimit.client().llen(f"rl:events:{workspace_id}") == ratelimit.EVENTS_KEEP
    assert deferral_events(workspace_id, limit=1)[0]["channel"] == "sms"


# --- client() -----------------------------------------------------------------------------


def test_client_is_shared_and_follows_redis_url() -> None:
    first = ratelimit.client()
    assert ratelimit.client() is first
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        assert ratelimit.client() is not first
    assert ratelimit.client().ping()


# --- ApiKeyRateThrottle -------------------------------------------------------------------


class _ThrottledView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [ApiKeyRateThrottle]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


def _call(prefix: str | None) -> Response:
    request = APIRequestFactory().get("/throttled")
    if prefix is not None:
        force_authenticate(request, user=None,
                           token=SimpleNamespace(prefix=prefix, workspace_id="ws"))
    return _ThrottledView.as_view()(request)


@override_settings(API_RATE_LIMIT="2/s")
def test_throttle_answers_429_with_retry_after() -> None:
    prefix = uuid.uuid4().hex[:8]
    assert _call(prefix).status_code == 200
    assert _call(prefix).status_code == 200
    response = _call(prefix)
    assert response.status_code == 429
    assert response["Retry-After"] == "1"
    # Another key is not affected.
    assert _call(uuid.uuid4().hex[:8]).status_code == 200


@override_settings(API_RATE_LIMIT="1/s")
def test_throttle_ignores_unauthenticated_requests() -> None:
    assert [_call(None).status_code for _ in range(3)] == [200] * 3


@override_settings(API_RATE_LIMIT="")
def test_throttle_is_disabled_by_an_empty_rate() -> None:
    prefix = uuid.uuid4().hex[:8]
    assert [_call(prefix).status_code for _ in range(5)] == [200] * 5


@override_settings(API_RATE_LIMIT="1/s", REDIS_URL="redis://127.0.0.1:1/0")
def test_throttle_lets_requests_through_when_redis_is_down() -> None:
    prefix = uuid.uuid4().hex[:8]
    assert [_call(prefix).status_code for _ in range(2)] == [200] * 2
