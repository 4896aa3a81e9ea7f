"""Parallel branches (README.md, "Parallel branches"): several edges leaving one exit run
every branch, each in a branch execution; a join waits for all of them, and the execution
the contact entered completes only once they have all ended. Cancel, pause and exits act
on every branch; the dry run shows them all; publishing refuses a join that cannot run."""
from __future__ import annotations

import uuid
from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django.db import transaction
from django.utils import timezone

from core.models import Contact
from flows.branches import executions_finished
from flows.engine import advance, dispatch_timers
from flows.models import Execution, Step
from messaging.models import Message
from tests.factories import ContactFactory
from tests.flows.conftest import readme_journey
from tests.flows.test_engine_end_to_end import make_flow, start
from tests.flows.test_journeys import post_event
from tests.flows.test_send_outcomes import refused_on_publish
from tests.support.stub_server import Reply
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def sms(node_id: str, body: str) -> dict:
    return {"id": node_id, "type": "send_sms", "data": {"body": body}}


def edge(source: str, target: str, **extra) -> dict:
    return {"id": f"{source}-{target}", "source": source, "target": target, **extra}


# hello forks into a fast text and a slow branch (an hour's delay, then a text); both meet
# at the join, and one text follows it.
FORK_JOIN = {
    "nodes": [sms("hello", "Hello"), sms("fast", "Fast"),
              {"id": "slow", "type": "delay", "data": {"seconds": 3600}},
              sms("late", "Late"), {"id": "meet", "type": "join"}, sms("after", "After")],
    "edges": [edge("hello", "fast"), edge("hello", "slow"), edge("slow", "late"),
              edge("fast", "meet"), edge("late", "meet"), edge("meet", "after")],
}
# A moment's delay, then two texts at once (no join: each branch ends on its own).
TWO_TEXTS = {
    "nodes": [{"id": "wait", "type": "delay", "data": {"seconds": 1}}, sms("a", "Text A"),
              sms("b", "Text B")],
    "edges": [edge("wait", "a"), edge("wait", "b")],
}
# Two branches that wait an hour each.
TWO_WAITS = {
    "nodes": [sms("hello", "Hello"), {"id": "x", "type": "delay", "data": {"seconds": 3600}},
              {"id": "y", "type": "delay", "data": {"seconds": 3600}}],
    "edges": [edge("hello", "x"), edge("hello", "y")],
}


def branches_of(execution_id: str) -> dict[str, Execution]:
    """The branch executions of this one, by the node each started at."""
    return {Step.objects.filter(execution=branch).order_by("started_at", "id").first().node_id:
            branch for branch in Execution.objects.filter(parent_id=execution_id)}


def email(node_id: str, subject: str) -> dict:
    return {"id": node_id, "type": "send_email",
            "data": {"subject": subject, "html": f"<p>{subject}</p>"}}


def emails(providers) -> list[str]:
    return [r.json()["subject"] for r in providers.requests if r.path == "/api/email/send"]


def bodies(providers) -> list[str]:
    return sorted(r.json()["message"] for r in providers.requests if r.path == "/send-sms")


def test_a_fork_sends_both_and_the_join_waits_for_the_slower_branch_then_goes_on_once(
        api, workspace, providers, live_worker, dispatcher):
    flow = make_flow(api, FORK_JOIN["nodes"], FORK_JOIN["edges"])
    contact = ContactFactory(workspace=workspace)
    execution_id = start(api, flow["id"], contact)
    wait_until(lambda: Execution.objects.filter(parent_id=execution_id, status="completed",
                                                current_node="meet").exists()
               and Execution.objects.filter(parent_id=execution_id, status="waiting").exists())

    # The fast branch has arrived; the slow one waits in its delay, and so does the root.
    assert bodies(providers) == ["Fast", "Hello"]
    root = Execution.objects.get(pk=execution_id)
    assert (root.status, root.current_node, root.completed_at) == ("waiting", "hello/fork", None)
    branches = branches_of(execution_id)
    assert set(branches) == {"fast", "slow"}
    assert all(b.root_id == root.pk for b in branches.values())
    # The hour passes (the timer is due now): the slow branch sends and arrives.
    Execution.objects.filter(pk=branches["slow"].pk).update(wake_at=timezone.now())
    wait_until(lambda: Execution.objects.get(pk=execution_id).status == "completed")

    assert bodies(providers) == ["After", "Fast", "Hello", "Late"]
    assert Message.objects.filter(contact=contact, content__body="After").count() == 1
    join = Step.objects.get(execution_id=execution_id, node_id="meet")
    assert (join.status, join.output) == ("completed", {"branches": 2})
    assert [(s.node_id, s.status) for s in Step.objects.filter(
        execution_id=execution_id).order_by("started_at", "id")] == [
        ("hello", "completed"), ("hello/fork", "completed"), ("meet", "completed"),
        ("after", "completed")]
    assert {b.status for b in Execution.objects.filter(parent_id=execution_id)} == {
        "completed"}
    # The list shows the execution the contact entered; its branches answer by parent.
    listed = api.get("/api/v1/executions", {"flow": flow["id"]}).json()["results"]
    assert [(e["id"], e["parent_id"]) for e in listed] == [(execution_id, None)]
    forked = api.get("/api/v1/executions", {"parent": execution_id}).json()["results"]
    assert sorted(e["status"] for e in forked) == ["completed", "completed"]


