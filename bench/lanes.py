"""Benchmark 12: delivery lanes and fair sharing (README.md, "Lanes"), end to end through
gunicorn, the worker and the stub provider.

(a) created->sent p95 of 200 transactional SMS posted one every 50 ms while another
    workspace's n-message marketing batch drains, against the same with no batch;
(a') the same with PRIORITY_LANE_QUEUE set and one worker process kept for that queue
    (separate queues) instead of priority order on the shared queue (claim order);
(b) the same for transactional SMS of the workspace that owns the batch;
(c) fairness: a second workspace's n/10-message marketing batch posted 1 s after the
    first was gets its share of the sends while both have a backlog.
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.harness import Cluster
from bench.load import accept_batch, open_loop, percentile, wait_for

PHONE = "+14155552671"
CODES = 200  # transactional SMS per measurement, one every 50 ms
EVERY = 0.05
LANE_QUEUE = "priority"


def marketing(i: int) -> dict[str, Any]:
    return {"channel": "sms", "to": PHONE, "body": f"offer {i}", "category": "marketing"}


def code(i: int) -> dict[str, Any]:
    return {"channel": "sms", "to": PHONE, "body": f"code {i}"}


def lanes(cluster: Cluster, n: int, row: Callable[..., None]) -> None:
    print(f"lanes: {CODES} transactional SMS at one every {EVERY * 1000:.0f} ms, idle and "
          f"while a {n}-message marketing batch drains; fairness with a {n // 10} batch",
          flush=True)
    codes_ws, codes_key = cluster.workspace("lanes-codes")
    bulk_ws, bulk_key = cluster.workspace("lanes-bulk")
    idle = _codes_p95(cluster, codes_ws, codes_key)
    row("lanes", "idle: created->sent p95 of transactional SMS", idle, "ms",
        higher_is_better=False)
    loaded, left = _under_batch(cluster, n, bulk_key, codes_ws, codes_key)
    row("lanes", f"(a) p95 while another workspace's {n} marketing drain", loaded, "ms",
        idle, "idle p95", f"<= 1000 ms and <= 3x idle (marketing left: {left})",
        higher_is_better=False)
    own, left = _under_batch(cluster, n, bulk_key, bulk_ws, bulk_key)
    row("lanes", f"(b) p95 of the batch owner's own, while its {n} drain", own, "ms",
        idle, "idle p95", f"<= 1000 ms and <= 3x idle (marketing left: {left})",
        higher_is_better=False)
    _fairness(cluster, n, row)
    _separate_queue(cluster, n, row, idle)


def _codes_p95(cluster: Cluster, workspace: Any, key: str) -> float:
    """Post CODES transactional SMS one every EVERY seconds; return their created->sent
    p95 in ms, once every one is sent."""
    from messaging.models import Message

    records = open_loop(cluster.web_url, {"Authorization": f"Bearer {key}"},
                        "/api/v1/messages", code, rate=1 / EVERY, duration=CODES * EVERY,
                        concurrency=4)
    ids = [r["id"] for r in records if r["status"] == 201]
    rows = Message.objects.filter(pk__in=ids)
    wait_for(lambda: rows.filter(status="sent").count() >= len(ids), timeout=600)
    return percentile([(sent - created).total_seconds() * 1000 for created, sent in
                       rows.values_list("created_at", "sent_at")], 95)


def _under_batch(cluster: Cluster, n: int, bulk_key: str, codes_ws: Any,
                 codes_key: str) -> tuple[float, int]:
    """Post an n-message marketing batch (in the background), then the codes 2 s later;
    return their p95 and how many marketing messages were still waiting when the last
    code was sent (a backlog the whole time when > 0). Waits for the batch to drain."""
    from messaging.models import Message

    posted = threading.Thread(target=accept_batch, args=(cluster, bulk_key, n, marketing))
    posted.start()
    time.sleep(2.0)
    p95 = _codes_p95(cluster, codes_ws, codes_key)
    waiting = Message.objects.filter(category="marketing", status__in=(
        "queued", "sending", "scheduled")).count()
    posted.join()
    _drained(n)
    return p95, waiting


def _drained(n: int) -> None:
    from messaging.models import Message

    wait_for(lambda: not Message.objects.filter(status__in=(
        "queued", "sending", "scheduled", "retrying")).exists(), timeout=max(600, n / 20))


def _fairness(cluster: Cluster, n: int, row: Callable[..., None]) -> None:
    """Two marketing batches, the second (n/10) posted 1 s after the first was; the
    second's share of the sends while both wait: from the later first accept of the two to
    the earlier last send."""
    from django.db.models import Max, Min

    from messaging.models import Message

    first_ws, first_key = cluster.workspace("lanes-first")
    second_ws, second_key = cluster.workspace("lanes-second")
    accept_batch(cluster, first_key, n, marketing)
    time.sleep(1.0)
    accept_batch(cluster, second_key, n // 10, marketing)
    _drained(n)
    spans = [Message.objects.filter(workspace=ws).aggregate(
        first=Min("created_at"), last=Max("sent_at")) for ws in (first_ws, second_ws)]
    start, end = max(s["first"] for s in spans), min(s["last"] for s in spans)
    window = Message.objects.filter(sent_at__gte=start, sent_at__lte=end)
    theirs = window.filter(workspace=second_ws).count()
    total = window.filter(workspace__in=(first_ws, second_ws)).count()
    row("lanes", f"(c) second workspace's share of sends while both wait ({total} sends "
        f"in {(end - start).total_seconds():.1f} s)", 100 * theirs / max(1, total), "%",
        target=">= 40 %")


def _separate_queue(cluster: Cluster, n: int, row: Callable[..., None], idle: float) -> None:
    """(a) again with the priority lane on a queue of its own and one worker process kept
    for it (restart web, worker and dispatcher with PRIORITY_LANE_QUEUE set)."""
    from django.conf import settings

    from bench.harness import QUEUES

    cluster.extra_env["PRIORITY_LANE_QUEUE"] = LANE_QUEUE
    settings.PRIORITY_LANE_QUEUE = LANE_QUEUE  # this process publishes nothing, but alike
    for name in ("web", "worker", "dispatcher"):
        cluster.stop(name)
    cluster.start_web()
    cluster.spawn("worker", [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q",
                             f"{QUEUES},{LANE_QUEUE}", "--concurrency", str(cluster.workers),
                             "-P", "prefork", "--without-gossip", "--without-mingle",
                             "-n", "lanes-worker@%h", "-l", "warning"])
    cluster.spawn("worker-priority", [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", LANE_QUEUE,
        "--concurrency", "1", "-P", "prefork", "--without-gossip", "--without-mingle",
        "-n", "lanes-priority@%h", "-l", "warning"])
    cluster.start_dispatcher()
    time.sleep(3)
    codes_ws, codes_key = cluster.workspace("lanes-codes-queue")
    _, bulk_key = cluster.workspace("lanes-bulk-queue")
    queued_idle = _codes_p95(cluster, codes_ws, codes_key)
    loaded, left = _under_batch(cluster, n, bulk_key, codes_ws, codes_key)
    row("lanes", "(a') separate queue + 1 worker process kept for it: idle p95",
        queued_idle, "ms", idle, "claim order's idle p95", higher_is_better=False)
    row("lanes", f"(a') separate queue: p95 while another workspace's {n} marketing drain",
        loaded, "ms", queued_idle, "its idle p95",
        f"<= 1000 ms and <= 3x idle (marketing left: {left})", higher_is_better=False)
