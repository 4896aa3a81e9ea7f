"""Failover inside one attempt: the providers of a channel in order, behind their breakers.

A definite transient failure (a 5xx, a refused connection, a 429 with a long Retry-After)
sends the same message through the next provider in the same attempt, with that provider's
own idempotency key. A permanent error (an invalid number) is the message's fault, not the
provider's: no failover. A failure whose outcome is unknown (a timeout after the request was
sent) may have been sent: it fails over only when the workspace allows it
(`failover_on_unknown_outcome`), else the same provider retries it with the same key. A
provider whose breaker is open is passed over; when every one is, the message waits (a
deferral, decided before the attempt starts: see `first_allowed`).

A message may be sent by the provider that may already have it, never by an earlier one:
before a call to any provider but the first, its position is noted in Redis (one write, on
failover only). A later attempt of a message flagged `possible_duplicate` (its call's outcome
was unknown, or its worker died during the call) starts no earlier than the noted provider,
whose own key lets it deduplicate; otherwise a recovered first provider would send it again.

The calls run on the provider threads, outside any transaction; what they did is returned
for the attempt row (its `provider` and `provider_calls`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings

from core.workspace_settings import FAILOVER_ON_UNKNOWN_OUTCOME
from messaging import ratelimit
from messaging.providers import breaker
from messaging.providers.base import Outbound, ProviderError, Receipt
from messaging.providers.registry import Choice

logger = logging.getLogger(__name__)

SKIPPED = "skipped"  # a provider call not made: its breaker was open
CALL_OUTCOMES = ("sent", "failed", SKIPPED)  # of an attempt's provider_calls
MARK_PREFIX = "fo:"  # fo:<message id> -> the position of the last provider called past the first
MARK_TTL_SECONDS = 7 * 24 * 3600  # longer than any message retries


@dataclass
class Link:
    """One provider of a message's failover order and its request."""

    choice: Choice
    outbound: Outbound


@dataclass
class Chain:
    """A message's providers in order, where its attempt starts, and what the calls did."""

    links: list[Link]
    workspace_id: str
    allow_unknown: bool = False
    start: int = 0
    floor: int = 0  # no provider before this one may be called (see the module docstring)
    marked: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)
    used: str = ""  # the provider called last
    # (breaker id, workspace id, kind, latency) of each call, for the breakers: counted by
    # the batch in one round trip per wave (see count), not one per call.
    results: list[tuple[str, str, str, float]] = field(default_factory=list)

    @property
    def first(self) -> Link:
        return self.links[self.start]


def allows_unknown(workspace_settings: dict | None) -> bool:
    """Tell whether a workspace lets an outcome-unknown failure fail over."""
    return (workspace_settings or {}).get(FAILOVER_ON_UNKNOWN_OUTCOME) is True


def fails_over(error: ProviderError, *, allow_unknown: bool) -> bool:
    """Tell whether this failure sends the message through the next provider now."""
    if error.permanent:
        return False
    if error.outcome_unknown:
        return allow_unknown
    if error.status_code == 429:
        wait = error.retry_after or 0.0
        return wait >= settings.PROVIDER_FAILOVER_RETRY_AFTER_SECONDS
    return True


def first_allowed(chain: Chain, closed: set[str]) -> float | None:
    """Set where the chain starts: its first provider whose breaker lets a call through
    (`closed`: breakers this batch already found closed, asked no more). Return None when
    one does, else the seconds until the soonest may (the message waits that long)."""
    waits = []
    for index, link in enumerate(chain.links):
        if index < chain.floor:
            continue
        breaker_id = link.choice.breaker_id
        if not breaker_id or breaker_id in closed:
            chain.start = index
            return None
        allowed, wait = breaker.acquire(breaker_id)
        if allowed:
            chain.start = index
            if breaker.read(breaker_id).state == breaker.CLOSED:
                closed.add(breaker_id)
            return None
        waits.append(wait)
    return max(0.05, min(waits))


def send(chain: Chain, call: Any) -> Receipt | ProviderError:
    """Call the chain's providers from its start until one accepts or a failure does not
    fail over; return the last result. `call(provider, outbound)` makes one call and
    returns its result (never raises)."""
    result: Receipt | ProviderError | None = None
    for index in range(chain.start, len(chain.links)):
        link = chain.links[index]
        breaker_id = link.choice.breaker_id
        if index > chain.start and breaker_id and not breaker.acquire(breaker_id)[0]:
            chain.calls.append(_entry(link, SKIPPED))
            continue
        if index > chain.marked:
            _mark(link.outbound.message_id, index)
            chain.marked = index
        began = time.monotonic()
        result = call(link.choice.provider, link.outbound)
        latency = time.monotonic() - began
        chain.used = link.choice.name
        if breaker_id:
            chain.results.append((breaker_id, chain.workspace_id, breaker.classify(result),
                                  latency))
        chain.calls.append(_entry(link, "sent" if isinstance(result, Receipt) else "failed",
                                  result, latency))
        if isinstance(result, Receipt) or not fails_over(result,
                                                         allow_unknown=chain.allow_unknown):
            return result
    assert result is not None  # the start link is always called
    return result


def count(chains: list[Chain]) -> None:
    """Count the finished chains' calls against their breakers, in one round trip."""
    breaker.record_many([result for chain in chains for result in chain.results])


def floor_of(message_id: str) -> int:
    """Return the position of the last provider past the first that a message's earlier
    attempts called (0 when none, or when Redis cannot say)."""
    try:
        value = ratelimit.client().get(f"{MARK_PREFIX}{message_id}")
    except redis.RedisError:
        logger.warning("message %s: cannot read its failover mark", message_id)
        return 0
    return int(value) if value else 0


def _mark(message_id: str, position: int) -> None:
    """Note that a message is about to be sent through the provider at this position."""
    try:
        ratelimit.client().set(f"{MARK_PREFIX}{message_id}", position, ex=MARK_TTL_SECONDS)
    except redis.RedisError:
        logger.warning("message %s: cannot note its failover to %s", message_id, position)


def _entry(link: Link, outcome: str, result: Receipt | ProviderError | None = None,
           latency: float | None = None) -> dict[str, Any]:
    """Return one provider call as the attempt's `provider_calls` lists it."""
    entry: dict[str, Any] = {"provider": link.choice.name,
                             "idempotency_key": link.outbound.key, "outcome": outcome,
                             "status_code": None, "error_code": "", "error": "", "ms": None}
    if result is not None:
        entry["status_code"] = result.status_code
        if isinstance(result, ProviderError):
            entry["error_code"], entry["error"] = result.code, result.message[:300]
    if latency is not None:
        entry["ms"] = round(latency * 1000, 1)
    return entry
