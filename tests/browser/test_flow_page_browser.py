"""The dashboard's flow page in a real browser: the funnel along the graph with each node's
counts, the split's comparison, and the way there from an execution."""
from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from flows.models import Execution, Flow, FlowVersion, Step
from messaging.models import Message
from tests.browser.test_dashboard_browser import _all, _css, _log_in, _screenshot
from tests.factories import ContactFactory, StaffUserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db(transaction=True)  # the live server reads committed rows

NODES = [{"id": "ab", "type": "split", "data": {"branches": [
            {"name": "a", "weight": 50}, {"name": "b", "weight": 45},
            {"name": "holdout", "weight": 5, "holdout": True}]}},
         {"id": "short", "type": "send_sms", "data": {"body": "Welcome!"}},
         {"id": "long", "type": "send_sms", "data": {"body": "Welcome, 10% off"}}]
EDGES = [{"id": "to-a", "source": "ab", "target": "short", "sourceHandle": "a"},
         {"id": "to-b", "source": "ab", "target": "long", "sourceHandle": "b"}]


def run(flow: Flow, version: FlowVersion, branch: str, *, converted: bool = False,
        delivered: bool = True) -> Execution:
    """Record an execution that took this branch (and its send, unless held out)."""
    now = timezone.now()
    execution = Execution.objects.create(
        workspace=flow.workspace, flow=flow, version=version, status="completed",
        contact=ContactFactory(workspace=flow.workspace), completed_at=now,
        converted_at=now if converted else None)
    Step.objects.create(execution=execution, node_id="ab", node_type="split",
                        status="completed", output={"branch": branch})
    if branch != "holdout":
        message = Message.objects.create(
            workspace=flow.workspace, channel="sms", to="+14155552671",
            status="delivered" if delivered else "sent", content={"body": "x"})
        Step.objects.create(execution=execution, node_id="short" if branch == "a" else "long",
                            node_type="send_sms", status="completed", message=message)
    return execution


def test_the_flow_page_shows_the_funnel_and_compares_the_branches(browser: Any,
                                                                 live_server: Any):
    workspace = WorkspaceFactory(name="Acme Dental")
    flow = Flow.objects.create(workspace=workspace, name="Welcome A/B", status="active",
                               nodes=NODES, edges=EDGES, trigger={"type": "manual"})
    version = FlowVersion.objects.create(flow=flow, number=1, nodes=NODES, edges=EDGES)
    first = run(flow, version, "a", converted=True)
    run(flow, version, "a", delivered=False)
    for converted in (True, True, False, False):
        run(flow, version, "b", converted=converted)
    run(flow, version, "holdout")
    _log_in(browser, live_server.url, StaffUserFactory())

    # From an execution's page, the flow's name leads to the flow page.
    browser.get(f"{live_server.url}/dashboard/executions/{first.pk}/?workspace={workspace.pk}")
    _css(browser, "h1 a.flow-link").click()
    _css(browser, "table.funnel")

    assert [row.get_attribute("data-node") for row in _all(browser, "tr[data-node]")] == [
        "ab", "short", "long"]

    def count(row: str, name: str) -> str:
        return _css(browser, f'{row} [data-count="{name}"]').text.strip()

    assert count('tr[data-node="ab"]', "entered") == "7"
    assert count('tr[data-node="short"]', "entered") == "2"
    assert _css(browser, 'tr[data-node="short"] meter').get_attribute("value") == "29"
    assert count('tr[data-node="long"]', "completed") == "4"
    assert "a → short" in _css(browser, 'tr[data-node="ab"]').text
    assert _css(browser, '[data-count="executions"]').text == "7"
    assert _css(browser, '[data-count="converted"]').text == "3"

    split = 'table[data-split="ab"]'
    assert [row.get_attribute("data-branch") for row in _all(browser, f"{split} tr[data-branch]")
            ] == ["a", "b", "holdout"]
    assert [count(f'{split} tr[data-branch="a"]', name)
            for name in ("entered", "sent", "delivered", "converted", "rate")] == [
        "2", "2", "1", "1", "50%"]
    assert [count(f'{split} tr[data-branch="b"]', name)
            for name in ("entered", "sent", "converted", "rate")] == ["4", "4", "2", "50%"]
    assert [count(f'{split} tr[data-branch="holdout"]', name)
            for name in ("entered", "sent", "converted")] == ["1", "0", "0"]
    _screenshot(browser, "30-flow-funnel")

    # Another workspace's flow is not found.
    theirs = Flow.objects.create(workspace=WorkspaceFactory(), name="Theirs", nodes=NODES,
                                 edges=EDGES)
    browser.get(f"{live_server.url}/dashboard/flows/{theirs.pk}/?workspace={workspace.pk}")
    assert "Theirs" not in browser.page_source
