"""Validate and navigate the flow graphs saved by the visual builder.

A graph is `{"nodes": [{"id", "type", "data", ...}], "edges": [{"id", "source", "target",
"sourceHandle", ...}]}`; keys the builder adds for itself (position, label, styling) are kept
and ignored. The start is the one node no edge points to. `condition` nodes leave through the
handles "true"/"false", `wait_for_event` nodes through "event"/"timeout", a send node that
waits for its outcome (`wait_for`) through "delivered"/"failed"/"timeout" (each optional);
every other node's edges leave it as one exit (their handle is ignored). An execution ends
where no edge leads on. Several edges from one exit are parallel branches (a fork: the
walker runs them all), which a `join` node may bring together; a split's or a condition's
handles still choose one exit. A join must be reached by two or more branches of one fork,
and a fork's branches may meet at one join only (`_check_joins`).

The older builder's node names (`send-message`, `send-email`, and `delay`/`condition` with the
builder's data fields) are accepted as aliases of the engine's types (flows.nodes.aliases):
`validate` checks them as their engine types and words problems in the builder's names, and
`parse` hands the engine translated copies. The stored graph keeps them as given.

Drafts are saved as sent, so `validate` reports problems for any JSON input and never raises;
`parse` is for graphs about to run.
"""
from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from flows.nodes import ALIASES, REGISTRY, engine_node, engine_type, exits_of
from flows.nodes import check as check_node

# Views of REGISTRY for the checks below (and for callers that want a set).
NODE_TYPES = frozenset(REGISTRY)
# Nodes that pause an execution: a cycle through one of them cannot spin without end.
PAUSING_TYPES = frozenset(name for name, node_type in REGISTRY.items() if node_type.pauses)


class GraphError(Exception):
    """Raised by `parse` with every problem found in a graph."""

    def __init__(self, errors: list[dict]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(error["message"]) for error in errors) or "invalid flow")


@dataclass(frozen=True)
class Graph:
    """A validated flow graph in engine types: node and edge dicts are the very objects that
    were parsed, except builder-aliased nodes, which are translated copies."""

    nodes: dict[str, dict]
    edges: list[dict]
    start: str

    def node(self, node_id: str) -> dict:
        """Return the node dict with this id (KeyError if there is none); a fork's id
        (fork_id) gives a `fork` node whose data lists the branches' first nodes."""
        if node_id in self.nodes:
            return self.nodes[node_id]
        return self.forks[node_id]

    def next(self, node_id: str, handle: str | None = None) -> str | None:
        """Return the target of the node's outgoing edge (for condition: handle "true"/"false";
        for wait_for_event: "event"/"timeout"); None when there is none (the execution ends).
        Several edges from that exit make a fork: its id (fork_id), which the walker runs as a
        node that starts one branch per edge."""
        exits = self._exits[node_id]
        if exits is None:
            handle = None
        elif handle not in exits:
            raise ValueError(f"node {node_id} leaves through {sorted(exits)}, not {handle!r}")
        targets = self._targets.get((node_id, handle), [])
        if len(targets) > 1:
            return fork_id(node_id, handle)
        return targets[0] if targets else None

    @cached_property
    def _exits(self) -> dict[str, dict[str, tuple[int, int]] | None]:
        """Each node's exits (nodes.exits_of), worked out once per graph: a walk asks at
        every node it leaves."""
        return {node_id: exits_of(node) for node_id, node in self.nodes.items()}

    @cached_property
    def _targets(self) -> dict[tuple[str, str | None], list[str]]:
        targets: dict[tuple[str, str | None], list[str]] = {}
        for edge in self.edges:
            source = edge["source"]
            branching = self._exits[source] is not None
            targets.setdefault((source, edge.get("sourceHandle") if branching else None),
                               []).append(edge["target"])
        return targets

    @cached_property
    def forks(self) -> dict[str, dict]:
        """The graph's forks by id (fork_id): several edges leaving one exit."""
        return {fork_id(source, handle): {"id": fork_id(source, handle), "type": FORK,
                                          "data": {"source": source, "targets": targets}}
                for (source, handle), targets in self._targets.items() if len(targets) > 1}


# The node a walk runs where several edges leave one exit: it is no node of the graph (the
# builder never draws it) but has a step of its own, so a fork starts its branches once.
FORK = "fork"


def fork_id(node_id: str, handle: str | None) -> str:
    """Return the id of the fork after this exit of this node ("n3/fork", "n3/fork/true")."""
    return f"{node_id}/{FORK}" if handle is None else f"{node_id}/{FORK}/{handle}"


