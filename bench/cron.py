"""Benchmark 7: N schedules due in the same minute, two beat processes; fire lateness and
duplicates. Lateness is when the run was inserted (fired_at) minus its occurrence time."""
from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from bench.harness import Cluster


def cron(cluster: Cluster, n: int, row: Callable[..., None]) -> None:
    from django.utils import timezone

    from core.models import Contact
    from flows import schedules, services
    from flows.models import Execution, Flow, ScheduleRun

    print(f"cron: {n} schedules due in the same minute, two beat processes", flush=True)
    workspace, _ = cluster.workspace("cron")
    flow = Flow.objects.create(workspace=workspace, name="cron", trigger={"type": "schedule"},
                               nodes=[{"id": "u", "type": "update_contact",
                                       "data": {"attributes": {"ran": True}}}], edges=[])
    services.flow_set_status(flow=flow, status=Flow.Status.ACTIVE)
    contacts = Contact.objects.bulk_create([Contact(workspace=workspace, external_id=f"k{i}")
                                            for i in range(n)], batch_size=5000)
    # The first minute boundary at least 40 s away (creating N schedules takes a while).
    target = (timezone.now() + timedelta(seconds=100)).replace(second=0, microsecond=0)
    expression = f"{target.minute} {target.hour} * * *"
    for contact in contacts:
        schedules.schedule_create(workspace=workspace, flow=flow, cron=expression,
                                  timezone="UTC", audience={"contact_id": str(contact.pk)})
    for name in ("beat-1", "beat-2"):
        cluster.spawn(name, [sys.executable, "-m", "celery", "-A", "config", "beat", "-l",
                             "warning", "-s", str(cluster_var(cluster) / f"{name}.db")])
    wait = (target - timezone.now()).total_seconds() + 90
    deadline = time.monotonic() + wait + 300
    runs = ScheduleRun.objects.filter(schedule__flow=flow, occurrence_at=target)
    while time.monotonic() < deadline and runs.count() < n:
        time.sleep(2)
    time.sleep(5)
    lateness = sorted((r.fired_at - r.occurrence_at).total_seconds() for r in runs)
    # fired_at is the firing pass's clock; the bulk start's created_at is its insert, which
    # commits with the run: the later of the two is when the occurrence really started.
    started = sorted((r.bulk_start.created_at - r.occurrence_at).total_seconds()
                     for r in runs.select_related("bulk_start") if r.bulk_start)
    per_schedule = Counter(runs.values_list("schedule_id", flat=True))
    executions = Counter(Execution.objects.filter(flow=flow).values_list("contact_id",
                                                                        flat=True))
    cluster.stop("beat-1")
    cluster.stop("beat-2")
    from bench.load import percentile

    row("cron", f"fire lateness p50, {n} schedules", percentile(lateness, 50), "s",
        higher_is_better=False)
    row("cron", f"fire lateness p99, {n} schedules", percentile(lateness, 99), "s",
        target="p99 < 1 s", higher_is_better=False)
    row("cron", f"run started (bulk start inserted) lateness p99, {n} schedules",
        percentile(started, 99), "s", target="p99 < 1 s", higher_is_better=False)
    row("cron", "occurrences fired", len(lateness), "runs", target=str(n))
    row("cron", "duplicate runs or executions",
        sum(c - 1 for c in per_schedule.values()) + sum(c - 1 for c in executions.values()),
        "", target="0")


def cluster_var(cluster: Cluster):
    from bench.harness import VAR

    return VAR
