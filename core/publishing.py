"""Group broker publishes: hold the ones made inside a block and send them together.

A worker task that advances twenty executions, or delivers fifty messages that resume
twenty flow steps, would otherwise publish one task per row as each transaction commits;
inside `grouped()` the publishers (messaging.publishing, flows.publishing) hand their rows
here instead, and at the end of the block each publisher sends all of its rows at once,
in its own batches. The rows are committed before they are held, so a worker that dies
before the end of the block loses only the wake-up: the sweepers publish rows left queued
(REQUEUE_AFTER_SECONDS), exactly as after a broker failure.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

logger = logging.getLogger(__name__)

Send = Callable[[list[Any]], Any]
_held: ContextVar[dict[Send, list[Any]] | None] = ContextVar("held_publishes", default=None)


@contextmanager
def grouped() -> Iterator[None]:
    """Hold publishes made inside the block and send them together when it ends (also when
    it raises: what committed inside must still be published). Nested blocks join the
    outermost one."""
    if _held.get() is not None:
        yield
        return
    held: dict[Send, list[Any]] = {}
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
        for send, items in held.items():
            try:
                send(items)
            except Exception:  # publishers log their own failures; never lose the others
                logger.exception("grouped publish of %d items failed", len(items))


def hold(send: Send, items: list[Any]) -> bool:
    """Keep items for send(items) at the end of the enclosing grouped() block; return False
    (the caller sends now) outside one."""
    held = _held.get()
    if held is None:
        return False
    held.setdefault(send, []).extend(items)
    return True