def parse(nodes: Any, edges: Any) -> Graph:
    """Validate the graph and raise GraphError(errors) if it has problems, else return it."""
    errors = validate(nodes, edges)
    if errors:
        raise GraphError(errors)
    targets = {edge["target"] for edge in edges}
    start = next(node["id"] for node in nodes if node["id"] not in targets)
    return Graph(nodes={node["id"]: engine_node(node) for node in nodes}, edges=list(edges),
                 start=start)


def validate(nodes: Any, edges: Any) -> list[dict]:
    """Return every problem as {"node", "edge", "message"} (empty list if the graph is valid)."""
    errors: list[dict] = []
    node_list = _as_list(nodes, "nodes", errors)
    if isinstance(nodes, list) and not nodes:
        errors.append(_error("a flow needs at least one node"))
    edge_list = _as_list(edges, "edges", errors)
    by_id = _check_nodes(node_list, errors)
    links = _check_edges(edge_list, by_id, errors)
    _check_exits(by_id, links, errors)
    _check_start(by_id, links, errors)
    _check_cycles(by_id, links, errors)
    _check_joins(by_id, links, errors)
    return errors


def _error(message: str, node: str | None = None, edge: str | None = None) -> dict:
    return {"node": node, "edge": edge, "message": message}


def _as_list(value: Any, name: str, errors: list[dict]) -> list:
    if isinstance(value, list):
        return value
    errors.append(_error(f"{name} must be a list"))
    return []


def _short(value: Any) -> str:
    """Return a value for a message: strings as they are, anything else as a short repr."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _node_type(node: dict) -> str | None:
    """Return the engine type the node runs as (a builder alias resolved); None for junk."""
    return engine_type(node.get("type"))


# Nodes -----------------------------------------------------------------------------------------


def _check_nodes(node_list: list, errors: list[dict]) -> dict[str, dict]:
    """Report per-node problems; return the nodes that have a usable, unique id."""
    by_id: dict[str, dict] = {}
    for index, node in enumerate(node_list):
        if not isinstance(node, dict):
            errors.append(_error(f"nodes[{index}] must be an object"))
            continue
        node_id = node.get("id")
        if not isinstance(node_id, str) or not node_id:
            errors.append(_error(f"nodes[{index}] needs a non-empty string id"))
        elif node_id in by_id:
            errors.append(_error(f"duplicate node id {node_id}", node=node_id))
        else:
            by_id[node_id] = node
            errors.extend(_error(problem, node=node_id) for problem in _node_problems(node))
    return by_id


def _node_problems(node: dict) -> list[str]:
    if "type" not in node:
        return ["node has no type"]
    node_type = node.get("type")
    if not isinstance(node_type, str) or (node_type not in NODE_TYPES
                                          and node_type not in ALIASES):
        return [f"unknown node type '{_short(node_type)}'"]
    # Only `end` needs no configuration, so a missing data object is taken as empty.
    data = node.get("data", {})
    if not isinstance(data, dict):
        return [f"{node_type} data must be an object"]
    return check_node(node_type, data)


# Edges -----------------------------------------------------------------------------------------


class _Link(NamedTuple):
    """An edge between two existing nodes."""

    edge_id: str | None
    label: str
    source: str
    target: str
    handle: Any


def _check_edges(edge_list: list, by_id: dict[str, dict], errors: list[dict]) -> list[_Link]:
    """Report per-edge problems; return the edges that join two existing nodes."""
    links: list[_Link] = []
    seen: set[str] = set()
    for index, edge in enumerate(edge_list):
        if not isinstance(edge, dict):
            errors.append(_error(f"edges[{index}] must be an object"))
            continue
        edge_id = _edge_id(edge, index, seen, errors)
        label = edge_id or f"{_short(edge.get('source'))}->{_short(edge.get('target'))}"
        problems = _endpoint_problems(edge, label, by_id)
        errors.extend(_error(problem, edge=edge_id) for problem in problems)
        if not problems:
            links.append(_Link(edge_id, label, edge["source"], edge["target"],
                               edge.get("sourceHandle")))
    return links


def _edge_id(edge: dict, index: int, seen: set[str], errors: list[dict]) -> str | None:
    """Return the edge's given id (None when absent), reporting invalid and duplicate ids."""
    if "id" not in edge:
        return None
    edge_id = edge["id"]
    if not isinstance(edge_id, str) or not edge_id:
        errors.append(_error(f"edges[{index}] id must be a non-empty string"))
        return None
    if edge_id in seen:
        errors.append(_error(f"duplicate edge id {edge_id}", edge=edge_id))
    seen.add(edge_id)
    return edge_id


