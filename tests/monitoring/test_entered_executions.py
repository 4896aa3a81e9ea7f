"""An execution that forks into parallel branches counts once wherever executions are
counted or listed: the overview (from the rows and from the hourly totals), the dashboard's
executions list, the /metrics gauge (a scan and the trigger-kept counters) and the hourly
totals themselves. Its branches are found on its page."""
from __future__ import annotations

import importlib
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone

from flows.engine import advance
from flows.models import Execution
from monitoring import counters
from monitoring.dashboard.selectors import overview
from monitoring.dashboard.selectors.executions import executions_list
from monitoring.dashboard.selectors.windows import window_for
from monitoring.metrics import RelayCollector
from monitoring.rollups import hour_start, hourly_rows
from tests.factories import ContactFactory, StaffUserFactory
from tests.flows.test_engine_end_to_end import make_flow, start

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the counters and hourly totals are "
    "PostgreSQL triggers; elsewhere the tables are counted")


def forked(api, workspace) -> Execution:
    """Walk, here, a flow that forks three ways (light nodes only) to its end; return the
    execution the contact entered."""
    nodes = [{"id": "up", "type": "update_contact", "data": {"attributes": {"seen": True}}},
             *({"id": n, "type": "update_contact", "data": {"attributes": {n: True}}}
               for n in "abc")]
    flow = make_flow(api, nodes, [{"id": n, "source": "up", "target": n} for n in "abc"])
    execution_id = start(api, flow["id"], ContactFactory(workspace=workspace))
    assert advance(execution_id=execution_id) == "waiting"  # at the fork
    branches = list(Execution.objects.filter(parent_id=execution_id))
    assert len(branches) == 3
    for branch in branches:
        assert advance(execution_id=str(branch.pk)) == "completed"
    root = Execution.objects.get(pk=execution_id)
    assert root.status == "completed"
    assert Execution.objects.filter(workspace=workspace).count() == 4
    return root


def figures(workspace, key: str) -> dict:
    """What the overview says of the workspace's executions in the range."""
    window = window_for(workspace, key)
    kpis = {k.key: k.value for k in overview.overview_kpis(workspace, window)}
    series = overview.execution_series(workspace, window)
    return {
        "executions": kpis["executions"],
        "success_rate": kpis["execution_success_rate"],
        "statuses": overview.status_counts(Execution, workspace, window, "started_at"),
        "started": sum(series.values["started"]),
        "flows": [(f.finished, f.completed, f.failed)
                  for f in overview.flow_figures(workspace, window)],
    }


ONCE = {"executions": "1", "success_rate": "100.0%", "statuses": [("completed", 1)],
        "started": 1, "flows": [(1, 1, 0)]}


@pytest.mark.parametrize("key", ["1h", "24h", "all"])
def test_a_fork_counts_as_one_execution_in_the_overview(api, workspace, key, monkeypatch):
    forked(api, workspace)
    assert figures(workspace, key) == ONCE
    with monkeypatch.context() as patched:  # counted from the rows, not the hourly totals
        patched.setattr(overview, "rollups_cover", lambda *args: False)
        assert figures(workspace, key) == ONCE


def test_the_executions_list_shows_the_entered_one_and_its_page_its_branches(
        api, workspace, client):
    root = forked(api, workspace)
    assert list(executions_list(workspace)) == [root]
    client.force_login(StaffUserFactory())
    listed = client.get("/dashboard/executions/", {"workspace": str(workspace.pk)})
    assert listed.status_code == 200
    assert listed.content.decode().count("data-execution=") == 1
    page = client.get(f"/dashboard/executions/{root.pk}/",
                      {"workspace": str(workspace.pk)}).content.decode()
    for branch in Execution.objects.filter(parent=root):
        assert f'data-execution="{branch.pk}"' in page
        branch_page = client.get(f"/dashboard/executions/{branch.pk}/",
                                 {"workspace": str(workspace.pk)}).content.decode()
        assert "Branch of" in branch_page and str(root.pk) in branch_page


def gauge(families: list) -> dict:
    return {(s.labels["workspace"], s.labels["status"]): s.value
            for family in families if family.name == "relay_executions"
            for s in family.samples}


def test_the_metrics_gauge_counts_a_fork_once(api, workspace):
    forked(api, workspace)
    collector = RelayCollector()
    assert gauge(collector.executions()) == {(str(workspace.pk), "completed"): 1}
    if counters.counters_enabled():
        assert gauge(collector.counted(counters.counters_read())) == {
            (str(workspace.pk), "completed"): 1}


def executions_counted(workspace) -> tuple[int, dict]:
    """The hourly totals' executions of the workspace and the /metrics counters'."""
    since = hour_start(timezone.now() - timedelta(hours=2))
    hourly = sum(row.n for row in hourly_rows(workspace.pk, "execution", since))
    metric = {status: n for (ws, status), n in counters.counters_read().plain[
        "executions"].items() if ws == str(workspace.pk)}
    return hourly, metric


@postgres_only
def test_the_hourly_totals_count_a_fork_once_through_compaction(api, workspace):
    forked(api, workspace)
    assert executions_counted(workspace) == (1, {"completed": 1})
    counters.counters_compact()
    assert executions_counted(workspace) == (1, {"completed": 1})
    # A branch deleted (a retention purge) or updated moves nothing either.
    Execution.objects.filter(workspace=workspace, root__isnull=False).update(
        status="failed")
    Execution.objects.filter(workspace=workspace, root__isnull=False).first().delete()
    assert executions_counted(workspace) == (1, {"completed": 1})


@postgres_only
def test_the_migration_counts_the_existing_rows_again_both_ways(api, workspace):
    migration = importlib.import_module(
        "monitoring.migrations.0013_entered_executions_counted")
    editor = SimpleNamespace(connection=connection)
    forked(api, workspace)
    migration.uninstall(None, editor)  # as 0007 and 0011 counted: every row
    assert executions_counted(workspace) == (4, {"completed": 4})
    migration.install(None, editor)
    assert executions_counted(workspace) == (1, {"completed": 1})
    Execution.objects.filter(workspace=workspace, root__isnull=False).update(status="failed")
    assert executions_counted(workspace) == (1, {"completed": 1})
