"""Atomic rate limiting in Redis, shared by every worker and web process.

Both limiters use GCRA (the generic cell rate algorithm): one key per limited thing holds its
"theoretical arrival time" (TAT), so a limit costs one small string in Redis and one round trip
per event, and each decision runs inside one Lua script so concurrent callers never race.

- reserve() *books* a slot and tells the caller how long to wait for it (outbound sending: the
  task is deferred by that delay, nobody is refused).
- allow() only *checks* and consumes when allowed (inbound API requests: refuse with 429).

Times inside the scripts are integer microseconds taken from the Redis server clock, so hosts
with skewed clocks still share one timeline.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

import redis
from django.conf import settings
from redis.commands.core import Script

from core.parsing import Rate
from messaging.channels import rate_key_for

logger = logging.getLogger(__name__)

KEY_PREFIX = "rl:"
EVENTS_KEEP = 1000
# Namespaces living directly under "rl:"; a workspace with one of these ids would share keys
# with them (and reset() would wipe them), so channel keys refuse such ids.
_RESERVED_NAMESPACES = frozenset({"api", "deferrals", "events"})
_SCAN_BATCH = 500
# A client-chosen rate key (the older AI queue's rate_limit_key) names one counter inside its
# workspace's channel: short, and of characters that cannot reach another namespace or act as
# a glob in reset()'s SCAN pattern.
CLIENT_KEY_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,100}")
# Metadata naming a message's own rate key, counted apart inside its channel's limit (the
# older AI queue's rate_limit_key: one counter per end user instead of one per workspace).
RATE_KEY_FIELD = "_rate_limit_key"

# KEYS[1] = TAT key; ARGV = interval_us, tolerance_us, now_us ("" = Redis TIME).
# Returns the delay in microseconds until the booked slot.
_RESERVE_LUA = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local slot = tat - tolerance
if slot < now then
  slot = now
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
           'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return string.format('%.0f', slot - now)
"""

# Same arguments; returns {1, 0} and consumes when allowed, else {0, wait_us} untouched.
_ALLOW_LUA = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, string.format('%.0f', allow_at - now)}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
           'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, '0'}
"""


@dataclass
class _Connection:
    url: str
    client: redis.Redis
    reserve: Script
    allow: Script


_lock = threading.Lock()
_connection: _Connection | None = None


def _connect() -> _Connection:
    """Return this process's connection bundle, rebuilding it when REDIS_URL changed."""
    global _connection
    url = settings.REDIS_URL
    current = _connection
    if current is not None and current.url == url:
        return current
    with _lock:
        current = _connection
        if current is None or current.url != url:
            # decode_responses: every value stored here is text (numbers, JSON, channel names).
            new_client = redis.Redis.from_url(url, decode_responses=True)
            current = _Connection(
                url=url,
                client=new_client,
                reserve=new_client.register_script(_RESERVE_LUA),
                allow=new_client.register_script(_ALLOW_LUA),
            )
            old, _connection = _connection, current
            if old is not None:
                old.client.close()
        return current


def client() -> redis.Redis:
    """Return a module-level (per-process, lazily created, reset if REDIS_URL changes) redis client.

    The client decodes responses to str. It is thread safe (redis-py pools connections).
    """
    return _connect().client


def _check_workspace_id(workspace_id: str) -> str:
    workspace_id = str(workspace_id)
    if not workspace_id or workspace_id in _RESERVED_NAMESPACES:
        raise ValueError(f"workspace id {workspace_id!r} is empty or a reserved key namespace")
    return workspace_id


def channel_key(workspace_id: str, channel: str) -> str:
    """Return the reservation key of a workspace's channel: rl:{workspace_id}:{channel}."""
    return f"{KEY_PREFIX}{_check_workspace_id(workspace_id)}:{channel}"


def client_key_valid(text: Any) -> bool:
    """Tell whether a client-chosen rate key may name a counter (see CLIENT_KEY_RE)."""
    return isinstance(text, str) and CLIENT_KEY_RE.fullmatch(text) is not None


def client_channel_key(workspace_id: str, channel: str, client_key: str) -> str:
    """Return the reservation key of a client's own key inside a workspace's channel,
    rl:{workspace_id}:{channel}:key:{client_key}, so no key reaches another workspace."""
    if not client_key_valid(client_key):
        raise ValueError(f"rate key {client_key!r} is not 1-100 of A-Z a-z 0-9 _ . : @ -")
    return f"{channel_key(workspace_id, channel)}:key:{client_key}"