def _endpoint_problems(edge: dict, label: str, by_id: dict[str, dict]) -> list[str]:
    problems = []
    for key, verb in (("source", "comes from"), ("target", "targets")):
        value = edge.get(key)
        if value is None:
            problems.append(f"edge {label} has no {key}")
        elif not isinstance(value, str) or value not in by_id:
            problems.append(f"edge {label} {verb} unknown node {_short(value)}")
    if problems or edge["source"] != edge["target"]:
        return problems
    if _node_type(by_id[edge["source"]]) not in PAUSING_TYPES:
        return [f"edge {label} loops node {edge['source']} back to itself without a delay"]
    return []


def _check_exits(by_id: dict[str, dict], links: list[_Link], errors: list[dict]) -> None:
    outgoing: dict[str, list[_Link]] = defaultdict(list)
    for link in links:
        outgoing[link.source].append(link)
    for node_id, node in by_id.items():
        # Messages name the type as the client gave it (a builder alias stays one).
        node_type, shown = _node_type(node), node.get("type")
        exits = outgoing.get(node_id, [])
        allowed = exits_of({"type": node_type, "data": node.get("data")}) if node_type else None
        if node_type and allowed is not None:
            errors.extend(_branch_problems(node_id, node_type, exits, allowed))
        elif node_type in NODE_TYPES and REGISTRY[node_type].final and exits:
            message = f"{shown} node {node_id} cannot have outgoing edges"
            errors.append(_error(message, node=node_id))
        errors.extend(_repeated_edges(node_id, shown, exits, allowed is not None))


def _repeated_edges(node_id: str, shown: Any, exits: list[_Link],
                    branching: bool) -> list[dict]:
    """Report a second edge from the same exit to the same node (a fork into one node
    twice is no parallel branch)."""
    counts = Counter((link.handle if branching and isinstance(link.handle, str) else None,
                      link.target) for link in exits)
    return [_error(f"{shown} node {node_id} has {count} edges to {target} from the same exit",
                   node=node_id)
            for (_, target), count in counts.items() if count > 1]


def _branch_problems(node_id: str, node_type: str, exits: list[_Link],
                     allowed: dict[str, tuple[int, int]]) -> list[dict]:
    names = " or ".join(f"'{handle}'" for handle in allowed)
    # The isinstance check keeps junk handles (lists, objects) out of the dict lookups.
    valid = [link for link in exits if isinstance(link.handle, str) and link.handle in allowed]
    problems = [
        _error(f"edge {link.label} from {node_type} node {node_id} needs sourceHandle {names}",
               edge=link.edge_id)
        for link in exits if link not in valid
    ]
    counts = Counter(link.handle for link in valid)
    for handle, (fewest, most) in allowed.items():
        if counts[handle] < fewest:
            message = f"{node_type} node {node_id} needs a '{handle}' exit"
        elif counts[handle] and not most:  # several edges from one exit fork
            count = counts[handle]
            message = f"{node_type} node {node_id} has {count} '{handle}' exits (none allowed)"
        else:
            continue
        problems.append(_error(message, node=node_id))
    return problems


# Whole graph -----------------------------------------------------------------------------------


def _check_start(by_id: dict[str, dict], links: list[_Link], errors: list[dict]) -> None:
    """Require exactly one start node and report nodes it cannot reach."""
    if not by_id:
        return
    targets = {link.target for link in links}
    starts = [node_id for node_id in by_id if node_id not in targets]
    if not starts:
        errors.append(_error("no start node (every node has an incoming edge)"))
        return
    if len(starts) > 1:
        names = ", ".join(starts)
        errors.append(_error(f"more than one start node (nodes without incoming edges): {names}"))
        return
    reached = _reachable(starts[0], links)
    errors.extend(
        _error(f"node {node_id} is not reachable from the start node {starts[0]}", node=node_id)
        for node_id in by_id if node_id not in reached
    )