def test_a_fork_starts_its_branches_once_however_often_its_walk_is_repeated(
        api, workspace, providers):
    nodes = [{"id": "up", "type": "update_contact", "data": {"attributes": {"seen": True}}},
             *TWO_WAITS["nodes"][1:]]
    flow = make_flow(api, nodes, [edge("up", "x"), edge("up", "y")])
    contact = ContactFactory(workspace=workspace)
    execution_id = start(api, flow["id"], contact)
    assert advance(execution_id=execution_id) == "waiting"
    assert Execution.objects.filter(parent_id=execution_id).count() == 2
    # A second worker walking from the same place (a redelivered advance that claimed it
    # before the first committed) meets the fork's step and writes nothing.
    Execution.objects.filter(pk=execution_id).update(status="running")

    assert advance(execution_id=execution_id) == "stale"
    assert Execution.objects.filter(parent_id=execution_id).count() == 2
    assert Step.objects.get(execution_id=execution_id, node_id="up/fork").output == {
        "branches": ["x", "y"]}


def test_the_last_branch_to_arrive_moves_the_parent_once(api, workspace, providers):
    nodes = [{"id": "up", "type": "update_contact", "data": {"attributes": {"seen": True}}},
             {"id": "x", "type": "delay", "data": {"seconds": 3600}},
             {"id": "y", "type": "delay", "data": {"seconds": 3600}},
             {"id": "meet", "type": "join"}, sms("after", "After")]
    flow = make_flow(api, nodes, [edge("up", "x"), edge("up", "y"), edge("x", "meet"),
                                  edge("y", "meet"), edge("meet", "after")])
    execution_id = start(api, flow["id"], ContactFactory(workspace=workspace))
    assert advance(execution_id=execution_id) == "waiting"
    branches = list(Execution.objects.filter(parent_id=execution_id).order_by(
        "current_node"))
    for branch in branches:
        assert advance(execution_id=str(branch.pk)) == "waiting"
    Execution.objects.filter(parent_id=execution_id).update(wake_at=timezone.now())
    assert dispatch_timers() == 2  # both delays over: each branch runs on to the join

    first, last = branches
    assert advance(execution_id=str(first.pk)) == "completed"
    assert Execution.objects.get(pk=execution_id).status == "waiting"
    assert advance(execution_id=str(last.pk)) == "completed"

    root = Execution.objects.get(pk=execution_id)
    assert (root.status, root.current_node) == ("running", "after")
    # The last arrival's notice again (a redelivery): the parent is past the fork already.
    last.refresh_from_db()
    with transaction.atomic():
        executions_finished(executions=[last], status="completed")
    root.refresh_from_db()
    assert (root.status, root.current_node, root.current_visit) == ("running", "after", 1)
    assert Step.objects.filter(execution=root, node_id="meet").count() == 1
    assert advance(execution_id=execution_id) == "waiting"  # the text after the join


# s forks into a and b, which meet at j1; c texts after it and forks again into d and e.
TWICE = [sms("s", "S"), sms("a", "A"), sms("b", "B"), {"id": "j1", "type": "join"},
         sms("c", "C"), sms("d", "D"), sms("e", "E")]
TWICE_EDGES = [edge("s", "a"), edge("s", "b"), edge("a", "j1"), edge("b", "j1"),
               edge("j1", "c"), edge("c", "d"), edge("c", "e")]


