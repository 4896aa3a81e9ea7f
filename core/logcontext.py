"""Correlation ids on every log line (README.md, "Following a message through the logs").

What a line is about (the request that caused it, the message, execution, task and
workspace) lives in one context variable; `bind` adds to it for a block, and the logging
filter `ContextFilter` copies it onto every record: as fields of a JSON line (LOG_JSON=1),
and as `[request_id=… message_id=…]` after a plain one. Context variables follow the code
of one request, one task or one thread, so two requests served at once never mix theirs.

The web answers every request with its X-Request-ID (the client's, when it sent a usable
one); tasks published while a request is served carry it in their Celery headers
(`request_id`), and a message keeps the id of the request that created it
(Message.request_id), so a retry hours later still names it.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

# The fields a line may carry, in the order a plain line shows them.
FIELDS = ("request_id", "workspace_id", "message_id", "execution_id", "task_id")
HEADER = "X-Request-ID"
# A client's id is used as given when it is this plain and short (it goes into every log
# line and answer header); anything else gets a fresh id instead.
USABLE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

_context: ContextVar[dict[str, str]] = ContextVar("log_context", default={})  # noqa: B039


def current() -> dict[str, str]:
    """Return what the lines logged now are about."""
    return _context.get()


def request_id() -> str:
    """Return the id of the request being served (or whose task runs), else ""."""
    return _context.get().get("request_id", "")


def new_request_id() -> str:
    """Return a fresh request id."""
    return uuid.uuid4().hex


def usable_request_id(value: Any) -> str:
    """Return the client's request id when it is usable, else a fresh one."""
    if isinstance(value, str) and USABLE_ID.match(value):
        return value
    return new_request_id()


@contextmanager
def bind(**values: Any) -> Iterator[None]:
    """Add the values (None and "" left out) to what lines logged in the block are about."""
    token = _context.set({**_context.get(), **_clean(values)})
    try:
        yield
    finally:
        _context.reset(token)


def update(**values: Any) -> None:
    """Add the values for the rest of the enclosing `bind` block (or task, or request)."""
    _context.set({**_context.get(), **_clean(values)})


def _clean(values: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in values.items() if value not in (None, "")}


def run_bound(function: Callable[..., Any], *args: Any, **values: Any) -> Any:
    """Call function(*args) with the values bound (for a thread pool, where the caller's
    context does not follow the call)."""
    with bind(**values):
        return function(*args)


class ContextFilter(logging.Filter):
    """Put the bound fields on every record, each as an attribute (JSON lines show them as
    fields); with `plain`, also together as `record.context`, " [request_id=… …]" or ""
    (the plain format ends with it)."""

    def __init__(self, plain: bool = True) -> None:
        super().__init__()
        self.plain = plain

    def filter(self, record: logging.LogRecord) -> bool:
        values = _context.get()
        for name in FIELDS:
            if name in values and not hasattr(record, name):
                setattr(record, name, values[name])
        if self.plain:
            shown = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS
                             if getattr(record, name, None))
            record.context = f" [{shown}]" if shown else ""
        return True


request_logger = logging.getLogger("relay.request")


class RequestIdMiddleware:
    """Take the request's X-Request-ID (or make one), bind it for every line logged while
    the request is served, log the request's line, and answer the id in the same header."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        rid = usable_request_id(request.headers.get(HEADER))
        request.request_id = rid
        started = time.monotonic()
        token = _context.set({"request_id": rid})
        try:
            response = self.get_response(request)
            request_logger.info("%s %s %s (%.0f ms)", request.method, request.path,
                                response.status_code, (time.monotonic() - started) * 1000)
        finally:
            _context.reset(token)
        response[HEADER] = rid
        return response


# --- Celery: the request id travels in task headers; a task's lines carry its ids ---------

def task_headers_add(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """before_task_publish: put the bound request id in the task's headers (unless the
    publisher set one: a delivery task names its messages' request)."""
    rid = request_id()
    if headers is not None and rid and not headers.get("request_id"):
        headers["request_id"] = rid


# task id -> the context to restore when the task ends (a task run eagerly, inside a
# request or another task, gives its caller's back).
_before_task: dict[str, Token[dict[str, str]]] = {}


def task_context_bind(task_id: str = "", task: Any = None, **_: Any) -> None:
    """task_prerun: the task's lines carry its id and the request id it was published with
    (an eager task's: its caller's); nothing else of what was bound before."""
    rid = getattr(getattr(task, "request", None), "request_id", None) or request_id()
    _before_task[task_id] = _context.set(_clean({"task_id": task_id, "request_id": rid}))


def task_context_clear(task_id: str = "", **_: Any) -> None:
    """task_postrun: nothing bound outlives its task; the caller's context comes back."""
    token = _before_task.pop(task_id, None)
    try:
        if token is not None:
            _context.reset(token)
            return
    except ValueError:  # set in another context: nothing of ours to give back
        pass
    _context.set({})


def celery_logging_setup(**_: Any) -> None:
    """setup_logging: configure the worker's and beat's logging from Django's LOGGING (the
    context filter and format included) instead of Celery's own."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
