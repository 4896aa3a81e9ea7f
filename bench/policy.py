"""Benchmark 8: what the recipients' rules cost. N marketing SMS to N contacts, end to end,
for a workspace without rules and, in the same run, one with quiet hours (a window that does
not cover now: every message is evaluated and sent), a frequency cap (high enough never to
defer, counted for every message) and a 100,000-row suppression list (no recipient on it)."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import Cluster

SUPPRESSED_ROWS = 100_000
# Area codes of each round's recipients, and of the suppressed addresses (none of them).
AREAS = ("415", "212", "312", "617")
SUPPRESSED_AREA = "718"


def phone(area: str, i: int) -> str:
    """Return a distinct valid North American number (E.164) per (area, i < 800,000)."""
    return f"+1{area}{200 + i // 10_000}{i % 10_000:04d}"


def rules(now: datetime) -> dict[str, Any]:
    """Return quiet hours four to six hours from now (never now), and a cap never reached."""
    start, end = now + timedelta(hours=4), now + timedelta(hours=6)
    return {"quiet_hours": {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")},
            "frequency_caps": {"sms": "1000/day"}}


def prepare(cluster: Cluster, name: str, n: int, area: str,
            settings: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    """Create a workspace with n contacts (and, with rules, the suppression list); return
    its API key and the contacts' ids."""
    from core.models import Contact
    from messaging.models import Suppression

    workspace, key = cluster.workspace(name)
    if settings:
        workspace.settings = {**workspace.settings, **settings}
        workspace.save()
        Suppression.objects.bulk_create([
            Suppression(workspace=workspace, channel="sms", address=phone(SUPPRESSED_AREA, i),
                        reason=Suppression.Reason.MANUAL, source="bench")
            for i in range(SUPPRESSED_ROWS)], batch_size=5000)
    contacts = Contact.objects.bulk_create([
        Contact(workspace=workspace, external_id=f"{name}-{i}", phone=phone(area, i))
        for i in range(n)], batch_size=5000)
    return key, [str(c.pk) for c in contacts]


def deliver(cluster: Cluster, name: str, key: str, ids: list[str]) -> float:
    """Send a marketing SMS to each contact; return messages/second from the first accept
    to the last sent."""
    from django.db.models import Max

    from bench.load import accept_batch, wait_for
    from messaging.models import Message

    n = len(ids)
    first, _ = accept_batch(cluster, key, n, lambda i: {
        "channel": "sms", "contact_id": ids[i], "body": f"offer {i}", "category": "marketing"})
    sent = Message.objects.filter(workspace__name=name, status="sent")
    wait_for(lambda: sent.count() >= n, timeout=1800, interval=0.5)
    last = sent.aggregate(last=Max("sent_at"))["last"].timestamp()
    return n / (last - first)


def decide_cost(workspace_name: str, batch: int = 50) -> float:
    """Return the milliseconds policy.decide_all takes per message, over the workspace's
    sent messages loaded in delivery-sized batches as the pipeline loads them (their caps
    were counted when they were sent, so this is the re-evaluation's cost)."""
    from messaging.models import Message
    from messaging.recipients import policy as rules_

    ids = list(Message.objects.filter(workspace__name=workspace_name)
               .values_list("pk", flat=True))
    spent = 0.0
    for offset in range(0, len(ids), batch):
        messages = list(Message.objects.select_related("workspace", "contact")
                        .filter(pk__in=ids[offset:offset + batch]))
        started = time.perf_counter()
        rules_.decide_all(messages)
        spent += time.perf_counter() - started
    return spent * 1000 / max(1, len(ids))


def policy(cluster: Cluster, n: int, row: Callable[..., None]) -> None:
    from django.db import connection

    print(f"policy: {n} marketing SMS without rules and with quiet hours, a cap and "
          f"{SUPPRESSED_ROWS} suppressed addresses, in the order none, rules, rules, none "
          f"(after a warm-up)", flush=True)
    order = ("none", "rules", "rules", "none")
    # Every workspace is made before anything is measured, and the tables analysed as a
    # long-lived database's would be (the 100,000 rows are not inserted mid-run).
    prepared = [prepare(cluster, f"policy-{kind}-{i}", n, AREAS[i],
                        rules(datetime.now(UTC)) if kind == "rules" else None)
                for i, kind in enumerate(order)]
    warm = prepare(cluster, "policy-warm-up", min(n, 1000), SUPPRESSED_AREA)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    deliver(cluster, "policy-warm-up", *warm)
    # ABBA order: a machine getting slower or faster during the run weighs on both sides.
    runs: dict[str, list[float]] = {"none": [], "rules": []}
    for i, kind in enumerate(order):
        runs[kind].append(deliver(cluster, f"policy-{kind}-{i}", *prepared[i]))
        print(f"  {kind}: {runs[kind][-1]:.1f} msg/s", flush=True)
        time.sleep(2)
    plain, ruled = sum(runs["none"]) / 2, sum(runs["rules"]) / 2
    row("policy", "delivery throughput with rules (mean of 2)", ruled, "msg/s", plain,
        f"the same {n} sends without rules (mean of 2)", "ratio >= 0.9")
    row("policy", "decide_all per message with rules (in process)",
        decide_cost("policy-rules-1"), "ms", decide_cost("policy-none-0"),
        "the same without rules", higher_is_better=False)
    row("policy", "duplicates at provider", cluster.stub_stats()["deduplicated"], "msgs",
        target="0")