@pytest.mark.parametrize(("tail", "tail_edges", "after"), [
    # d and e each end at an end node: the execution completes with the last of them.
    ([{"id": "stop", "type": "end"}], [edge("d", "stop"), edge("e", "stop")], []),
    # d and e meet at a second join, and one more text follows it.
    ([{"id": "j2", "type": "join"}, sms("f", "F")],
     [edge("d", "j2"), edge("e", "j2"), edge("j2", "f")], ["F"]),
])
def test_a_second_fork_gathers_only_its_own_branches_and_runs_to_the_end_once(
        api, workspace, providers, live_worker, tail, tail_edges, after):
    flow = make_flow(api, [*TWICE, *tail], [*TWICE_EDGES, *tail_edges])
    contact = ContactFactory(workspace=workspace)
    execution_id = start(api, flow["id"], contact)
    # Done, or round again: the first fork's branches (on j1) taken for the second's.
    wait_until(lambda: Execution.objects.get(pk=execution_id).status == "completed"
               or Message.objects.filter(contact=contact, content__body="C").count() > 1)

    assert bodies(providers) == sorted(["S", "A", "B", "C", "D", "E", *after])
    root = Execution.objects.get(pk=execution_id)
    assert (root.status, root.current_node) == ("completed", "")
    assert Message.objects.filter(contact=contact).count() == 6 + len(after)
    assert sorted((s.node_id, s.visit, s.output) for s in Step.objects.filter(
        execution=root, node_type="join")) == [
        ("j1", 1, {"branches": 2}), *([("j2", 1, {"branches": 2})] if after else [])]
    # Each branch names the fork that started it.
    assert sorted((b.fork_node, b.fork_visit, first) for first, b in branches_of(
        execution_id).items()) == [("c/fork", 1, "d"), ("c/fork", 1, "e"),
                                   ("s/fork", 1, "a"), ("s/fork", 1, "b")]


def test_the_migration_names_the_fork_of_each_branch_started_before_it(
        api, workspace, providers, live_worker):
    flow = make_flow(api, [*TWICE, {"id": "stop", "type": "end"}],
                     [*TWICE_EDGES, edge("d", "stop"), edge("e", "stop")])
    execution_id = start(api, flow["id"], ContactFactory(workspace=workspace))
    wait_until(lambda: Execution.objects.get(pk=execution_id).status == "completed")
    branches = Execution.objects.filter(parent_id=execution_id)
    forks = {pk: (node, visit) for pk, node, visit in branches.values_list(
        "pk", "fork_node", "fork_visit")}
    assert sorted(forks.values()) == [("c/fork", 1)] * 2 + [("s/fork", 1)] * 2
    branches.update(fork_node="", fork_visit=None)  # as branches were before it

    import_module("flows.migrations.0009_execution_fork").forks_of_existing_branches(
        django_apps, None)

    assert {pk: (node, visit) for pk, node, visit in branches.values_list(
        "pk", "fork_node", "fork_visit")} == forks
    assert Execution.objects.get(pk=execution_id).fork_node == ""


def test_a_fork_in_a_loop_gathers_only_the_branches_of_its_own_visit(api, workspace,
                                                                      providers):
    # up forks into two delays that meet; after a pause, round again while `again` is set.
    again = {"all": [{"field": "contact.attributes.again", "op": "eq", "value": True}]}
    nodes = [{"id": "in", "type": "update_contact", "data": {"attributes": {"in": True}}},
             {"id": "up", "type": "update_contact", "data": {"attributes": {"seen": True}}},
             {"id": "x", "type": "delay", "data": {"seconds": 3600}},
             {"id": "y", "type": "delay", "data": {"seconds": 3600}},
             {"id": "meet", "type": "join"},
             {"id": "pause", "type": "delay", "data": {"seconds": 3600}},
             {"id": "check", "type": "condition", "data": {"rules": again}},
             {"id": "done", "type": "end"}]
    flow = make_flow(api, nodes, [
        edge("in", "up"), edge("up", "x"), edge("up", "y"), edge("x", "meet"), edge("y", "meet"),
        edge("meet", "pause"), edge("pause", "check"),
        edge("check", "up", sourceHandle="true"), edge("check", "done", sourceHandle="false")])
    contact = ContactFactory(workspace=workspace, attributes={"again": True})
    execution_id = start(api, flow["id"], contact)

    def wake(*ids) -> None:
        Execution.objects.filter(pk__in=ids).update(wake_at=timezone.now())
        assert dispatch_timers() == len(ids)

    def round_of_branches() -> None:
        branches = [str(pk) for pk in Execution.objects.filter(
            parent_id=execution_id, status="running").values_list("pk", flat=True)]
        assert [advance(execution_id=pk) for pk in branches] == ["waiting", "waiting"]
        wake(*branches)
        assert [advance(execution_id=pk) for pk in branches] == ["completed", "completed"]
        assert advance(execution_id=execution_id) == "waiting"  # in the pause
        wake(execution_id)

    assert advance(execution_id=execution_id) == "waiting"  # at the fork
    round_of_branches()
    assert advance(execution_id=execution_id) == "waiting"  # round again: at the fork
    Contact.objects.filter(pk=contact.pk).update(attributes={"again": False})
    round_of_branches()
    assert advance(execution_id=execution_id) == "completed"

    assert [(s.visit, s.output) for s in Step.objects.filter(
        execution_id=execution_id, node_id="meet").order_by("visit")] == [
        (1, {"branches": 2}), (2, {"branches": 2})]
    assert sorted(Execution.objects.filter(parent_id=execution_id).values_list(
        "fork_node", "fork_visit")) == [("up/fork", 1)] * 2 + [("up/fork", 2)] * 2


