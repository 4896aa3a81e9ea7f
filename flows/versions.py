"""The frozen versions executions run: their parsed graphs (read once per process), and
moving waiting executions onto a newer one (README.md, "Versions")."""
from __future__ import annotations

import functools
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from flows.graph import FORK, Graph, parse
from flows.models import ENTERED, Execution, Flow, FlowVersion, Step


@functools.lru_cache(maxsize=512)
def graph_of(version_id: int) -> Graph:
    """Return the parsed graph of a frozen version (versions never change: cache them)."""
    version = FlowVersion.objects.get(pk=version_id)
    return parse(version.nodes, version.edges)


class MigrationRefused(Exception):
    """The waiting executions cannot move onto that version: `problems` by request field."""

    def __init__(self, problems: dict[str, list[str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(text for texts in problems.values() for text in texts))


def executions_migrate(*, flow: Flow, number: int | None,
                       node_map: dict[str, str]) -> tuple[FlowVersion, int]:
    """Move the flow's waiting executions (with their parallel branches, their waiting
    steps and timers) onto version `number` (the latest when None); return the version and
    how many executions moved (those the contacts entered).

    Each one's position (the node it waits in, a finished branch's join, the fork a parent
    waits at) takes the node_map's id, or keeps its own when the new version has it; the
    node must have the type it had (a delay's timer stays a delay's). The timer and awaited
    event carry over. Every problem is found before anything moves (MigrationRefused), and
    all of it moves in one transaction with the executions locked, branches first (as a
    branch ending locks its parent after itself): an execution that began to run meanwhile
    stays where it is, with its branches."""
    versions = flow.versions.order_by("-number")
    version = (versions.first() if number is None else versions.filter(number=number).first())
    if version is None:
        raise MigrationRefused({"version": [f"The flow has no version {number}."]
                                if number is not None else ["The flow has no version."]})
    target = graph_of(version.pk)
    with transaction.atomic():
        rows = list(Execution.objects.select_for_update(of=("self",)).filter(
            ENTERED & Q(status=Execution.Status.WAITING)
            | Q(root__status=Execution.Status.WAITING), flow=flow).exclude(
            version=version).order_by(F("root_id").asc(nulls_last=True), "pk"))
        families = _families(rows)
        problems: dict[str, str] = {}
        for family in families.values():
            for execution in family:
                _check_position(execution, target, node_map, problems)
        if problems:
            raise MigrationRefused({"node_map": [problems[key] for key in sorted(problems)]})
        try:
            with transaction.atomic():
                for family in families.values():
                    for execution in family:
                        _move_onto(execution, version, node_map)
        except IntegrityError:  # a renamed waiting step meets a step of that node and visit
            raise MigrationRefused({"node_map": [
                "the map gives an execution two steps of one node and visit: map the "
                "waiting nodes to nodes they have not visited"]}) from None
    return version, len(families)


def _families(rows: list[Execution]) -> dict[Any, list[Execution]]:
    """Group waiting roots with their branches; leave out a family any of whose members is
    running (it is being walked: it moves on a later call)."""
    families: dict[Any, list[Execution]] = {}
    for row in rows:
        families.setdefault(row.root_id or row.pk, []).append(row)
    return {root: family for root, family in families.items()
            if any(e.pk == root for e in family)
            and not any(e.status == Execution.Status.RUNNING for e in family)}


def _mapped(node_id: str, node_map: dict[str, str]) -> str:
    """The id a position takes: the map's, a fork's after its node's, else its own."""
    if node_id in node_map:
        return node_map[node_id]
    source, fork, handle = node_id.partition(f"/{FORK}")
    return f"{node_map[source]}/{FORK}{handle}" if fork and source in node_map else node_id


def _check_position(execution: Execution, target: Graph, node_map: dict[str, str],
                    problems: dict[str, str]) -> None:
    """Record why this execution's position has no place in the target graph, if so."""
    old = execution.current_node
    if not old:
        return
    new = _mapped(old, node_map)
    try:
        was = graph_of(execution.version_id).node(old)["type"]
        now = target.node(new)["type"]
    except KeyError:
        problems[old] = (f"node {old} (where executions wait) is not in the new version: "
                         f"map it to one that is" if old == new else
                         f"node {old} maps to {new}, which the new version does not have")
        return
    if was != now:
        problems[old] = f"node {old} is a {was}; {new} in the new version is a {now}"


def _move_onto(execution: Execution, version: FlowVersion, node_map: dict[str, str]) -> None:
    node = _mapped(execution.current_node, node_map) if execution.current_node else ""
    visits = {_mapped(key, node_map): count for key, count in (execution.visits or {}).items()}
    Step.objects.filter(execution=execution, node_id=execution.current_node,
                        visit=execution.current_visit,
                        status=Step.Status.WAITING).update(node_id=node)
    # A branch's fork is its parent's position: it takes the same id as the parent's cursor.
    fork = _mapped(execution.fork_node, node_map) if execution.fork_node else ""
    Execution.objects.filter(pk=execution.pk).update(
        version=version, current_node=node, visits=visits, fork_node=fork,
        updated_at=timezone.now())
