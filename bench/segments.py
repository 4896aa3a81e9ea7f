"""Benchmark: a segment's live count and preview (README.md, "Segments") over N contacts
of one workspace, in this process against the run's PostgreSQL: the preview as it is (the
rules compiled to SQL, flows.rules_sql) against the same rules evaluated in Python on every
contact, read SCAN_BATCH at a time (how the preview counted before), alternating run by run
so both see the same load; medians compared. Two rules: one the database decides alone, and
one with a number it narrows to and Python decides."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.harness import Cluster

RUNS = 5
DECIDED = {"all": [{"field": "contact.attributes.city", "op": "eq", "value": "Berlin"},
                   {"field": "contact.consent.sms", "op": "eq", "value": True}]}
NARROWED = {"all": [{"field": "contact.attributes.city", "op": "eq", "value": "Berlin"},
                    {"field": "contact.attributes.age", "op": "gte", "value": 30}]}


def segments(cluster: Cluster, n: int, row: Callable[..., None]) -> None:
    from audiences.models import Segment
    from audiences.segments import segment_preview

    print(f"segments: preview of a segment over {n} contacts, in SQL and in Python",
          flush=True)
    workspace, _ = cluster.workspace("segments")
    _contacts_make(workspace, n)
    for label, rules in (("decided in SQL", DECIDED), ("narrowed in SQL", NARROWED)):
        segment = Segment.objects.create(workspace=workspace, name=label, rules=rules)
        spent: dict[bool, list[float]] = {True: [], False: []}
        counts: dict[bool, int] = {}
        for index in range(RUNS * 2):
            compiled = index % 2 == 0
            started = time.perf_counter()
            counts[compiled] = (segment_preview(segment=segment)[0] if compiled
                                else _evaluated(workspace, rules))
            spent[compiled].append(time.perf_counter() - started)
        assert counts[True] == counts[False], counts
        ms = {key: statistics.median(values) * 1000 for key, values in spent.items()}
        row("segments", f"preview of {n} contacts, rules {label} ({counts[True]} match)",
            ms[True], "ms", ms[False], "the same rules evaluated in Python per contact",
            "ratio >= 1", higher_is_better=False)


def _contacts_make(workspace: Any, n: int) -> None:
    from core.models import Contact

    for offset in range(0, n, 5000):
        Contact.objects.bulk_create([
            Contact(workspace=workspace, external_id=f"s{i}", first_name=f"F{i}",
                    phone=f"+49151{10000000 + i}", sms_subscribed=i % 2 == 0,
                    attributes={"city": ("Berlin", "Paris", "Rome")[i % 3], "age": i % 90})
            for i in range(offset, min(n, offset + 5000))], batch_size=1000)


def _evaluated(workspace: Any, rules: dict) -> int:
    """Return how many contacts the rules match, evaluating them on every contact."""
    from audiences.segments import SCAN_BATCH
    from flows.rules import evaluate
    from flows.services import audience, audience_context

    contacts = audience(workspace=workspace, contact_ids=None)
    return sum(1 for contact in contacts.iterator(chunk_size=SCAN_BATCH)
               if evaluate(rules, audience_context(contact)))
