"""Benchmark: a CSV of N contacts uploaded to POST /api/v1/contacts/imports through gunicorn
and imported by the workers; seconds from the upload to `completed`, and the workers' and
web processes' resident memory growth while it ran (a streamed import keeps both flat).

Baseline: the same N contacts inserted with bulk_create in the bench process (the write
alone, no parsing, matching or HTTP)."""
from __future__ import annotations

import csv
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from bench.harness import VAR, Cluster, rss_of_tree


def write_csv(path: Path, n: int, prefix: str) -> int:
    """Write n contact rows (a fifth with a national phone number) and return the size."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "first", "last", "mobile", "mail", "city", "sms ok"])
        for i in range(n):
            phone = f"030 {1000000 + i}" if i % 5 == 0 else f"+49 151 {10000000 + i}"
            writer.writerow([f"{prefix}{i}", f"First{i}", f"Last{i}", phone,
                             f"Person.{i}@Example.com", ("Berlin", "Hamburg", "Köln")[i % 3],
                             "yes" if i % 2 else "no"])
    return path.stat().st_size


class PeakRss:
    """Sample the resident memory of some process trees every 0.2 s; keep the peak."""

    def __init__(self, pids: list[int]) -> None:
        self.measure = lambda: sum(rss_of_tree(pid) for pid in pids)
        self.before = self.measure()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.measure())

    def stop(self) -> float:
        """Stop sampling; return the peak growth in MB."""
        self._stop.set()
        self._thread.join()
        return (self.peak - self.before) / 2**20


MAPPING = ('{"external_id": "id", "first_name": "first", "last_name": "last", '
           '"phone": "mobile", "email": "mail", "attributes.city": "city", '
           '"sms_subscribed": "sms ok"}')


def upload_and_wait(cluster: Cluster, key: str, path: Path) -> tuple[float, dict]:
    """Upload the file, wait for the import to finish; return the seconds and its answer."""
    headers = {"Authorization": f"Bearer {key}"}
    started = time.monotonic()
    with path.open("rb") as handle:
        answer = requests.post(f"{cluster.web_url}/api/v1/contacts/imports", headers=headers,
                               files={"file": (path.name, handle, "text/csv")},
                               data={"mapping": MAPPING, "default_region": "DE"}, timeout=300)
    answer.raise_for_status()
    url = f"{cluster.web_url}/api/v1/contacts/imports/{answer.json()['id']}"
    while True:
        body = requests.get(url, headers=headers, timeout=30).json()
        if body["status"] in ("completed", "failed"):
            return time.monotonic() - started, body
        time.sleep(0.25)


def contact_import(cluster: Cluster, n: int, row: Callable[..., None]) -> None:
    from core.models import Contact

    print(f"import: a CSV of {n} contacts through POST /api/v1/contacts/imports", flush=True)
    workspace, key = cluster.workspace("import")
    path = VAR / "import.csv"
    # A small import first, so the processes have loaded what an import uses (a first
    # request or task grows a process by what it imports, whatever the file's size).
    write_csv(path, 1000, "warm")
    upload_and_wait(cluster, key, path)
    size = write_csv(path, n, "c")
    watch = PeakRss([cluster.procs["worker"].pid, cluster.procs["web"].pid])
    seconds, body = upload_and_wait(cluster, key, path)
    growth = watch.stop()
    if body["status"] != "completed" or body["rows_created"] != n:  # noqa: PLR2004
        raise SystemExit(f"import did not complete as expected: {body}")
    started = time.monotonic()
    for offset in range(0, n, 5000):
        Contact.objects.bulk_create([
            Contact(workspace=workspace, external_id=f"b{i}", first_name=f"First{i}",
                    phone=f"+4915{20000000 + i}", email=f"b{i}@example.com",
                    attributes={"city": "Berlin"})
            for i in range(offset, min(n, offset + 5000))], batch_size=1000)
    baseline = time.monotonic() - started
    row("import", f"{n} CSV rows ({size / 2**20:.1f} MB) imported", seconds, "s", baseline,
        "bulk_create of the same rows in one process", "<= 60 s at 100,000",
        higher_is_better=False)
    row("import", "rows per second", n / seconds, "rows/s")
    row("import", "peak RSS growth, web + workers, during the import", growth, "MB",
        target="flat (< 50 MB)", higher_is_better=False)
    # The same file again: every row now matches a contact and updates it.
    watch = PeakRss([cluster.procs["worker"].pid, cluster.procs["web"].pid])
    seconds, body = upload_and_wait(cluster, key, path)
    growth = watch.stop()
    row("import", f"the same {n} rows again (all updates)", seconds, "s",
        higher_is_better=False)
    row("import", "peak RSS growth during the update import", growth, "MB",
        target="flat (< 50 MB)", higher_is_better=False)
    path.unlink()
