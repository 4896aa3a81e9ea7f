"""Benchmark: broadcasts. `broadcast`: without a throttle, N contacts' SMS from the POST to
the last `sent`, against the e2e delivery rate of N SMS through the batch API in the same run
(target at least 0.9x). `broadcast-throttled`: a broadcast to N contacts with a throttle of
6,000/min, the pace the messages are sent at from the first to the last (target 100/s
within 5 %; at N = 100,000 it takes 17 minutes)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from bench.harness import Cluster
from bench.load import wait_for

THROTTLE = "6000/min"
THROTTLE_PER_SECOND = 100.0
EVERYONE = {"all": [{"field": "contact.phone", "op": "exists"}]}


def contacts_make(workspace: Any, n: int) -> None:
    """Give the workspace n contacts with distinct valid mobile numbers."""
    from core.models import Contact

    for offset in range(0, n, 5000):
        Contact.objects.bulk_create([
            Contact(workspace=workspace, external_id=f"b{i}", first_name=f"F{i}",
                    phone=f"+49151{10000000 + i}")
            for i in range(offset, min(n, offset + 5000))], batch_size=1000)


def broadcast_post(cluster: Cluster, key: str, throttle: str = "") -> float:
    """Create a broadcast to every contact of the key's workspace; return when it was sent."""
    started = time.time()
    answer = requests.post(f"{cluster.web_url}/api/v1/broadcasts",
                           headers={"Authorization": f"Bearer {key}"}, timeout=60,
                           json={"name": "bench", "channel": "sms", "rules": EVERYONE,
                                 "content": {"body": "Hi {{ contact.first_name }}"},
                                 "throttle": throttle})
    answer.raise_for_status()
    return started


def sent_times(workspace: Any, n: int) -> list[float]:
    """Wait for n sent messages of the workspace; return their sent times in order."""
    from messaging.models import Message

    sent = Message.objects.filter(workspace=workspace, status="sent", source="broadcast")
    wait_for(lambda: sent.count() >= n, timeout=3600, interval=0.5)
    return sorted(t.timestamp() for t in sent.values_list("sent_at", flat=True))


def broadcast(cluster: Cluster, n: int, row: Callable[..., None],
              delivery_rate: Callable[[Cluster, Any, str, int], float]) -> None:
    print(f"broadcast: {n} contacts, no throttle, against e2e of {n} SMS", flush=True)
    e2e_workspace, e2e_key = cluster.workspace("broadcast-e2e")
    e2e = delivery_rate(cluster, e2e_workspace, e2e_key, n)
    workspace, key = cluster.workspace("broadcast")
    contacts_make(workspace, n)
    started = broadcast_post(cluster, key)
    rate = n / (sent_times(workspace, n)[-1] - started)
    row("broadcast", f"{n} contacts, no throttle: POST to last sent", rate, "msg/s", e2e,
        f"e2e: {n} SMS through the batch API, same run", "ratio >= 0.9")


def broadcast_throttled(cluster: Cluster, n: int, row: Callable[..., None]) -> None:
    print(f"broadcast: {n} contacts at {THROTTLE}", flush=True)
    workspace, key = cluster.workspace("broadcast-throttled")
    contacts_make(workspace, n)
    broadcast_post(cluster, key, THROTTLE)
    times = sent_times(workspace, n)
    pace = (len(times) - 1) / (times[-1] - times[0])
    row("broadcast-throttled", f"{n} contacts at {THROTTLE}: pace, first to last sent", pace,
        "msg/s", THROTTLE_PER_SECOND, "the throttle", "ratio 0.95-1.05")
