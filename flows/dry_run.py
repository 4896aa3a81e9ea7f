"""A dry run of a flow: walk the graph for a sample contact, render, send nothing."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils import timezone

from core.models import Contact, Workspace
from flows import nodes
from flows.graph import FORK, Graph, parse
from flows.models import Flow
from flows.nodes.join import JOIN
from messaging.channels import WEBHOOK
from messaging.compose import MessageInvalid, message_compose
from messaging.delivery.templating import render_fields, variant_pick
from messaging.recipients import policy

# A cycle through a delay would walk forever when delays are skipped.
MAX_DRY_RUN_STEPS = 100


def walk(*, flow: Flow, contact: dict[str, Any], data: dict[str, Any],
         events: list[str], contact_row: Contact | None = None) -> dict[str, Any]:
    """Return the path taken and every message that would be sent, each with what the
    recipients' rules would decide about it now (`policy`).

    Delays are skipped; wait_for_event takes its `event` exit when the event is listed in
    `events`, else its `timeout` exit. Parallel branches are shown one after another, each
    step of one with `branch` (the branch's first node), then the join they reach and what
    follows it. The graph is the flow's current (draft) one. `contact_row` is the sample's
    stored contact, if it is one (its consent counts).
    """
    graph = parse(flow.nodes, flow.edges)
    contact = {"attributes": {}, **contact}
    # flow_id: a split previews the branch the sample contact (with an id) would get.
    context: dict[str, Any] = {"contact": contact, "trigger": data, "steps": {},
                               "flow_id": str(flow.pk)}
    sample = contact_row or sample_contact(flow.workspace, contact)
    run = _DryRun(graph, context, events,
                  lambda message: with_policy(message, flow.workspace, sample, context))
    run.follow(graph.start, None)
    return {"path": run.path, "messages": run.messages, "sent": 0,
            "completed": not run.truncated, "truncated": run.truncated}


class _DryRun:
    """One dry run's path and messages, walked branch by branch."""

    def __init__(self, graph: Graph, context: dict[str, Any], events: list[str],
                 decide: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.graph, self.context, self.events, self.decide = graph, context, events, decide
        self.path: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []

    @property
    def truncated(self) -> bool:
        return len(self.path) >= MAX_DRY_RUN_STEPS

    def follow(self, node_id: str | None, branch: str | None) -> str | None:
        """Walk from node_id until the path ends; return the join a branch reached."""
        passing = None  # the join this path goes on from once its own branches met there
        while node_id is not None and not self.truncated:
            node = self.graph.node(node_id)
            if node["type"] == FORK:
                self._entry(node_id, FORK, {"branches": node["data"]["targets"]}, None, branch)
                met = [self.follow(target, target) for target in node["data"]["targets"]]
                node_id = passing = next((join for join in met if join), None)
                continue
            if node["type"] == JOIN.name and branch is not None and node_id != passing:
                return node_id
            preview = nodes.dry_run(node, self.context, events=self.events)
            if preview.message is not None:
                self.messages.append(self.decide(preview.message))
            self.context["steps"][node_id] = {"status": "completed", "output": preview.output}
            self._entry(node_id, node["type"], preview.output, preview.handle, branch)
            if nodes.REGISTRY[node["type"]].final:
                return None
            node_id = self.graph.next(node_id, preview.handle)
        return None

    def _entry(self, node_id: str, node_type: str, output: dict[str, Any],
               handle: str | None, branch: str | None) -> None:
        entry = {"node_id": node_id, "type": node_type, "output": output, "exit": handle}
        if branch is not None:
            entry["branch"] = branch
        self.path.append(entry)


def sample_contact(workspace: Workspace, sample: dict[str, Any]) -> Contact:
    """Return an unsaved contact standing for a sample given as a dict."""
    return Contact(workspace=workspace, phone=str(sample.get("phone") or ""),
                   email=str(sample.get("email") or ""),
                   timezone=str(sample.get("timezone") or ""),
                   locale=str(sample.get("locale") or ""),
                   sms_subscribed=sample.get("sms_subscribed") is not False,
                   email_subscribed=sample.get("email_subscribed") is not False)


def with_policy(preview: dict[str, Any], workspace: Workspace, contact: Contact,
                context: dict[str, Any]) -> dict[str, Any]:
    """Return the previewed message with `policy`: what the pre-send policy would decide if
    it were sent now (caps are read, not counted). The message is composed as the send node
    composes it (a flow send is marketing unless the node says otherwise); one the composer
    refuses has `policy` null and the composer's `errors`. A send naming a template shows
    the variant the contact's locale takes, rendered as the send would render it."""
    payload = {**preview["content"], "channel": preview["channel"]}
    if preview["channel"] != WEBHOOK:
        payload["to"] = preview["to"]
    try:
        message = message_compose(workspace=workspace, source="flow", data=payload)
    except MessageInvalid as exc:
        return {**preview, "policy": None, "errors": exc.message_dict}
    message.contact = contact
    version = message.template_version
    if version is not None:
        _locale, variant = variant_pick(version.variants, version.default_locale,
                                        contact.locale)
        preview = {**preview, "content": {**preview["content"],
                                          **render_fields(variant, context)}}
    decision = policy.decide_all([message], count=False, now=timezone.now())[message.pk]
    return {**preview, "policy": {"outcome": decision.outcome, "reason": decision.reason or None,
                                  "until": decision.until.isoformat() if decision.until
                                  else None}}
