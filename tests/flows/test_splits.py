"""A/B splits (README.md, "A/B splits"): weighted, deterministic by (flow, contact), a
holdout that sends nothing, and the stats that compare the branches."""
from __future__ import annotations

import uuid
from collections import Counter

import pytest

from flows.models import Execution, Step
from flows.nodes.split import assign
from messaging.models import Message
from tests.factories import ContactFactory, FlowFactory
from tests.flows.conftest import create_flow, readme_journey
from tests.support.waiting import wait_until

BRANCHES = [{"name": "a", "weight": 50}, {"name": "b", "weight": 45},
            {"name": "holdout", "weight": 5, "holdout": True}]


def test_weights_50_45_5_hold_over_10000_contacts_and_never_change():
    flow_id = uuid.uuid4()
    contacts = [uuid.uuid4() for _ in range(10_000)]

    shares = Counter(assign(BRANCHES, flow_id, contact)["name"] for contact in contacts)

    for name, weight in (("a", 50), ("b", 45), ("holdout", 5)):
        assert abs(shares[name] / 100 - weight) <= 1.5, shares
    again = [assign(BRANCHES, flow_id, contact)["name"] for contact in contacts[:500]]
    assert again == [assign(BRANCHES, flow_id, contact)["name"] for contact in contacts[:500]]
    # Another flow assigns independently: not the same contacts in the same branches.
    other = [assign(BRANCHES, uuid.uuid4(), contact)["name"] for contact in contacts[:500]]
    assert other != again


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
def test_the_readmes_welcome_ab_splits_holds_out_and_compares(
        api, workspace, providers, live_worker, dispatcher):
    flow = create_flow(api, readme_journey("Welcome A/B"))
    assert flow["warnings"] == []
    assert api.post(f"/api/v1/flows/{flow['id']}/activate").status_code == 200
    contacts = ContactFactory.create_batch(60, workspace=workspace)
    for contact in contacts:
        answer = api.post("/api/v1/events", {"name": "signed_up",
                                             "contact_id": str(contact.id)}, format="json")
        assert answer.status_code == 202 and answer.json()["started"] == 1
    wait_until(lambda: Execution.objects.filter(status="completed").count() == 60, timeout=90)

    branch_of = {c.id: assign(BRANCHES, flow["id"], c.id)["name"] for c in contacts}
    taken = dict(Step.objects.filter(node_id="ab").values_list(
        "execution__contact_id", "output__branch"))
    assert taken == branch_of
    for contact in contacts:
        bodies = list(Message.objects.filter(contact=contact).values_list(
            "rendered__body", flat=True))
        if branch_of[contact.id] == "holdout":
            assert bodies == []
        elif branch_of[contact.id] == "a":
            assert bodies == ["Welcome!"]
        else:
            [body] = bodies
            assert body.startswith("Welcome, ") and body.endswith(": 10% off your first order")
    # Re-entry keeps the branch.
    again = contacts[0]
    assert api.post("/api/v1/events", {"name": "signed_up", "contact_id": str(again.id)},
                    format="json").json()["started"] == 1
    wait_until(lambda: Execution.objects.filter(contact=again, status="completed").count() == 2)
    assert set(Step.objects.filter(node_id="ab", execution__contact=again).values_list(
        "output__branch", flat=True)) == {branch_of[again.id]}

    buyers = [c for c in contacts[1:] if branch_of[c.id] == "b"][:3]
    for buyer in buyers:
        answer = api.post("/api/v1/events", {"name": "order.paid", "contact_id": str(buyer.id)},
                          format="json").json()
        assert answer["converted"] == 1
    stats = api.get(f"/api/v1/flows/{flow['id']}/stats").json()

    counts = Counter(branch_of.values())
    counts[branch_of[again.id]] += 1
    [split] = stats["splits"]
    assert split["node_id"] == "ab"
    rows = {row["name"]: row for row in split["branches"]}
    assert {name: row["entered"] for name, row in rows.items()} == {
        name: counts[name] for name in rows}
    assert rows["b"]["converted"] == 3
    assert rows["b"]["conversion_rate"] == round(3 / counts["b"], 4)
    assert rows["b"]["sent"] == counts["b"]
    if "holdout" in rows:
        assert rows["holdout"]["sent"] == 0
    assert stats["executions"] == 61 and stats["converted"] == 3
    nodes = {row["node_id"]: row for row in stats["nodes"]}
    assert nodes["ab"]["entered"] == nodes["ab"]["completed"] == 61
    assert nodes["short"]["entered"] == counts["a"]
    later = api.get(f"/api/v1/flows/{flow['id']}/stats",
                    {"since": "2999-01-01T00:00:00Z"}).json()
    assert (later["executions"], later["nodes"], later["splits"]) == (0, [], [])


@pytest.mark.parametrize(("branches", "words"), [
    ([{"name": "a", "weight": 50}, {"name": "b", "weight": 40}], "sum to 100 (they sum to 90)"),
    ([{"name": "a", "weight": 95}, {"name": "h", "weight": 5, "holdout": True}],
     "2 to 5 branches besides the holdout"),
    ([{"name": "a", "weight": 50}, {"name": "a", "weight": 50}], "names must be unique"),
    ([{"name": "a", "weight": 50.5}, {"name": "b", "weight": 49.5}], "whole number"),
    ("ab", "split needs data.branches"),
])
@pytest.mark.django_db
def test_bad_splits_are_warned_of_and_refused_on_publish(api, branches, words):
    nodes = [{"id": "s", "type": "split", "data": {"branches": branches}}]
    flow = api.post("/api/v1/flows", {"name": "f", "nodes": nodes, "edges": []},
                    format="json").json()
    assert words in str(flow["warnings"])
    response = api.post(f"/api/v1/flows/{flow['id']}/publish")
    assert response.status_code == 400
    assert words in str(response.json()["error"]["fields"]["graph"])


@pytest.mark.django_db
def test_a_holdout_cannot_lead_anywhere(api):
    nodes = [{"id": "s", "type": "split", "data": {"branches": BRANCHES}},
             {"id": "x", "type": "end"}]
    edges = [{"id": "e", "source": "s", "target": "x", "sourceHandle": "holdout"}]
    flow = api.post("/api/v1/flows", {"name": "f", "nodes": nodes, "edges": edges},
                    format="json").json()
    assert "has 1 'holdout' exits (none allowed)" in str(flow["warnings"])


@pytest.mark.django_db
def test_stats_refuse_a_bad_since_and_another_workspaces_flow(api, other_api, workspace):
    flow = FlowFactory(workspace=workspace)
    response = api.get(f"/api/v1/flows/{flow.pk}/stats", {"since": "yesterday"})
    assert response.status_code == 400
    assert "since" in response.json()["error"]["fields"]
    assert other_api.get(f"/api/v1/flows/{flow.pk}/stats").status_code == 404
