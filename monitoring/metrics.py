"""GET /metrics for Prometheus, read from PostgreSQL and Redis at scrape time.

The numbers are not counted in process memory: a custom collector queries the database (and
the broker and Redis) when Prometheus scrapes, so any number of web and worker processes is
counted exactly once and a restart loses nothing. A few aggregate queries per scrape; scrape
every 30-60 s. Purging history (purge_history) lowers the database-derived counters, which
Prometheus treats as a counter reset.

Access: a bearer token (METRICS_TOKEN) or a client address inside METRICS_ALLOWED_NETWORKS;
with neither configured the endpoint answers 403. Scrape config:
https://prometheus.io/docs/prometheus/latest/configuration/configuration/#scrape_config
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import (
    Count,
    DurationField,
    Expression,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from core import signin
from core.models import DeadLetter, Workspace
from flows.models import Execution, Step
from messaging import ratelimit
from messaging.models import DeliveryAttempt, Message
from monitoring import counters, health, selectors
from monitoring.models import AlertEvent, HistoryPurge

logger = logging.getLogger(__name__)

# Seconds from when a message was meant to go (scheduled_for, else created) to sent_at.
DELIVERY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
# Seconds a step took; sends and delays wait, so the buckets reach a day.
STEP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0)


DELIVERY_FAMILY = ("relay_message_delivery_seconds",
                   "Seconds from a message's intended send time to sent_at.")
STEP_FAMILY = ("relay_step_duration_seconds", "Seconds a finished flow step took.")
# (kind, name, help, labels) of the counted families, in the order counted() yields them.
COUNTED_FAMILIES: tuple[tuple[Any, str, str, list[str]], ...] = (
    (GaugeMetricFamily, "relay_messages", "Messages by workspace, channel, status.",
     ["workspace", "channel", "status"]),
    (CounterMetricFamily, "relay_delivery_attempts", "Provider calls by channel and outcome.",
     ["channel", "outcome"]),
    (GaugeMetricFamily, "relay_executions", "Flow executions by status.",
     ["workspace", "status"]),
)


def _family(kind: type[GaugeMetricFamily] | type[CounterMetricFamily], name: str,
            help_text: str, labels: list[str]) -> GaugeMetricFamily | CounterMetricFamily:
    return kind(name, help_text, labels=labels)


def _histogram(queryset: QuerySet, group: str, duration: ExpressionWrapper,
               buckets: Iterable[float]) -> list[tuple[str, list[tuple[str, float]], float]]:
    """Return (group value, cumulative buckets, sum of seconds) per group, in one query."""
    buckets = tuple(buckets)
    counts = {f"le_{index}": Count("pk", filter=Q(duration__lte=timedelta(seconds=bound)))
              for index, bound in enumerate(buckets)}
    rows = queryset.annotate(duration=duration).values(group).annotate(
        total=Count("pk"), seconds=Sum("duration"), **counts).order_by(group)
    result = []
    for row in rows:
        cumulative = [(_bound(bound), float(row[f"le_{index}"]))
                      for index, bound in enumerate(buckets)]
        cumulative.append(("+Inf", float(row["total"])))
        seconds = row["seconds"]
        total = seconds.total_seconds() if isinstance(seconds, timedelta) else float(
            seconds or 0) / 1_000_000  # SQLite sums durations as microseconds
        result.append((row[group], cumulative, total))
    return result


def _bound(value: float) -> str:
    return repr(float(value))


def _since_start(end: str, start: F | Expression) -> ExpressionWrapper:
    return ExpressionWrapper(F(end) - start, output_field=DurationField())


class RelayCollector:
    """Yield every metric family from the database, the broker and Redis at scrape time."""

    def collect(self) -> Iterator[Metric]:
        """Yield each family; one that fails to read is logged and left out, not fatal."""
        try:
            counts = counters.counters_read()
        except Exception:
            logger.exception("metrics: reading the counters failed; scanning the tables")
            counts = None
        history: list[Callable[[], Iterable[Metric]]] = [
            self.messages, self.delivery_latency, self.attempts, self.executions,
            self.step_latency]
        if counts is not None:  # PostgreSQL: totals kept by triggers, not a scan per scrape
            history = [lambda c=counts: self.counted(c)]  # type: ignore[misc]
        parts: list[Callable[[], Iterable[Metric]]] = [
            self.workspaces, *history, self.dead_letters, self.queues, self.dispatcher_lag,
            self.deferrals, self.alerts, self.signins, self.history_purge]
        for part in parts:
            try:
                yield from list(part())
            except Exception:  # a scrape reports what it can; the log says what it could not
                logger.exception("metrics: %s failed", getattr(part, "__name__", part))

    def counted(self, counts: counters.Counts) -> Iterable[Metric]:
        """Yield the history's families from the trigger-kept totals (monitoring.counters),
        the same families and labels the table scans below produce."""
        messages, attempts, executions = (_family(*spec) for spec in COUNTED_FAMILIES)
        for family, metric in ((messages, "messages"), (attempts, "attempts"),
                               (executions, "executions")):
            for labels, n in sorted(counts.plain[metric].items()):
                family.add_metric(list(labels), n)
        delivery = HistogramMetricFamily(*DELIVERY_FAMILY, labels=["channel"])
        steps = HistogramMetricFamily(*STEP_FAMILY, labels=["node_type"])
        for histogram_family, metric, bounds in ((delivery, "delivery", DELIVERY_BUCKETS),
                                                 (steps, "steps", STEP_BUCKETS)):
            for label, histogram in sorted(counts.histograms[metric].items()):
                histogram_family.add_metric([label], [(_bound(b) if b != float("inf") else "+Inf",
                                             float(n)) for b, n in histogram.cumulative(bounds)],
                                  histogram.seconds)
        return [messages, delivery, attempts, executions, steps]

    def workspaces(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("relay_workspace_info", "Workspaces (join on workspace).",
                                 labels=["workspace", "slug"])
        for pk, slug in Workspace.objects.values_list("pk", "slug"):
            info.add_metric([str(pk), slug], 1)
        return [info]

    def messages(self) -> Iterable[Metric]:
        family = _family(*COUNTED_FAMILIES[0])
        rows = Message.objects.values("workspace_id", "channel", "status").annotate(
            n=Count("pk")).order_by()
        for row in rows:
            family.add_metric([str(row["workspace_id"]), row["channel"], row["status"]],
                              row["n"])
        return [family]

    def delivery_latency(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(*DELIVERY_FAMILY, labels=["channel"])
        sent = Message.objects.filter(sent_at__isnull=False)
        duration = _since_start("sent_at", Coalesce("scheduled_for", "created_at"))
        for channel, buckets, seconds in _histogram(sent, "channel", duration,
                                                    DELIVERY_BUCKETS):
            family.add_metric([channel], buckets, seconds)
        return [family]

    def attempts(self) -> Iterable[Metric]:
        family = _family(*COUNTED_FAMILIES[1])
        rows = DeliveryAttempt.objects.values("message__channel", "outcome").annotate(
            n=Count("pk")).order_by()
        for row in rows:
            family.add_metric([row["message__channel"], row["outcome"] or "running"], row["n"])
        return [family]

    def dead_letters(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("relay_dead_letters", "Dead letters by kind and status.",
                                   labels=["workspace", "kind", "status"])
        rows = DeadLetter.objects.values("workspace_id", "kind", "status").annotate(
            n=Count("pk")).order_by()
        for row in rows:
            family.add_metric([str(row["workspace_id"]), row["kind"], row["status"]], row["n"])
        return [family]

    def executions(self) -> Iterable[Metric]:
        family = _family(*COUNTED_FAMILIES[2])
        rows = Execution.objects.entered().values("workspace_id", "status").annotate(
            n=Count("pk")).order_by()
        for row in rows:
            family.add_metric([str(row["workspace_id"]), row["status"]], row["n"])
        return [family]

    def step_latency(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(*STEP_FAMILY, labels=["node_type"])
        finished = Step.objects.filter(completed_at__isnull=False)
        duration = _since_start("completed_at", F("started_at"))
        for node_type, buckets, seconds in _histogram(finished, "node_type", duration,
                                                      STEP_BUCKETS):
            family.add_metric([node_type], buckets, seconds)
        return [family]

    def queues(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("relay_queue_depth", "Tasks waiting in the broker.",
                                  labels=["queue"])
        for queue, size in selectors.broker_depths().items():
            if size is not None:
                depth.add_metric([queue], size)
        heartbeat = GaugeMetricFamily("relay_worker_heartbeat_age_seconds",
                                      "Seconds since a worker consumed the queue's heartbeat.",
                                      labels=["queue"])
        for queue, age in health.heartbeat_ages().items():
            if age is not None:
                heartbeat.add_metric([queue], age)
        return [depth, heartbeat]

    def dispatcher_lag(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("relay_dispatcher_lag_seconds",
                                  "How late the oldest due, undispatched timer is.",
                                  value=selectors.dispatcher_lag_seconds())]

    def deferrals(self) -> Iterable[Metric]:
        family = CounterMetricFamily("relay_rate_limit_deferrals",
                                     "Sends deferred by a workspace's rate limit.",
                                     labels=["workspace", "channel"])
        # One small HGETALL per workspace (through ratelimit's public API, which owns the keys).
        for pk in Workspace.objects.values_list("pk", flat=True):
            for channel, count in sorted(ratelimit.deferral_counts(str(pk)).items()):
                family.add_metric([str(pk), channel], count)
        return [family]

    def alerts(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("relay_alerts_firing", "Alert rules currently firing.",
                                   labels=["workspace"])
        rows = AlertEvent.objects.filter(resolved_at__isnull=True).values(
            "workspace_id").annotate(n=Count("pk")).order_by()
        for row in rows:
            family.add_metric([str(row["workspace_id"])], row["n"])
        return [family]


    def history_purge(self) -> Iterable[Metric]:
        """The last finished retention purge: when, whether it completed, what it deleted."""
        last = HistoryPurge.objects.filter(finished_at__isnull=False).first()
        if last is None or last.finished_at is None:
            return []
        finished = GaugeMetricFamily(
            "relay_history_purge_last_run_timestamp_seconds",
            "When the last history purge (retention) finished, Unix time.")
        finished.add_metric([], last.finished_at.timestamp())
        ok = GaugeMetricFamily("relay_history_purge_last_ok",
                               "1 when the last history purge completed without an error.")
        ok.add_metric([], 1.0 if last.ok else 0.0)
        complete = GaugeMetricFamily(
            "relay_history_purge_last_complete",
            "1 when the last history purge deleted everything due (0: it stopped at "
            "RETENTION_RUN_SECONDS and the next run goes on).")
        complete.add_metric([], 1.0 if last.complete else 0.0)
        deleted = GaugeMetricFamily("relay_history_purge_last_deleted_rows",
                                    "Rows of each kind the last history purge deleted.",
                                    labels=["kind"])
        for kind, count in sorted(last.deleted.items()):
            deleted.add_metric([kind], count)
        return [finished, ok, complete, deleted]

    def signins(self) -> Iterable[Metric]:
        """Failed sign-ins and lockouts per form (login, admin, password), counted in Redis
        by every web process (core.signin)."""
        families = {
            "failures": CounterMetricFamily(
                "relay_login_failures", "Failed password checks by form.", labels=["form"]),
            "lockouts": CounterMetricFamily(
                "relay_login_lockouts", "Usernames or addresses locked out, by form.",
                labels=["form"]),
        }
        counts = signin.counts()
        for form in ("login", "admin", "password"):
            for field, family in families.items():
                family.add_metric([form], counts.get((field, form), 0))
        return list(families.values())


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(RelayCollector())


def _client_allowed(request: HttpRequest) -> bool:
    networks = settings.METRICS_ALLOWED_NETWORKS
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


def _token_ok(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Answer the Prometheus text format to a bearer-token holder or an allowed network."""
    if not settings.METRICS_TOKEN and not settings.METRICS_ALLOWED_NETWORKS:
        return HttpResponse("metrics are disabled: set METRICS_TOKEN or "
                            "METRICS_ALLOWED_NETWORKS\n", status=403, content_type="text/plain")
    if not (_client_allowed(request) or _token_ok(request)):
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