# hello forks into fast and inner; inner forks again into an email and a text that meet at
# inner_meet; then both of hello's branches meet, and one text follows.
NESTED = {
    "nodes": [sms("hello", "Hello"), sms("fast", "Fast"), sms("inner", "Inner"),
              email("mail", "Mail"), sms("text", "Text"), {"id": "inner_meet", "type": "join"},
              {"id": "meet", "type": "join"}, sms("after", "After")],
    "edges": [edge("hello", "fast"), edge("hello", "inner"), edge("inner", "mail"),
              edge("inner", "text"), edge("mail", "inner_meet"), edge("text", "inner_meet"),
              edge("inner_meet", "meet"), edge("fast", "meet"), edge("meet", "after")],
}


def test_retrying_a_failed_branch_step_resumes_the_executions_it_failed(
        api, workspace, providers, live_worker):
    providers.script("/api/email/send", Reply(400, {"error": "bad address"}))
    flow = make_flow(api, NESTED["nodes"], NESTED["edges"])
    contact = ContactFactory(workspace=workspace)
    execution_id = start(api, flow["id"], contact)
    wait_until(lambda: Execution.objects.get(pk=execution_id).status == "failed")
    # The email's branch failed, then inner (once its text had arrived), then the root
    # (once fast had arrived): each failed one's cursor stays on its fork.
    inner = branches_of(execution_id)["inner"]
    mail = branches_of(str(inner.pk))["mail"]
    assert [(e.status, e.current_node) for e in Execution.objects.filter(
        pk__in=[execution_id, inner.pk, mail.pk]).order_by("started_at")] == [
        ("failed", "hello/fork"), ("failed", "inner/fork"), ("failed", "mail")]
    step = Step.objects.get(execution=mail, node_id="mail", status="failed")

    response = api.post(f"/api/v1/executions/{mail.pk}/steps/{step.pk}/retry")

    assert response.status_code == 200, response.json()
    wait_until(lambda: Execution.objects.get(pk=execution_id).status == "completed")
    assert emails(providers) == ["Mail", "Mail"]
    assert bodies(providers) == ["After", "Fast", "Hello", "Inner", "Text"]
    assert [(e.status, e.error) for e in Execution.objects.filter(
        pk__in=[execution_id, inner.pk, mail.pk])] == [("completed", "")] * 3
    assert Step.objects.get(execution=inner, node_id="inner_meet").output == {"branches": 2}
    assert Step.objects.get(execution_id=execution_id, node_id="meet").output == {
        "branches": 2}


def failed_beside_a_delay(api, workspace, providers) -> str:
    """Start an execution whose fork's email branch fails while its other branch waits an
    hour; return its id once both are so (the root waits at the fork)."""
    providers.script("/api/email/send", Reply(400, {"error": "bad address"}))
    flow = make_flow(api, [sms("hello", "Hello"), email("mail", "Mail"),
                           {"id": "slow", "type": "delay", "data": {"seconds": 3600}}],
                     [edge("hello", "mail"), edge("hello", "slow")])
    execution_id = start(api, flow["id"], ContactFactory(workspace=workspace))
    wait_until(lambda: Execution.objects.filter(parent_id=execution_id, status="failed")
               .exists() and Execution.objects.filter(parent_id=execution_id,
                                                      status="waiting").exists())
    return execution_id