def api_key(prefix: str) -> str:
    """Return the throttle key of an API key: rl:api:{prefix}."""
    return f"{KEY_PREFIX}api:{prefix}"


def rate_for(workspace: Any, channel: str) -> Rate | None:
    """Return the sending rate in force for a workspace's channel (its override, else the
    default), or None when the channel is unlimited."""
    key = rate_key_for(channel)
    text = ((workspace.settings or {}).get("rate_limits") or {}).get(
        key, settings.RATE_LIMITS.get(key))
    return Rate.parse(text) if text else None


def _deferrals_key(workspace_id: str) -> str:
    return f"{KEY_PREFIX}deferrals:{workspace_id}"


def _events_key(workspace_id: str) -> str:
    return f"{KEY_PREFIX}events:{workspace_id}"


def _gcra_args(rate: Rate, now: float | None) -> list[str | int]:
    interval = rate.interval_us
    # An empty string makes the script read the Redis server clock.
    now_arg: str | int = "" if now is None else round(now * 1_000_000)
    return [interval, (rate.burst - 1) * interval, now_arg]


def reserve(key: str, rate: Rate, *, now: float | None = None) -> float:
    """Atomically book the next free slot for one event under `key`; return its delay in seconds.

    0.0 means go now. Concurrent callers get distinct slots spaced by period/count once the
    burst is used up, e.g. 50 reservations at 5/s with burst 1 return 0, 0.2, ... 9.8. The
    script reads the Redis server clock unless `now` (epoch seconds, for tests) is given, and
    the key expires when its TAT passes. A booked slot is never released: a caller that gives
    up still uses its slot.
    """
    connection = _connect()
    delay_us = connection.reserve(keys=[key], args=_gcra_args(rate, now))
    return int(delay_us) / 1_000_000


def allow(key: str, rate: Rate, *, now: float | None = None) -> tuple[bool, float]:
    """Check `key` against `rate` without booking ahead; consume one event if allowed.

    Return (True, 0.0) when allowed, else (False, seconds until a retry would be allowed) and
    leave the key untouched, so refused requests do not push the limit further out.
    """
    connection = _connect()
    allowed, wait_us = connection.allow(keys=[key], args=_gcra_args(rate, now))
    if int(allowed):
        return True, 0.0
    return False, int(wait_us) / 1_000_000


def record_deferral(*, workspace_id: str, channel: str, delay: float) -> None:
    """Count a rate-limit deferral and log it on the workspace's capped event list.

    One MULTI/EXEC pipeline, so one round trip and the counter and list never disagree.
    """
    workspace_id = _check_workspace_id(workspace_id)
    event = json.dumps({"ts": time.time(), "channel": channel, "delay": float(delay)})
    pipe = client().pipeline(transaction=True)
    pipe.hincrby(_deferrals_key(workspace_id), channel, 1)
    pipe.lpush(_events_key(workspace_id), event)
    pipe.ltrim(_events_key(workspace_id), 0, EVENTS_KEEP - 1)
    pipe.execute()


def deferral_events(workspace_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """Return the workspace's most recent deferral events, newest first (at most 1000 kept)."""
    if limit <= 0:
        return []
    raw = client().lrange(_events_key(_check_workspace_id(workspace_id)), 0, limit - 1)
    return [json.loads(item) for item in raw]


def deferral_counts(workspace_id: str) -> dict[str, int]:
    """Return the workspace's total deferrals per channel."""
    # The client decodes responses: keys and values are text.
    raw = cast(dict[str, str], client().hgetall(_deferrals_key(_check_workspace_id(workspace_id))))
    return {channel: int(count) for channel, count in raw.items()}


def _escape_glob(text: str) -> str:
    # SCAN MATCH is a glob: an id containing *, ?, [ or \ must not match other workspaces.
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def reset(workspace_id: str) -> None:
    """Delete the deferral counters, events and reservation keys of a workspace."""
    workspace_id = _check_workspace_id(workspace_id)
    redis_client = client()
    redis_client.delete(_deferrals_key(workspace_id), _events_key(workspace_id))
    pattern = _escape_glob(channel_key(workspace_id, "")) + "*"
    # SCAN, not KEYS: KEYS blocks the shared server for the whole keyspace walk.
    batch: list[str] = []
    for key in redis_client.scan_iter(match=pattern, count=_SCAN_BATCH):
        batch.append(key)
        if len(batch) >= _SCAN_BATCH:
            redis_client.delete(*batch)
            batch = []
    if batch:
        redis_client.delete(*batch)
