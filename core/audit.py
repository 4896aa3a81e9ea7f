"""The audit log: who paused, resumed, replayed, discarded, cancelled, rotated a secret or
changed settings, when and from where.

Every service that performs such an action takes an `Actor` and calls `audit()` inside the
transaction that makes the change, so an action and its entry are written together or not
at all. The bottom layer, so every app can write it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from core.models import AuditEntry, Workspace


@dataclass(frozen=True)
class Actor:
    """Who acts: `name` is "api:<key prefix>", "user:<username>" or "command"; `source` says
    through what (api, dashboard, admin, command); `ip` where the request came from."""

    name: str
    source: str = ""
    ip: str | None = None

    @property
    def label(self) -> str:
        """Return the short text dead letters keep in replayed_by ("dashboard:<user>",
        "admin:<user>", "api:<prefix>", "command")."""
        kind, _, who = self.name.partition(":")
        if kind == "user" and self.source in ("dashboard", "admin"):
            return f"{self.source}:{who}"
        return self.name

    @classmethod
    def parse(cls, text: str) -> Actor:
        """Return the actor a replayed_by-style text names ("dashboard:bob" -> user:bob)."""
        kind, _, who = (text or "").partition(":")
        if kind in ("dashboard", "admin") and who:
            return cls(name=f"user:{who}", source=kind)
        if kind == "api":
            return cls(name=text, source="api")
        return cls(name=text or "unknown", source=kind if not who else "")


COMMAND = Actor(name="command", source="command")


def as_actor(value: Actor | str | None) -> Actor:
    """Return an Actor for a service's `actor` argument (an Actor, a legacy text, or None)."""
    if isinstance(value, Actor):
        return value
    return Actor.parse(value or "")


def client_ip(request: Any) -> str | None:
    """Return the address the request came from, or None: REMOTE_ADDR, or behind
    TRUSTED_PROXY_HOPS proxies the address the outermost of them saw (that many entries
    from the right of X-Forwarded-For; entries further left are the client's own words)."""
    meta = getattr(request, "META", {}) or {}
    hops = getattr(settings, "TRUSTED_PROXY_HOPS", 0)
    if hops > 0:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")
                     if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return meta.get("REMOTE_ADDR") or None


def actor_of(request: Any, source: str) -> Actor:
    """Return the actor of an API or dashboard request: its API key, else its user."""
    prefix = getattr(getattr(request, "auth", None), "prefix", None)
    if prefix:
        return Actor(name=f"api:{prefix}", source="api", ip=client_ip(request))
    user = getattr(request, "user", None)
    username = user.get_username() if user is not None and user.is_authenticated else "?"
    return Actor(name=f"user:{username}", source=source, ip=client_ip(request))


def audit(*, actor: Actor | str | None, action: str, workspace: Workspace | Any = None,
          target_type: str = "", target_id: Any = "",
          detail: dict[str, Any] | None = None) -> AuditEntry:
    """Write one audit entry, in the caller's transaction (call it inside the atomic block
    that makes the change). `workspace` is a Workspace, its id, or None for a global action."""
    who = as_actor(actor)
    workspace_id: Any = getattr(workspace, "pk", workspace)
    if not transaction.get_connection().in_atomic_block:
        # Outside a transaction the entry could outlive a failed action or miss a good one.
        raise RuntimeError("audit() must run inside the action's transaction")
    return AuditEntry.objects.create(
        workspace_id=workspace_id, actor=who.name[:150], source=who.source[:20], ip=who.ip,
        action=action[:50], target_type=target_type[:50], target_id=str(target_id)[:100],
        detail=detail or {})
