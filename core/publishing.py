"""Group broker publishes: hold the ones made inside a block and send them together.

A worker task that advances twenty executions, or delivers fifty messages that resume
twenty flow steps, would otherwise publish one task per row as each transaction commits;
inside `grouped()` the publishers (messaging.publishing, flows.publishing) hand their rows
here instead, and at the end of the block each publisher sends all of its rows at once,
in its own batches. The rows are committed before they are held, so a worker that dies
before the end of the block loses only the wake-up: the sweepers publish rows left queued
(REQUEUE_AFTER_SECONDS), exactly as after a broker failure.

A web request that creates messages need not wait on the broker either: inside
`in_background()` the publishers that allow it hand their rows to a thread of the process
(one per process), which sends whatever has gathered while it was busy in one go, so under
load several requests' rows share a publish and a delivery task. The rows are committed
before they are handed over; a process that dies before its thread sent them loses only
the wake-up, as above. A process that exits normally sends what is pending first.
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from core import tracing

logger = logging.getLogger(__name__)

Send = Callable[[list[Any]], Any]
_held: ContextVar[dict[Send, list[Any]] | None] = ContextVar("held_publishes", default=None)
_background: ContextVar[bool] = ContextVar("background_publishes", default=False)


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


@contextmanager
def in_background() -> Iterator[None]:
    """Hand publishes made inside the block (by publishers that allow it) to this process's
    publishing thread instead of sending them before the block goes on."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


def hold(send: Send, items: list[Any], *, background: bool = False) -> bool:
    """Keep items for send(items) at the end of the enclosing grouped() block, or, with
    `background` (send touches no database) inside in_background(), hand them to the
    publishing thread; return False (the caller sends now) otherwise."""
    held = _held.get()
    if held is not None:
        held.setdefault(send, []).extend(items)
        return True
    if background and _background.get():
        publisher().submit(send, items)
        return True
    return False


class Publisher:
    """A thread sending what submit() hands it; each round sends, per send function, all
    the items gathered since the last round in one call."""

    def __init__(self) -> None:
        # Each submission keeps its trace context (core.tracing; None when off).
        self._queue: queue.SimpleQueue[tuple[Send, list[Any], Any] | None] = \
            queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()

    def submit(self, send: Send, items: list[Any]) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put((send, items, tracing.capture()))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far was sent (or failed); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is pending, then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            round_: list[tuple[Send, list[Any], Any] | None] = [first]
            while True:  # everything that gathered while the last round was sending
                try:
                    round_.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            gathered: dict[Send, list[Any]] = {}
            # A publish that gathers several submissions joins the first one's trace.
            traced: dict[Send, Any] = {}
            for entry in round_:
                if entry is not None:
                    gathered.setdefault(entry[0], []).extend(entry[1])
                    traced.setdefault(entry[0], entry[2])
            for send, items in gathered.items():
                try:
                    with tracing.within(traced[send]):
                        send(items)
                except Exception:  # publishers log their own failures; never stop the thread
                    logger.exception("background publish of %d items failed", len(items))
            with self._idle:
                self._pending -= len(round_) - round_.count(None)
                self._idle.notify_all()
            if None in round_:
                return


_publisher: tuple[int, Publisher] | None = None
_publisher_lock = threading.Lock()


def background_flush(timeout: float | None = None) -> bool:
    """Wait until this process's publishing thread, if it has one, sent what it was given."""
    current = _publisher
    if current is None or current[0] != os.getpid():
        return True
    return current[1].flush(timeout)


def publisher() -> Publisher:
    """Return this process's publishing thread, started on first use (a forked child, such
    as a web server worker, starts its own)."""
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher[0] != os.getpid():
            started = Publisher()
            atexit.register(started.stop)
            _publisher = (os.getpid(), started)
        return _publisher[1]
