"""A small HTTP load generator: closed loop (max throughput) and open loop (fixed rate), and
the batch-API and polling helpers the scenarios share."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from bench.harness import Cluster


class Connection(http.client.HTTPConnection):
    """http.client sends headers and body in two writes; without TCP_NODELAY, Nagle and
    the server's delayed ACK add 40 ms to every request (real clients such as urllib3 set
    it too)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Client:
    """One connection, reopened whenever the server closes it."""

    def __init__(self, base: str, headers: dict[str, str]):
        parts = urlsplit(base)
        self.host, self.port = parts.hostname, parts.port
        self.headers = {"Content-Type": "application/json", **headers}
        self.conn = Connection(self.host, self.port, timeout=30)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        data = json.dumps(body)
        for attempt in range(2):
            try:
                self.conn.request("POST", path, data, self.headers)
                response = self.conn.getresponse()
                return response.status, json.loads(response.read() or b"null")
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = Connection(self.host, self.port, timeout=30)
                if attempt:
                    raise
        raise RuntimeError("unreachable")


def closed_loop(base: str, headers: dict, path: str, body: Callable[[int], Any], *,
                concurrency: int, duration: float) -> dict[str, Any]:
    """Send as fast as `concurrency` clients can for `duration` seconds."""
    counts = [0] * concurrency
    errors = [0] * concurrency
    stop_at = time.perf_counter() + duration

    def run(index: int) -> None:
        client = Client(base, headers)
        n = 0
        while time.perf_counter() < stop_at:
            status, _ = client.post(path, body(index * 10_000_000 + n))
            n += 1
            if status in (200, 201):
                counts[index] += 1
            else:
                errors[index] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return {"ok": sum(counts), "errors": sum(errors), "rate": sum(counts) / elapsed}


def open_loop(base: str, headers: dict, path: str, body: Callable[[int], Any], *,
              rate: float, duration: float, concurrency: int = 16) -> list[dict[str, Any]]:
    """Send at a fixed rate (requests start on schedule); return one record per request."""
    total = int(rate * duration)
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.2
    wall = time.time() + 0.2
    next_index = iter(range(total))

    def run() -> None:
        client = Client(base, headers)
        for i in next_index:
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            status, answer = client.post(path, body(i))
            done = time.perf_counter()
            with lock:
                records.append({"status": status, "latency": done - sent,
                                "accepted_at": wall + (done - start),
                                "id": (answer or {}).get("id") if isinstance(answer, dict)
                                else None})

    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0-100) by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError("benchmark condition not reached")


def accept_batch(cluster: Cluster, key: str, n: int, message: Callable[[int], dict],
                 batch: int = 1000) -> tuple[float, list[str]]:
    """Create n messages through the batch API; return the first accept time and ids."""
    client = Client(cluster.web_url, {"Authorization": f"Bearer {key}"})
    ids: list[str] = []
    first = time.time()
    for offset in range(0, n, batch):
        items = [message(i) for i in range(offset, min(n, offset + batch))]
        status, answer = client.post("/api/v1/messages/batch", {"messages": items})
        if status != 201:
            raise RuntimeError(f"batch refused: {status} {answer}")
        ids.extend(m["id"] for m in answer["messages"])
    return first, ids