def test_a_failed_branch_retried_while_its_family_is_paused_waits_for_the_resume(
        api, workspace, providers, live_worker, dispatcher):
    execution_id = failed_beside_a_delay(api, workspace, providers)
    assert api.post(f"/api/v1/executions/{execution_id}/pause").status_code == 200
    mail = branches_of(execution_id)["mail"]
    step = Step.objects.get(execution=mail, node_id="mail")

    assert api.post(f"/api/v1/executions/{mail.pk}/steps/{step.pk}/retry").status_code == 200

    mail.refresh_from_db()
    root = Execution.objects.get(pk=execution_id)
    # The root still waits at its fork (its other branch is in its delay), paused: so is
    # the retried branch, which no worker may advance until the resume.
    assert (root.status, root.current_node) == ("waiting", "hello/fork")
    assert root.paused_at is not None
    assert (mail.status, mail.paused_at) == ("running", root.paused_at)
    assert api.post(f"/api/v1/executions/{execution_id}/resume").status_code == 200
    wait_until(lambda: Execution.objects.get(pk=mail.pk).status == "completed")
    assert emails(providers) == ["Mail", "Mail"]
    Execution.objects.filter(parent_id=execution_id, status="waiting").update(
        wake_at=timezone.now())
    wait_until(lambda: Execution.objects.get(pk=execution_id).status == "completed")


def test_a_failed_branch_whose_parent_was_cancelled_cannot_be_retried(
        api, workspace, providers, live_worker):
    execution_id = failed_beside_a_delay(api, workspace, providers)
    assert api.post(f"/api/v1/executions/{execution_id}/cancel").status_code == 200
    mail = branches_of(execution_id)["mail"]
    step = Step.objects.get(execution=mail, node_id="mail")

    response = api.post(f"/api/v1/executions/{mail.pk}/steps/{step.pk}/retry")

    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "not_retryable",
        "message": f"The execution this branch forked from ({execution_id}) is cancelled "
                   "and no longer waits at the fork hello/fork: the branch cannot run again."}
    mail.refresh_from_db()
    step.refresh_from_db()
    assert (mail.status, step.status, step.retry_count) == ("failed", "failed", 0)
    assert Execution.objects.get(pk=execution_id).status == "cancelled"
    assert emails(providers) == ["Mail"]


def test_a_branch_three_forks_deep_sees_the_steps_of_every_execution_above_it(
        api, workspace, providers, live_worker):
    # top forks into mid and a text; mid forks into low and a text; low forks into deep and
    # a text: deep's branch is three forks down, under low's, under mid's, under the root.
    seen = "{{ steps.top.status }} {{ steps.mid.status }} {{ steps.low.status }}"
    flow = make_flow(api, [sms("top", "Top"), sms("mid", "Mid"), sms("low", "Low"),
                           sms("deep", seen), sms("t1", "T1"), sms("t2", "T2"),
                           sms("t3", "T3")],
                     [edge("top", "mid"), edge("top", "t1"), edge("mid", "low"),
                      edge("mid", "t2"), edge("low", "deep"), edge("low", "t3")])
    execution_id = start(api, flow["id"], ContactFactory(workspace=workspace))
    wait_until(lambda: Execution.objects.get(pk=execution_id).status == "completed")

    assert bodies(providers) == sorted(["Top", "Mid", "Low", "T1", "T2", "T3",
                                        "completed completed completed"])
    deep = Execution.objects.get(root_id=execution_id, current_node="", fork_node="low/fork",
                                 visits__has_key="deep")
    assert deep.parent.parent.parent_id == uuid.UUID(execution_id)


def test_an_exit_event_mid_fork_cancels_both_branches_pending_sends(
        api, workspace, providers, live_worker, dispatcher):
    # The queue is paused: the worker holds both branches' texts in line.
    assert api.post("/api/v1/queues/sms/pause", format="json").status_code == 200
    flow = make_flow(api, TWO_TEXTS["nodes"], TWO_TEXTS["edges"],
                     settings={"exit_on": [{"event": "unsubscribed"}]})
    contact = ContactFactory(workspace=workspace)
    execution_id = start(api, flow["id"], contact)
    wait_until(lambda: Message.objects.filter(contact=contact, status="scheduled").count() == 2)

    answer = post_event(api, contact, "unsubscribed")

    assert answer["exited"] == 1
    assert set(Message.objects.filter(contact=contact).values_list("status", flat=True)) == {
        "cancelled"}
    family = Execution.objects.filter(pk=execution_id) | Execution.objects.filter(
        root_id=execution_id)
    assert sorted((e.status, e.exit_reason) for e in family) == [
        ("exited", "event:unsubscribed")] * 3
    assert set(Step.objects.filter(execution__root_id=execution_id).values_list(
        "status", flat=True)) == {"skipped"}
    assert api.post("/api/v1/queues/sms/resume", format="json").json()["released"] == 0
    assert providers.requests == []