class _Forks:
    """The graph's forks (several edges from one exit) and the join each one's branches
    meet at, found by following every branch: at a join the branch ends; a fork nested in
    it continues after its own join, as its execution does."""

    def __init__(self, by_id: dict[str, dict], links: list[_Link]) -> None:
        self.joins = {node_id for node_id, node in by_id.items() if _node_type(node) == "join"}
        self.exits: dict[str, dict[Any, list[str]]] = defaultdict(dict)
        for link in links:
            node = by_id[link.source]
            branching = exits_of({"type": _node_type(node), "data": node.get("data")})
            key = link.handle if branching is not None and isinstance(link.handle, str) else None
            self.exits[link.source].setdefault(key, []).append(link.target)
        self.forks = [(source, key) for source, exits in self.exits.items()
                      for key, targets in exits.items() if len(targets) > 1]
        self.met: dict[tuple[str, Any], dict[str, int]] = {}

    def meeting(self, fork: tuple[str, Any]) -> dict[str, int]:
        """Return {join: how many of the fork's branches reach it}."""
        if fork not in self.met:
            self.met[fork] = {}  # a fork reached again inside itself counts no join
            counts: Counter[str] = Counter()
            for target in self.exits[fork[0]][fork[1]]:
                counts.update(self._arrivals(target))
            self.met[fork] = dict(counts)
        return self.met[fork]

    def join_of(self, fork: tuple[str, Any]) -> str | None:
        met = self.meeting(fork)
        return next(iter(met)) if len(met) == 1 else None

    def _arrivals(self, start: str) -> set[str]:
        found: set[str] = set()
        seen: set[str] = set()
        stack = [start]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if node in self.joins:
                found.add(node)
                continue
            for key, targets in self.exits.get(node, {}).items():
                if len(targets) < 2:
                    stack.extend(targets)
                elif (join := self.join_of((node, key))) is not None:
                    stack.extend(t for after in self.exits.get(join, {}).values()
                                 for t in after)
        return found


def _check_joins(by_id: dict[str, dict], links: list[_Link], errors: list[dict]) -> None:
    """Report forks whose branches meet at more than one join, joins fewer than two
    branches of a fork reach, and joins that would gather the branches of several forks."""
    forks = _Forks(by_id, links)
    if not forks.joins:
        return
    owners: dict[str, list[str]] = defaultdict(list)
    for fork in forks.forks:
        met = forks.meeting(fork)
        if len(met) > 1:
            names = ", ".join(sorted(met))
            errors.append(_error(f"the branches leaving node {fork[0]} meet at more than one "
                                 f"join ({names}): they may meet at one", node=fork[0]))
        for join, count in met.items():
            if count > 1:
                owners[join].append(fork[0])
            elif len(met) == 1:  # the branch would go on past the join its parent waits at
                errors.append(_error(f"only one of the branches leaving node {fork[0]} "
                                     f"reaches join node {join}: two or more must",
                                     node=fork[0]))
    for join in sorted(forks.joins):
        if not owners[join]:
            errors.append(_error(f"join node {join} is not reached by two or more parallel "
                                 "branches (several edges leaving one node)", node=join))
        elif len(owners[join]) > 1:
            names = ", ".join(owners[join])
            errors.append(_error(f"join node {join} gathers the branches of more than one "
                                 f"fork ({names}): each fork needs its own join", node=join))


def _reachable(start: str, links: list[_Link]) -> set[str]:
    successors: dict[str, list[str]] = defaultdict(list)
    for link in links:
        successors[link.source].append(link.target)
    reached, queue = {start}, deque([start])
    while queue:
        for target in successors[queue.popleft()]:
            if target not in reached:
                reached.add(target)
                queue.append(target)
    return reached


def _check_cycles(by_id: dict[str, dict], links: list[_Link], errors: list[dict]) -> None:
    """Report each cycle that no delay or wait_for_event node interrupts (an instant loop)."""
    moving = [node_id for node_id, node in by_id.items() if _node_type(node) not in PAUSING_TYPES]
    successors: dict[str, list[str]] = {node_id: [] for node_id in moving}
    for link in links:
        # Self-loops are reported (and dropped) with the edges.
        if link.source in successors and link.target in successors and link.source != link.target:
            successors[link.source].append(link.target)
    order = {node_id: index for index, node_id in enumerate(moving)}
    for component in _strongly_connected(successors):
        if len(component) > 1:
            cycle = _cycle_through(min(component, key=order.__getitem__), successors)
            message = "cycle without a delay: " + " -> ".join(cycle)
            errors.append(_error(message, node=cycle[0]))


def _strongly_connected(successors: dict[str, list[str]]) -> list[list[str]]:
    """Return the strongly connected components (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    work: list[tuple[str, Any]] = []  # the DFS path, each node with its unvisited successors

    def enter(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        work.append((node, iter(successors[node])))

    for root in successors:
        if root in index:
            continue
        enter(root)
        while work:
            node, pending = work[-1]
            for target in pending:
                if target not in index:
                    enter(target)
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    components.append(_pop_component(node, stack, on_stack))
    return components


def _pop_component(root: str, stack: list[str], on_stack: set[str]) -> list[str]:
    component: list[str] = []
    while True:
        node = stack.pop()
        on_stack.discard(node)
        component.append(node)
        if node == root:
            return component


def _cycle_through(start: str, successors: dict[str, list[str]]) -> list[str]:
    """Return a shortest cycle start -> ... -> start (start must lie on a cycle)."""
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in successors[node]:
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if target not in parents:
                parents[target] = node
                queue.append(target)
    return [start, start]
