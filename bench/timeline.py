"""Benchmark 11: what the message timeline costs (README.md, "Timelines"). In this process,
against the run's PostgreSQL and stub provider: create and deliver batches of 50 SMS (the
API's insert path, then a delivery task's service), alternating the timeline on and off
batch by batch so both see the same load; compare the medians, and the CPU seconds this
process and its PostgreSQL backend spent (on a shared machine the steadier figure: other
processes' load lengthens the wall time, not the work). The e2e scenario run twice, with
TIMELINE_ENABLED=1 and =0, measures the same end to end, where a shared machine's noise is
often larger than the difference."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.harness import Cluster, cpu_of

BATCH = 50  # a delivery task's batch (messaging.publishing.PUBLISH_BATCH)


def timeline(cluster: Cluster, n: int, row: Callable[..., None]) -> None:
    from django.conf import settings

    from messaging.delivery import creation, sending
    from messaging.models import TimelineEntry

    print(f"timeline: {n} SMS created and delivered in batches of {BATCH}, with the timeline "
          "and without, alternating", flush=True)
    workspace, _ = cluster.workspace("timeline")
    spent: dict[bool, list[float]] = {True: [], False: []}
    cpu = {True: 0.0, False: 0.0}
    backend = _backend_pid()
    enabled = settings.TIMELINE_ENABLED
    try:
        for index in range(max(2, n // BATCH // 2)):
            for on in ((True, False) if index % 2 else (False, True)):
                settings.TIMELINE_ENABLED = on
                used = time.process_time() + cpu_of(backend)
                spent[on].append(_one_batch(creation, sending, workspace))
                cpu[on] += time.process_time() + cpu_of(backend) - used
    finally:
        settings.TIMELINE_ENABLED = enabled
    with_it, without = (statistics.median(spent[on]) * 1000 for on in (True, False))
    row("timeline", "create + deliver 50 SMS with the timeline", with_it, "ms", without,
        "the same without it (TIMELINE_ENABLED=0), alternating", "ratio >= 0.95",
        higher_is_better=False)
    messages = len(spent[True]) * BATCH
    row("timeline", "CPU per 1,000 SMS with the timeline (this process + its PostgreSQL "
        "backend)", cpu[True] / messages * 1000, "s", cpu[False] / messages * 1000,
        "the same without it, alternating", "ratio >= 0.95", higher_is_better=False)
    rows = TimelineEntry.objects.filter(message__workspace=workspace).count()
    row("timeline", "entries written", rows, "rows", target="2 per message with it")


def _backend_pid() -> int:
    """Return the pid of this connection's PostgreSQL backend (its CPU counts only when the
    server runs on this machine, as the harness's does)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _one_batch(creation: Any, sending: Any, workspace: Any) -> float:
    """Return the seconds to create and deliver one batch. They are created for tomorrow
    (nothing is published, so the run's worker leaves them to us), then made due untimed."""
    from datetime import timedelta

    from django.utils import timezone

    from messaging.models import Message

    built = [creation.message_build(workspace=workspace, channel="sms", to="+14155552671",
                                    content={"body": "timeline"},
                                    send_at=timezone.now() + timedelta(days=1))
             for _ in range(BATCH)]
    started = time.perf_counter()
    creation.message_create_many(messages=built)
    created = time.perf_counter() - started
    ids = [str(m.pk) for m in built]
    Message.objects.filter(pk__in=ids).update(status="queued", due_at=None)
    started = time.perf_counter()
    outcomes = sending.messages_deliver(message_ids=ids)
    delivered = time.perf_counter() - started
    assert set(outcomes.values()) == {"sent"}, outcomes
    return created + delivered
