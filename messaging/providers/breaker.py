"""Circuit breakers per provider, in Redis so that every worker shares one state.

A breaker is closed (calls go through), open (calls go to the next provider, or the message
waits) or half-open (one probe call goes through after the cool-down; its success closes the
breaker, its failure opens it again). It opens after PROVIDER_BREAKER_FAILURES consecutive
failures, or when at least PROVIDER_BREAKER_MIN_CALLS calls of the current window failed at
PROVIDER_BREAKER_ERROR_RATE or more. Every decision is one Lua script (one round trip, no
race between workers); times are the Redis server's clock, as in messaging.ratelimit.

What counts: a transient failure other than a 429 is a failure; an acceptance or a permanent
error (the provider answered, about the message) is a success; a 429 says nothing about
health. Each workspace's own sent/failed counts and latencies are kept beside the shared
state, so the health endpoint shows a workspace only its own traffic.

If Redis cannot be reached, a breaker lets every call through: it protects the providers,
it must not stop delivery.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from messaging import ratelimit

logger = logging.getLogger(__name__)

KEY_PREFIX = "cb:"
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)
SUCCESS, FAILURE, NEUTRAL = "success", "failure", "neutral"
LATENCIES_KEPT = 500  # per workspace and provider: enough for a p95 of recent calls
STATS_TTL_SECONDS = 7 * 24 * 3600
PROBE_RECHECK_US = 1_000_000  # while a probe is out, others ask again this soon (at most)

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# KEYS[1] = breaker hash; ARGV = cooldown_us, probe_us, recheck_us (how soon to ask again
# while another caller's probe is out: it usually answers long before its deadline).
# Returns {allowed, wait_us}.
_BEFORE_LUA = _NOW + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return {1, 0} end
local cooldown = tonumber(ARGV[1])
if state == 'open' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  if now < opened + cooldown then return {0, string.format('%.0f', opened + cooldown - now)} end
else
  local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
  if now < probe_until then
    return {0, string.format('%.0f', math.min(probe_until - now, tonumber(ARGV[3])))}
  end
end
redis.call('HSET', KEYS[1], 'state', 'half_open',
           'probe_until', string.format('%.0f', now + tonumber(ARGV[2])))
return {1, 0}
"""

# KEYS = breaker hash, workspace stats hash, workspace latency list; ARGV = kind,
# latency_ms, failures, error_rate, min_calls, window_us, stats_ttl_s, latencies_kept.
# Returns the state after the call.
_AFTER_LUA = _NOW + """
local kind = ARGV[1]
local b = KEYS[1]
if kind ~= 'neutral' then
  local field = kind == 'success' and 'sent' or 'failed'
  redis.call('HINCRBY', b, field, 1)
  redis.call('HINCRBY', KEYS[2], field, 1)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[7]))
end
redis.call('LPUSH', KEYS[3], ARGV[2])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[8]) - 1)
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[7]))
local state = redis.call('HGET', b, 'state') or 'closed'
if kind == 'neutral' then return state end
local window_start = tonumber(redis.call('HGET', b, 'window_start') or '0')
if now - window_start > tonumber(ARGV[6]) then
  redis.call('HSET', b, 'window_start', string.format('%.0f', now), 'window_calls', 0,
             'window_failed', 0)
end
local calls = redis.call('HINCRBY', b, 'window_calls', 1)
if kind == 'success' then
  redis.call('HSET', b, 'consecutive', 0)
  if state ~= 'closed' then
    redis.call('HSET', b, 'state', 'closed', 'closed_at', string.format('%.0f', now),
               'window_start', string.format('%.0f', now), 'window_calls', 0, 'window_failed', 0)
    redis.call('HINCRBY', b, 'times_closed', 1)
  end
  return 'closed'
end
local failed = redis.call('HINCRBY', b, 'window_failed', 1)
local consecutive = redis.call('HINCRBY', b, 'consecutive', 1)
local threshold = tonumber(ARGV[3])
local too_many = threshold > 0 and consecutive >= threshold
local too_often = threshold > 0 and calls >= tonumber(ARGV[5])
                  and failed >= tonumber(ARGV[4]) * calls
if state == 'half_open' or (state == 'closed' and (too_many or too_often)) then
  redis.call('HSET', b, 'state', 'open', 'opened_at', string.format('%.0f', now))
  if state == 'closed' then redis.call('HINCRBY', b, 'times_opened', 1) end
  return 'open'
end
return state
"""


@dataclass(frozen=True)
class State:
    """A breaker as read: its state, environment-wide counts and history."""

    state: str
    sent: int
    failed: int
    consecutive: int
    times_opened: int
    times_closed: int
    opened_at: float | None  # seconds since the epoch (Redis clock)


def enabled() -> bool:
    return settings.PROVIDER_BREAKER_FAILURES > 0


def _key(breaker_id: str) -> str:
    return f"{KEY_PREFIX}{breaker_id}"


def _stats_key(breaker_id: str, workspace_id: str) -> str:
    return f"{KEY_PREFIX}ws:{workspace_id}:{breaker_id}"


def _latency_key(breaker_id: str, workspace_id: str) -> str:
    return f"{KEY_PREFIX}lat:{workspace_id}:{breaker_id}"


