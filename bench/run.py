"""make bench: measure the service against its baselines, print one table, write JSON.

    python -m bench.run [--scenario NAME[,NAME]] [--n N] [--out var/bench/latest.json]

Scenarios: ingest, e2e, latency, schedule, memory, flows, cron, policy, events, metrics,
timeline, dashboard, journeys, import, broadcast, broadcast-throttled, lanes, segments.
Every figure is measured in the same run as its baseline, and printed with the ratio.
BENCH_DATABASE_NAME names the database the run drops and creates (default relay_bench).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import ROOT, Cluster, cpu_of_tree, rss_of_tree
from bench.load import accept_batch, closed_loop, open_loop, percentile, wait_for
from messaging.channels import SMS

ROWS: list[dict[str, Any]] = []


def row(scenario: str, metric: str, value: float, unit: str, baseline: float | None = None,
        baseline_name: str = "", target: str = "", higher_is_better: bool = True) -> None:
    ratio = None
    if baseline:
        ratio = value / baseline if higher_is_better else baseline / value if value else None
    ROWS.append({"scenario": scenario, "metric": metric, "value": round(value, 3),
                 "unit": unit, "baseline": None if baseline is None else round(baseline, 3),
                 "baseline_name": baseline_name, "ratio": None if ratio is None else round(
                     ratio, 3), "target": target})
    print(f"  {metric}: {value:.3f} {unit}" + (f" (baseline {baseline:.3f}, ratio "
                                               f"{ratio:.2f})" if ratio else ""), flush=True)


def sms(i: int, stub: str = "") -> dict[str, Any]:
    return {"channel": SMS, "to": "+14155552671", "body": f"bench {i}"}


# --- 1. ingest --------------------------------------------------------------------------------

def ingest(cluster: Cluster, n: int) -> float:
    print("ingest: POST /api/v1/messages through gunicorn", flush=True)
    _, key = cluster.workspace("ingest")
    headers = {"Authorization": f"Bearer {key}"}
    duration = max(5.0, n / 400)
    base = closed_loop(cluster.web_url, headers, "/api/v1/messages/validate", sms,
                       concurrency=8, duration=duration)
    real = closed_loop(cluster.web_url, headers, "/api/v1/messages", sms, concurrency=8,
                       duration=duration)
    row("ingest", "accepted per second", real["rate"], "req/s", base["rate"],
        "validate-only endpoint (no write)", "ratio >= 0.5")
    half = real["rate"] / 2
    records = open_loop(cluster.web_url, headers, "/api/v1/messages", sms, rate=half,
                        duration=duration)
    base_records = open_loop(cluster.web_url, headers, "/api/v1/messages/validate", sms,
                             rate=half, duration=duration)
    lat = [r["latency"] * 1000 for r in records if r["status"] == 201]
    base_lat = [r["latency"] * 1000 for r in base_records if r["status"] == 200]
    row("ingest", f"p50 latency at {half:.0f} req/s", percentile(lat, 50), "ms",
        percentile(base_lat, 50), "validate-only", higher_is_better=False)
    row("ingest", f"p99 latency at {half:.0f} req/s", percentile(lat, 99), "ms",
        percentile(base_lat, 99), "validate-only", "p99 <= 25 ms", higher_is_better=False)
    return real["rate"]


# --- 2. end-to-end throughput -----------------------------------------------------------------

def plain_celery_drain(cluster: Cluster, n: int) -> float:
    """Return tasks/second for plain Celery draining n no-op tasks with the same workers."""
    import redis

    client = redis.Redis.from_url(cluster.redis_url)
    client.delete("plain:done")
    from bench import plain_celery

    plain_celery.app.conf.broker_url = cluster.redis_url
    plain_celery._redis = client
    cluster.spawn("plain-worker", [sys.executable, "-m", "celery", "-A", "bench.plain_celery",
                                   "worker", "-Q", "plain", "--concurrency",
                                   str(cluster.workers), "-P", "prefork", "--without-gossip",
                                   "--without-mingle", "-l", "warning"])
    time.sleep(3)
    start = time.perf_counter()
    with plain_celery.app.producer_or_acquire() as producer:
        for _ in range(n):
            plain_celery.noop.apply_async(producer=producer)
    wait_for(lambda: int(client.get("plain:done") or 0) >= n, timeout=600, interval=0.05)
    elapsed = time.perf_counter() - start
    cluster.stop("plain-worker")
    return n / elapsed


def delivery_rate(cluster: Cluster, workspace: Any, key: str, n: int) -> float:
    """Send n SMS through the batch API; return SMS sent per second, accept to last sent."""
    from django.db.models import Max

    from messaging.models import Message

    first, _ = accept_batch(cluster, key, n, sms)
    sent = Message.objects.filter(workspace=workspace, status="sent", channel=SMS)
    wait_for(lambda: sent.count() >= n, timeout=1800, interval=0.5)
    last = sent.aggregate(last=Max("sent_at"))["last"].timestamp()
    return n / (last - first)


def e2e(cluster: Cluster, n: int) -> float:
    """Delivery throughput, first accept to last `sent` (ingest through the batch API
    included), against plain Celery publishing and draining n no-op tasks on the same
    Redis with the same number of worker processes, measured just before and just after
    (their mean: the machine's load drifts)."""
    print(f"e2e: {n} SMS accepted by the API -> stub provider -> sent persisted", flush=True)
    workspace, key = cluster.workspace("e2e")
    before = plain_celery_drain(cluster, n)
    cpu = _cpu(cluster)
    rate = delivery_rate(cluster, workspace, key, n)
    cpu = _cpu(cluster) - cpu
    after = plain_celery_drain(cluster, n)
    baseline = (before + after) / 2
    row("e2e", "delivery throughput", rate, "msg/s", baseline,
        f"plain Celery draining {n} no-op tasks, mean of {before:.0f} before and "
        f"{after:.0f} after", "ratio >= 1.0")
    row("e2e", "web + worker CPU per 1,000 SMS (accept to sent)", cpu / n * 1000, "s")
    stats = cluster.stub_stats()
    row("e2e", "duplicates at provider", stats["deduplicated"], "msgs", target="0")
    return rate


def _cpu(cluster: Cluster) -> float:
    """Return the CPU seconds gunicorn and the workers have spent so far (not the
    dispatcher's: it polls for due timers, which these sends have none of, so its CPU
    follows the run's length, not the messages)."""
    return sum(cpu_of_tree(cluster.procs[name].pid) for name in ("web", "worker"))


# --- 3. end-to-end latency --------------------------------------------------------------------

def latency(cluster: Cluster, n: int, capacity: float) -> None:
    rate = max(5.0, capacity / 2)
    duration = max(10.0, n / rate)
    print(f"latency: accept -> provider receipt at {rate:.0f} msg/s for {duration:.0f}s",
          flush=True)
    _, key = cluster.workspace("latency")
    cluster.stub_reset()
    records = open_loop(cluster.web_url, {"Authorization": f"Bearer {key}"},
                        "/api/v1/messages", sms, rate=rate, duration=duration)
    accepted = {r["id"]: r["accepted_at"] for r in records if r["status"] == 201}
    wait_for(lambda: cluster.stub_stats()["unique"] >= len(accepted), timeout=300)
    received = {r["key"]: r["at"] for r in cluster.stub_records()}
    lat = [(received[i] - t) * 1000 for i, t in accepted.items() if i in received]
    for q, target in ((50, ""), (99, "p99 <= 50 ms"), (99.9, "")):
        row("latency", f"p{q} accept->provider at {rate:.0f} msg/s", percentile(lat, q), "ms",
            target=target, higher_is_better=False)


# --- 4. schedule accuracy ---------------------------------------------------------------------

def schedule(cluster: Cluster, n: int) -> None:
    import redis
    from django.utils import timezone

    from messaging.delivery import creation

    spread_n = max(10, n // 10)
    print(f"schedule: {n} messages due at one instant, then {spread_n} spread", flush=True)
    workspace, _ = cluster.workspace("schedule")

    def run_phase(due_times: list) -> list[float]:
        """Schedule one message per due time; return each one's lateness at the provider."""
        cluster.stub_reset()
        messages = [creation.message_build(workspace=workspace, channel=SMS,
                                           to="+14155552671", content={"body": "timed"},
                                           send_at=due) for due in due_times]
        for offset in range(0, len(messages), 5000):
            creation.message_create_many(messages=messages[offset:offset + 5000])
        due_of = {str(m.id): m.scheduled_for.timestamp() for m in messages}
        last = max(due_times).timestamp()
        wait_for(lambda: cluster.stub_stats()["unique"] >= len(messages),
                 timeout=last - time.time() + 900, interval=0.5)
        return [r["at"] - due_of[r["key"]] for r in cluster.stub_records()]

    lead = 20 + n / 1000
    burst_at = timezone.now() + timedelta(seconds=lead)
    burst = run_phase([burst_at] * n)
    burst_dupes = cluster.stub_stats()["deduplicated"]
    window = 30.0
    start = timezone.now() + timedelta(seconds=10)
    spread = run_phase([start + timedelta(seconds=window * i / spread_n)
                        for i in range(spread_n)])
    duplicates = burst_dupes + cluster.stub_stats()["deduplicated"]
    # Baseline: plain Celery countdown tasks due at one instant (held in worker memory).
    client = redis.Redis.from_url(cluster.redis_url)
    client.delete("plain:lateness")
    from bench import plain_celery

    plain_celery.app.conf.broker_url = cluster.redis_url
    cluster.spawn("plain-worker", [sys.executable, "-m", "celery", "-A", "bench.plain_celery",
                                   "worker", "-Q", "plain", "--concurrency",
                                   str(cluster.workers), "-P", "prefork", "--without-gossip",
                                   "--without-mingle", "-l", "warning"])
    time.sleep(3)
    eta = time.time() + 10 + n / 2000
    with plain_celery.app.producer_or_acquire() as producer:
        for _ in range(n):
            plain_celery.timed.apply_async(args=[eta], countdown=eta - time.time(),
                                           producer=producer)
    wait_for(lambda: client.llen("plain:lateness") >= n, timeout=600, interval=0.5)
    plain = [float(x) for x in client.lrange("plain:lateness", 0, -1)]
    cluster.stop("plain-worker")
    for q in (50, 99):
        row("schedule", f"lateness p{q}, {n} due at once", percentile(burst, q), "s",
            percentile(plain, q), "plain Celery countdown",
            "p99 <= plain Celery's" if q == 99 else "",
            higher_is_better=False)
    row("schedule", f"lateness max, {n} due at once", max(burst), "s", max(plain),
        "plain Celery countdown", higher_is_better=False)
    for q in (50, 99):
        row("schedule", f"lateness p{q}, {spread_n} spread over {window:.0f}s",
            percentile(spread, q), "s", target="p99 <= 1 s" if q == 99 else "",
            higher_is_better=False)
    row("schedule", "lateness max, spread", max(spread), "s", higher_is_better=False)
    row("schedule", "duplicates", duplicates, "msgs", target="0")


# --- 5. memory with many pending --------------------------------------------------------------

def memory(cluster: Cluster, n: int) -> None:
    import redis
    from django.db import connection
    from django.utils import timezone

    from messaging.delivery import creation

    print(f"memory: {n} messages scheduled a day ahead", flush=True)
    workspace, _ = cluster.workspace("memory")
    worker = cluster.procs["worker"]
    before = rss_of_tree(worker.pid)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('messaging_message')")
        size_before = cursor.fetchone()[0]
    due = timezone.now() + timedelta(days=1)
    for offset in range(0, n, 5000):
        creation.message_create_many(messages=[creation.message_build(
            workspace=workspace, channel=SMS, to="+14155552671", content={"body": "tomorrow"},
            send_at=due) for _ in range(min(5000, n - offset))])
    time.sleep(10)  # the dispatcher and workers run meanwhile
    after = rss_of_tree(worker.pid)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('messaging_message')")
        size_after = cursor.fetchone()[0]
    m = max(1000, min(50_000, n // 20))
    client = redis.Redis.from_url(cluster.redis_url)
    from bench import plain_celery

    plain_celery.app.conf.broker_url = cluster.redis_url
    plain = cluster.spawn("plain-worker", [
        sys.executable, "-m", "celery", "-A", "bench.plain_celery", "worker", "-Q", "plain",
        "--concurrency", str(cluster.workers), "-P", "prefork", "--without-gossip",
        "--without-mingle", "-l", "warning"])
    time.sleep(4)
    plain_before = rss_of_tree(plain.pid)
    with plain_celery.app.producer_or_acquire() as producer:
        for _ in range(m):
            plain_celery.timed.apply_async(args=[time.time() + 86400], countdown=86400,
                                           producer=producer)
    wait_for(lambda: client.llen("plain") == 0, timeout=600, interval=1)
    time.sleep(5)
    plain_after = rss_of_tree(plain.pid)
    cluster.stop("plain-worker")
    row("memory", f"worker RSS growth with {n} pending", (after - before) / 2**20, "MB",
        target="< 50 MB", higher_is_better=False)
    row("memory", "database bytes per pending message", (size_after - size_before) / n, "B")
    row("memory", f"plain Celery RSS per pending countdown task ({m} tasks)",
        (plain_after - plain_before) / m / 1024, "KB/task", higher_is_better=False)


# --- 6. flow engine ---------------------------------------------------------------------------

def flows(cluster: Cluster, n: int) -> None:
    from statistics import median

    from django.db.models import F, Max, Min

    from core.models import Contact
    from flows import services
    from flows.models import BulkStart, Execution, Flow, Step

    print(f"flows: light and send flows for {n} contacts; bulk start of {2 * n}", flush=True)
    workspace, _ = cluster.workspace("flows")
    Contact.objects.bulk_create([Contact(workspace=workspace, external_id=f"c{i}",
                                         phone="+14155552671", email=f"c{i}@example.com",
                                         attributes={"vip": i % 2 == 0})
                                 for i in range(2 * n)], batch_size=5000)
    light_nodes = [{"id": f"n{i}", "type": "condition", "data": {"rules": {"all": [
        {"field": "contact.attributes.vip", "op": "exists"}]}}} for i in range(9)]
    light_nodes.append({"id": "n9", "type": "update_contact",
                        "data": {"attributes": {"done": True}}})
    light_edges = [{"id": f"e{i}", "source": f"n{i}", "target": f"n{i + 1}",
                    "sourceHandle": "true"} for i in range(9)]
    for i in range(9):
        light_nodes.append({"id": f"x{i}", "type": "end"})
        light_edges.append({"id": f"f{i}", "source": f"n{i}", "target": f"x{i}",
                            "sourceHandle": "false"})
    send_nodes = [{"id": "s1", "type": "send_sms", "data": {"body": "one"}},
                  {"id": "c1", "type": "condition", "data": {"rules": {"all": [
                      {"field": "contact.attributes.vip", "op": "eq", "value": True}]}}},
                  {"id": "s2", "type": "send_sms", "data": {"body": "vip"}},
                  {"id": "s3", "type": "send_email", "data": {"subject": "s", "text": "t"}},
                  {"id": "u", "type": "update_contact", "data": {"attributes": {"x": 1}}}]
    send_edges = [{"id": "a", "source": "s1", "target": "c1"},
                  {"id": "b", "source": "c1", "target": "s2", "sourceHandle": "true"},
                  {"id": "c", "source": "c1", "target": "s3", "sourceHandle": "false"},
                  {"id": "d", "source": "s2", "target": "u"},
                  {"id": "e", "source": "s3", "target": "u"}]
    results = {}
    contacts = list(Contact.objects.filter(workspace=workspace).values_list("pk", flat=True))
    for name, nodes_, edges_ in (("light 10-node", light_nodes, light_edges),
                                 ("5-node with sends", send_nodes, send_edges)):
        flow = Flow.objects.create(workspace=workspace, name=name, nodes=nodes_, edges=edges_,
                                   trigger={"type": "manual"})
        services.flow_set_status(flow=flow, status=Flow.Status.ACTIVE)
        start = time.time()
        job = services.bulk_start_create(flow=flow, contact_ids=[str(c) for c in contacts[:n]],
                                         rules=None, data={})
        done = Execution.objects.filter(flow=flow, status="completed")
        wait_for(lambda f=flow, d=done: d.count() >= n, timeout=1800, interval=0.5)
        steps = Step.objects.filter(execution__flow=flow)
        last = steps.aggregate(last=Max("completed_at"))["last"].timestamp()
        transitions = steps.count()
        results[name] = transitions / (last - start)
        row("flows", f"{name}: node transitions per second", results[name], "steps/s",
            target=">= 1000/s" if name.startswith("light") else ">= 500/s")
        if name.startswith("light"):
            durations = [d.total_seconds() * 1000 for d in steps.filter(
                node_type__in=["condition", "update_contact", "end"]).annotate(
                d=F("completed_at") - F("started_at")).values_list("d", flat=True)]
            row("flows", "light node p50 (evaluated -> step written)", median(durations), "ms",
                target="p50 <= 5 ms", higher_is_better=False)
        del job
    flow = Flow.objects.create(workspace=workspace, name="bulk", nodes=[
        {"id": "e", "type": "end"}], edges=[], trigger={"type": "manual"})
    services.flow_set_status(flow=flow, status=Flow.Status.ACTIVE)
    started = time.time()
    job = services.bulk_start_create(flow=flow, contact_ids=None, rules=None, data={})
    wait_for(lambda: BulkStart.objects.get(pk=job.pk).status == "completed", timeout=1800)
    job = BulkStart.objects.get(pk=job.pk)
    first = Execution.objects.filter(flow=flow).aggregate(first=Min("started_at"))["first"]
    row("flows", f"bulk start of {job.started} contacts", job.finished_at.timestamp() - started,
        "s")
    del first


def events(cluster: Cluster, n: int) -> None:
    """The cost of events: the same e2e delivery with one endpoint subscribed to "*" (two
    events per SMS: message.queued and message.sent) against a workspace without one."""
    print(f"events: {n} SMS without endpoints, then {n} with one endpoint on *", flush=True)
    from django.db.models import Max, Min

    from messaging.models import Message, WebhookEndpoint

    quiet, quiet_key = cluster.workspace("events-off")
    baseline = delivery_rate(cluster, quiet, quiet_key, n)
    loud, loud_key = cluster.workspace("events-on")
    WebhookEndpoint.objects.create(workspace=loud, url=f"{cluster.stub_url}/events",
                                   events=["*"])
    rate = delivery_rate(cluster, loud, loud_key, n)
    row("events", "SMS delivery throughput, one endpoint on *", rate, "msg/s", baseline,
        "same run, no endpoint", "ratio >= 0.8")
    deliveries = Message.objects.filter(workspace=loud, source="event")
    wait_for(lambda: deliveries.filter(status="sent").count() >= 2 * n, timeout=1800,
             interval=0.5)
    span = deliveries.aggregate(first=Min("created_at"), last=Max("sent_at"))
    row("events", "events delivered per second", 2 * n / (
        span["last"] - span["first"]).total_seconds(), "events/s")
    row("events", "events not delivered", float(deliveries.exclude(status="sent").count()),
        "events", target="0")


SCENARIOS = ("ingest", "e2e", "latency", "schedule", "memory", "flows", "cron", "policy",
             "events", "metrics", "timeline", "dashboard", "journeys", "import", "broadcast",
             "broadcast-throttled", "lanes", "segments")
DEFAULT_N = {"ingest": 4000, "e2e": 10000, "latency": 3000, "schedule": 10000,
             "memory": 1_000_000, "flows": 5000, "cron": 1000, "policy": 10000,
             "events": 5000, "metrics": 2_000_000, "timeline": 4000, "dashboard": 10_000_000,
             "journeys": 10000, "import": 100_000, "broadcast": 100_000,
             "broadcast-throttled": 100_000, "lanes": 20000,
             "segments": 100_000}


def machine() -> dict[str, Any]:
    import os

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def table() -> str:
    lines = ["| scenario | metric | value | baseline | ratio | target |",
             "|---|---|---|---|---|---|"]
    for r in ROWS:
        base = "" if r["baseline"] is None else f"{r['baseline']} ({r['baseline_name']})"
        ratio = "" if r["ratio"] is None else f"{r['ratio']}x"
        lines.append(f"| {r['scenario']} | {r['metric']} | {r['value']} {r['unit']} | {base} |"
                     f" {ratio} | {r['target']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default=",".join(SCENARIOS))
    parser.add_argument("--n", type=int, default=0, help="size (0: each scenario's default)")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "latest.json"))
    parser.add_argument("--capacity", type=float, default=0.0,
                        help="messages/s the latency scenario takes as capacity (else measured)")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.scenario.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        sys.exit(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from {SCENARIOS}")
    # The events scenario's endpoint is the local stand-in: open loopback to the SSRF guard.
    env = {"SSRF_ALLOWED_NETWORKS": "127.0.0.0/8"} if "events" in chosen else {}
    if "metrics" in chosen:
        from bench.metrics_scrape import TOKEN

        env["METRICS_TOKEN"] = TOKEN
    with Cluster(name=os.environ.get("BENCH_DATABASE_NAME", "relay_bench"),
                 env=env) as cluster:
        cluster.start_redis()
        cluster.reset_database()
        cluster.setup_django()
        cluster.start_stub()
        cluster.start_web()
        cluster.start_worker()
        cluster.start_dispatcher()
        time.sleep(3)
        # Single POSTs are capped by ingest as well as delivery: latency runs at half of
        # the smaller of the two.
        capacity = args.capacity or None
        ingest_rate = None
        for name in chosen:
            size = args.n or DEFAULT_N[name]
            cluster.stub_reset()
            if name == "e2e":
                capacity = capacity or e2e(cluster, size)
            elif name == "ingest":
                ingest_rate = ingest(cluster, size)
            elif name == "latency":
                capacity = capacity or e2e(cluster, min(size, 5000))
                latency(cluster, size, min(capacity, ingest_rate or capacity))
            elif name == "cron":
                from bench.cron import cron

                cron(cluster, size, row)
            elif name == "metrics":
                from bench.metrics_scrape import metrics

                metrics(cluster, size, row)
            elif name == "policy":
                from bench.policy import policy

                policy(cluster, size, row)
            elif name == "dashboard":
                from bench.dashboard_pages import dashboard

                dashboard(cluster, size, row)
            elif name == "broadcast":
                from bench.broadcast import broadcast

                broadcast(cluster, size, row, delivery_rate)
            elif name == "broadcast-throttled":
                from bench.broadcast import broadcast_throttled

                broadcast_throttled(cluster, size, row)
            elif name == "import":
                from bench.imports import contact_import

                contact_import(cluster, size, row)
            elif name == "timeline":
                from bench.timeline import timeline

                timeline(cluster, size, row)
            elif name == "journeys":
                from bench.journeys import journeys

                journeys(cluster, size, row)
            elif name == "lanes":
                from bench.lanes import lanes

                lanes(cluster, size, row)
            elif name == "segments":
                from bench.segments import segments

                segments(cluster, size, row)
            else:
                globals()[name](cluster, size)
    result = {"machine": machine(), "rows": ROWS, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                       time.gmtime())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print()
    print(table())
    print(f"\nmachine: {result['machine']}\nJSON: {args.out}")


if __name__ == "__main__":
    main()
