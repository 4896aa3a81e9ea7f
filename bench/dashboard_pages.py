"""Benchmark: the dashboard's overview, messages list and executions list at a large history.

The history is generated inside PostgreSQL as the /metrics scenario does (bench.metrics_scrape:
n messages over the last day, n // 5 flow steps), with n // 50 executions the steps are spread
over. Each page is fetched through gunicorn as a signed-in staff user, 20 times after one
warm-up; the figure is the p95 (target: 300 ms each).
"""
from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from bench.harness import Cluster
from bench.metrics_scrape import _copy_rows, history

FETCHES = 20
PAGES = {"overview": "/dashboard/", "messages list": "/dashboard/messages/",
         "executions list": "/dashboard/executions/"}


def _executions(workspace: object, n: int) -> int:
    """Copy the history's execution n - 1 times (ids md5('execution' || i)) and spread the
    steps over all of them; return how many executions there are."""
    from django.db import connection

    from flows.models import Execution

    template = Execution.objects.get(workspace=workspace, flow__name="history")
    with connection.cursor() as cursor:
        _copy_rows(cursor, "flows_execution", template.pk, n - 1, {
            "id": "md5('execution' || i)::uuid",
            "status": "(ARRAY['completed','completed','failed','waiting'])[1 + i %% 4]",
            "started_at": "now() - make_interval(secs => i %% 86400)",
            # The completed and failed ones finished a few seconds after they started.
            "completed_at": "CASE WHEN i %% 4 < 3 THEN now() - make_interval(secs => i %% 86400)"
                            " + make_interval(secs => i %% 7) END"}, "executions")
        cursor.execute("UPDATE flows_step SET execution_id = md5('execution' || (1 + id %% %s))"
                       "::uuid", [n - 1])
        cursor.execute("ANALYZE flows_execution; ANALYZE flows_step")
    return Execution.objects.filter(workspace=workspace).count()


def _session_cookie(workspace_id: str) -> str:
    """Sign a staff user in (a session row gunicorn reads) and return the Cookie header."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    staff = get_user_model().objects.create_user("bench-staff", is_staff=True)
    client = Client()
    client.force_login(staff)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    return f"{settings.SESSION_COOKIE_NAME}={session}; dashboard_workspace={workspace_id}"


def dashboard(cluster: Cluster, n: int, row: Callable[..., None]) -> None:
    workspace, _ = cluster.workspace("dashboard")
    print(f"dashboard: pages with {n} messages, {n // 5} steps, {n // 50} executions",
          flush=True)
    messages, steps = history(n, "dashboard")
    executions = _executions(workspace, max(2, n // 50))
    cookie = _session_cookie(str(workspace.pk))

    def fetch(path: str) -> float:
        request = urllib.request.Request(f"{cluster.web_url}{path}?workspace={workspace.pk}",
                                         headers={"Cookie": cookie})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            body = response.read()
            assert response.status == 200 and b"<html" in body[:500].lower(), path
        return (time.perf_counter() - started) * 1000

    for name, path in PAGES.items():
        fetch(path)  # warm the worker's connection and caches
        timings = sorted(fetch(path) for _ in range(FETCHES))
        p95 = timings[int(0.95 * (len(timings) - 1))]
        row("dashboard", f"{name} p95 at {messages} messages, {steps} steps, "
            f"{executions} executions", p95, "ms", target="<= 300 ms",
            higher_is_better=False)