def test_pause_and_cancel_act_on_every_branch(api, workspace, providers, live_worker,
                                              dispatcher):
    flow = make_flow(api, TWO_WAITS["nodes"], TWO_WAITS["edges"])
    contact = ContactFactory(workspace=workspace)
    execution_id = start(api, flow["id"], contact)
    wait_until(lambda: Execution.objects.filter(parent_id=execution_id,
                                                status="waiting").count() == 2)

    paused = api.post(f"/api/v1/executions/{execution_id}/pause").json()
    assert paused["paused_at"] is not None
    branches = Execution.objects.filter(parent_id=execution_id)
    assert all(b.paused_at is not None for b in branches)
    # A paused branch's due timer waits.
    branches.update(wake_at=timezone.now())
    assert dispatch_timers() == 0
    # Due in an hour again before the resume: the dispatcher would fire them at once and
    # the branches, then the execution, would complete before the cancel.
    branches.update(wake_at=timezone.now() + timezone.timedelta(hours=1))
    resumed = api.post(f"/api/v1/executions/{execution_id}/resume").json()
    assert resumed["paused_at"] is None
    assert all(b.paused_at is None for b in Execution.objects.filter(parent_id=execution_id))

    cancelled = api.post(f"/api/v1/executions/{execution_id}/cancel").json()

    assert cancelled["status"] == "cancelled"
    assert {b.status for b in Execution.objects.filter(parent_id=execution_id)} == {
        "cancelled"}
    assert set(Step.objects.filter(execution__parent_id=execution_id).values_list(
        "status", flat=True)) == {"skipped"}


def test_the_dry_run_shows_every_branch_then_the_join(api):
    flow = api.post("/api/v1/flows", readme_journey("Order shipped"), format="json").json()
    assert flow["warnings"] == []

    answer = api.post(f"/api/v1/flows/{flow['id']}/test", {
        "contact": {"phone": "+15550100", "email": "ada@example.com"},
        "data": {"properties": {"url": "https://example.com/t/1"}}}, format="json").json()

    assert [(step["node_id"], step.get("branch")) for step in answer["path"]] == [
        ("hello", None), ("hello/fork", None), ("fast", "fast"), ("slow", "slow"),
        ("late", "slow"), ("meet", None), ("after", None)]
    assert answer["path"][1]["output"] == {"branches": ["fast", "slow"]}
    assert [m["channel"] for m in answer["messages"]] == ["sms", "sms", "email", "sms"]
    assert answer["messages"][1]["content"]["body"] == "Track it: https://example.com/t/1"
    assert (answer["completed"], answer["truncated"]) == (True, False)


@pytest.mark.parametrize(("nodes", "edges", "words"), [
    ([sms("a", "A"), {"id": "meet", "type": "join"}], [edge("a", "meet")],
     "join node meet is not reached by two or more parallel branches"),
    ([sms("a", "A"), sms("b", "B"), sms("c", "C"), {"id": "j", "type": "join"},
      {"id": "k", "type": "join"}],
     [edge("a", "b"), edge("a", "c"), edge("b", "j"), edge("c", "k")],
     "the branches leaving node a meet at more than one join (j, k)"),
    # b forks again, and only c of its branches reaches the join its parent a's fork meets at
    ([sms("a", "A"), sms("b", "B"), sms("c", "C"), sms("d", "D"), sms("e", "E"),
      {"id": "j", "type": "join"}],
     [edge("a", "b"), edge("a", "e"), edge("e", "j"), edge("b", "c"), edge("b", "d"),
      edge("c", "j")],
     "only one of the branches leaving node b reaches join node j: two or more must"),
])
def test_a_join_that_cannot_run_is_warned_of_and_refused_on_publish(api, nodes, edges, words):
    refused_on_publish(api, nodes, edges, words)
