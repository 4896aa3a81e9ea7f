"""OpenTelemetry traces, optional and off by default (README.md, "Tracing").

Turned on by the standard variables alone: `OTEL_TRACES_EXPORTER` (otlp, console) or an
OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), unless
`OTEL_SDK_DISABLED=true`; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and the exporter's
own variables are read by the SDK. Then Django (each request), Celery (publish and run,
the trace context travelling in the task's headers), psycopg (each query) and requests
(each provider and webhook call) are instrumented, so one trace runs from an API request
through the worker to the provider call. Without the `otel` extra installed, turning it on
logs a warning and changes nothing.

Every process starts it the same way, when Django is set up (core.apps): web, worker,
beat and the dispatcher. The SDK's batch processor restarts its thread in a forked child
(gunicorn, Celery's prefork pool).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Variables any of which turns tracing on (a value of "none" for the exporter does not).
TRIGGERS = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_started = False


def wanted() -> bool:
    """Tell whether the environment asks for traces."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(os.environ.get(name, "").strip() for name in TRIGGERS)


def start_from_environment() -> bool:
    """Start tracing if the environment asks for it; return whether it runs."""
    if not wanted():
        return False
    try:
        processor = _processor_from_environment()
        if processor is None:
            logger.warning("OTEL_TRACES_EXPORTER=%s: only otlp and console are built in; "
                           "no traces", os.environ.get("OTEL_TRACES_EXPORTER"))
            return False
        return start(processor=processor)
    except ImportError as exc:
        logger.warning("OTEL_* variables ask for traces, but the otel extra is not "
                       "installed (pip install -e '.[otel]'): %s", exc)
        return False


def start(*, processor: Any) -> bool:
    """Install a tracer provider sending spans through `processor` and instrument Django,
    Celery, psycopg and requests. Once per process: a second call changes nothing."""
    global _started
    if _started:
        return True
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()  # its Resource reads OTEL_SERVICE_NAME and attributes
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    for instrumentor in _instrumentors():
        instrumentor.instrument()
    _started = True
    return True


def stop() -> None:
    """Remove the instrumentation (tests; a process keeps tracing until it exits)."""
    global _started
    for instrumentor in _instrumentors():
        instrumentor.uninstrument()
    _started = False


def capture() -> Any:
    """Return the caller's trace context, for work it hands to another thread (None when
    tracing is off): contexts do not cross threads by themselves."""
    if not _started:
        return None
    from opentelemetry import context

    return context.get_current()


@contextmanager
def within(captured: Any) -> Iterator[None]:
    """Run the block in a context capture() returned (nothing when it returned None)."""
    if captured is None:
        yield
        return
    from opentelemetry import context

    token = context.attach(captured)
    try:
        yield
    finally:
        context.detach(token)


def carried(function: Callable[..., T]) -> Callable[..., T]:
    """Return `function` bound to the caller's trace context, to run on another thread
    (the function itself when tracing is off)."""
    captured = capture()
    if captured is None:
        return function

    def run(*args: Any, **kwargs: Any) -> T:
        with within(captured):
            return function(*args, **kwargs)

    return run


def _instrumentors() -> list[Any]:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    return [DjangoInstrumentor(), CeleryInstrumentor(), PsycopgInstrumentor(),
            RequestsInstrumentor()]


def _processor_from_environment() -> Any:
    """Return the batch processor of the exporter OTEL_TRACES_EXPORTER names (otlp by
    default, over HTTP/protobuf; console prints spans, for a first look)."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if name == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    if name != "otlp":
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter())
