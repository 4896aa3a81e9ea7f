"""OpenTelemetry (README.md, "Tracing"): off by default; when on, one trace runs from the API
request through the Celery worker to the provider's HTTP call, with the queries on it."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from core import tracing
from messaging.models import Message
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def spans() -> Iterator[object]:
    """Trace into memory for the test, then take the instrumentation away again."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracing.start(processor=SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.stop()


def test_tracing_is_off_unless_an_otel_variable_asks(monkeypatch):
    for name in (*tracing.TRIGGERS, "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing.wanted()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert tracing.wanted()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.wanted()
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing.wanted()


def test_one_trace_runs_from_the_request_through_the_worker_to_the_provider(
        spans, api, workspace, stub_server, allow_local, live_worker):
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    created = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                            "body": "traced"}, format="json")
    assert created.status_code == 201, created.json()
    message_id = created.json()["id"]
    wait_until(lambda: Message.objects.get(pk=message_id).status == "sent", timeout=30)
    wait_until(lambda: any(s.name.startswith("run/") for s in spans.get_finished_spans()),
               timeout=30)

    finished = spans.get_finished_spans()
    [request] = [s for s in finished if s.kind.name == "SERVER"
                 and str(s.attributes.get("http.url", s.attributes.get("url.full", "")))
                 .endswith("/api/v1/messages")]
    trace_id = request.context.trace_id
    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    names = [s.name for s in in_trace]
    assert any(name.startswith("apply_async/") for name in names)  # published by the web
    assert any(name.startswith("run/") for name in names)  # run by the worker
    [call] = [s for s in in_trace if s.kind.name == "CLIENT"
              and str(s.attributes.get("url.full", s.attributes.get("http.url", ""))
                      ).startswith(stub_server.url)]
    assert call.attributes.get("http.response.status_code",
                               call.attributes.get("http.status_code")) == 200
    # The queries of the request are on the trace too (psycopg).
    assert any(s.attributes.get("db.system") == "postgresql" for s in in_trace)