_scripts: dict[tuple[int, str], Any] = {}


def _script(source: str) -> Any:
    """Return the script registered on this process's client (made again with the client)."""
    client = ratelimit.client()
    key = (id(client), source)
    if key not in _scripts:
        _scripts[key] = client.register_script(source)
    return _scripts[key]


def probe_seconds() -> float:
    """Return how long one probe may take before another caller may probe instead."""
    return settings.PROVIDER_CONNECT_TIMEOUT_SECONDS + settings.PROVIDER_TIMEOUT_SECONDS + 1


def acquire(breaker_id: str) -> tuple[bool, float]:
    """Ask to call the provider: (allowed, seconds until it may be asked again). An open
    breaker past its cool-down lets this caller through as its one probe."""
    if not enabled():
        return True, 0.0
    cooldown_us = int(settings.PROVIDER_BREAKER_COOLDOWN_SECONDS * 1_000_000)
    try:
        allowed, wait_us = _script(_BEFORE_LUA)(
            keys=[_key(breaker_id)], args=[cooldown_us, int(probe_seconds() * 1_000_000),
                                           min(cooldown_us, PROBE_RECHECK_US)])
    except redis.RedisError:
        logger.warning("breaker %s: Redis unavailable; letting the call through", breaker_id)
        return True, 0.0
    return bool(int(allowed)), int(wait_us) / 1_000_000


def classify(result: Any) -> str:
    """Return what a call's result says about its provider's health."""
    from messaging.providers.base import ProviderError

    if not isinstance(result, ProviderError) or result.permanent:
        return SUCCESS
    return NEUTRAL if result.status_code == 429 else FAILURE


def record(breaker_id: str, *, workspace_id: str, kind: str, latency: float) -> str:
    """Count one call's result (SUCCESS, FAILURE or NEUTRAL) and its latency in seconds;
    return the breaker's state after it."""
    if not enabled():
        return CLOSED
    try:
        return str(_script(_AFTER_LUA)(
            keys=[_key(breaker_id), _stats_key(breaker_id, workspace_id),
                  _latency_key(breaker_id, workspace_id)],
            args=_after_args(kind, latency)))
    except redis.RedisError:
        logger.warning("breaker %s: Redis unavailable; call not counted", breaker_id)
        return CLOSED


def record_many(results: list[tuple[str, str, str, float]]) -> None:
    """Count many calls' results, each (breaker id, workspace id, kind, latency in
    seconds), in one round trip (a pipeline of the same script as `record`)."""
    if not enabled() or not results:
        return
    script = _script(_AFTER_LUA)
    try:
        with ratelimit.client().pipeline(transaction=False) as pipe:
            for breaker_id, workspace_id, kind, latency in results:
                script(keys=[_key(breaker_id), _stats_key(breaker_id, workspace_id),
                             _latency_key(breaker_id, workspace_id)],
                       args=_after_args(kind, latency), client=pipe)
            states = pipe.execute()
    except redis.RedisError:
        logger.warning("breakers: Redis unavailable; %d calls not counted", len(results))
        return
    for (breaker_id, _, kind, _), state in zip(results, states, strict=True):
        if kind == FAILURE and state == OPEN:
            logger.warning("provider breaker %s is open", breaker_id)


def _after_args(kind: str, latency: float) -> list[Any]:
    return [kind, round(latency * 1000, 1), settings.PROVIDER_BREAKER_FAILURES,
            settings.PROVIDER_BREAKER_ERROR_RATE, settings.PROVIDER_BREAKER_MIN_CALLS,
            int(settings.PROVIDER_BREAKER_WINDOW_SECONDS * 1_000_000),
            STATS_TTL_SECONDS, LATENCIES_KEPT]


def read(breaker_id: str) -> State:
    """Return a breaker's state and environment-wide counts (closed and zero when unknown)."""
    values = ratelimit.client().hgetall(_key(breaker_id))
    opened = values.get("opened_at")
    return State(state=str(values.get("state") or CLOSED), sent=int(values.get("sent") or 0),
                 failed=int(values.get("failed") or 0),
                 consecutive=int(values.get("consecutive") or 0),
                 times_opened=int(values.get("times_opened") or 0),
                 times_closed=int(values.get("times_closed") or 0),
                 opened_at=int(opened) / 1_000_000 if opened else None)


def workspace_stats(breaker_id: str, workspace_id: str) -> dict[str, Any]:
    """Return a workspace's own sent and failed counts through a provider and the p50/p95
    of its recent call latencies in milliseconds (None before any call)."""
    client = ratelimit.client()
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(_stats_key(breaker_id, workspace_id))
        pipe.lrange(_latency_key(breaker_id, workspace_id), 0, -1)
        counts, latencies = pipe.execute()
    ordered = sorted(float(value) for value in latencies)
    return {"sent": int(counts.get("sent") or 0), "failed": int(counts.get("failed") or 0),
            "latency_p50_ms": _percentile(ordered, 0.50),
            "latency_p95_ms": _percentile(ordered, 0.95)}


def _percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def reset(breaker_id: str) -> None:
    """Forget a breaker's state and counts (operators and tests)."""
    ratelimit.client().delete(_key(breaker_id))
