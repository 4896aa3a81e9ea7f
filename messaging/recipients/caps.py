"""Frequency caps: at most N marketing messages per contact and channel in a rolling window.

Each (workspace, list, contact) has one sorted set in Redis of the message ids counted in
the window, scored by when they were counted. One Lua script trims, checks and adds, so two
workers sending to the same contact at once cannot both take the last place; a message
already counted (deferred afterwards by the rate limit, say) passes again without counting
twice. Times come from the Redis server clock, as in messaging.ratelimit.
"""
from __future__ import annotations

from core.parsing import Cap
from messaging import ratelimit

KEY_PREFIX = "fc:"
# KEYS[1] = the sorted set; ARGV = window_us, limit, member, take (1 adds, 0 only reads).
# Returns "0" when the member may go (counted now or before), else the microseconds until
# the window frees a place.
_TAKE_LUA = """
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return '0'
end
local n = redis.call('ZCARD', KEYS[1])
if n < limit then
  if ARGV[4] == '1' then
    redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[3])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  end
  return '0'
end
local freeing = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
return string.format('%.0f', math.max(1, tonumber(freeing[2]) + window - now))
"""


def cap_key(workspace_id: str, list_name: str, who: str) -> str:
    """Return the sorted set of one contact's (or address's) counted messages."""
    return f"{KEY_PREFIX}{workspace_id}:{list_name}:{who}"


def take_many(requests: list[tuple[str, Cap, str]], *, take: bool = True) -> list[float]:
    """For each (key, cap, member), count the member if its window has room (`take`; else
    only look); return 0, or the seconds until there is room, in order. One pipeline: a
    batch costs one round trip (plus one to load the script on a fresh server)."""
    if not requests:
        return []
    redis_client = ratelimit.client()
    script = redis_client.register_script(_TAKE_LUA)
    with redis_client.pipeline(transaction=False) as pipe:
        for key, cap, member in requests:
            script(keys=[key], args=[cap.period * 1_000_000, cap.count,
                                     member if take else "", "1" if take else "0"],
                   client=pipe)
        answers = pipe.execute()
    return [int(waited) / 1_000_000 for waited in answers]


def take(key: str, cap: Cap, *, member: str) -> float:
    """Count `member` if the window has room; return 0, or the seconds until it has."""
    return take_many([(key, cap, member)])[0]


def peek(key: str, cap: Cap) -> float:
    """Return 0 when one more message would fit now, else the seconds until it would."""
    return take_many([(key, cap, "")], take=False)[0]


def counted_many(requests: list[tuple[str, Cap]]) -> list[int]:
    """Return how many messages each (key, cap) counts in its window now, without counting
    one (what a recipient's page shows). One pipeline after reading the server's clock."""
    if not requests:
        return []
    redis_client = ratelimit.client()
    seconds, micros = redis_client.time()
    now = int(seconds) * 1_000_000 + int(micros)
    with redis_client.pipeline(transaction=False) as pipe:
        for key, cap in requests:
            pipe.zcount(key, f"({now - cap.period * 1_000_000}", "+inf")
        return [int(n) for n in pipe.execute()]
