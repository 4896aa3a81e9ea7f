"""How a workspace's providers are doing: each one's breaker state (shared by every
workspace sending through the environment's provider) and the workspace's own traffic."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from messaging.channels import CHANNELS
from messaging.providers import breaker
from messaging.providers.registry import providers_for

if TYPE_CHECKING:
    from core.models import Workspace


def provider_health(*, workspace: Workspace) -> list[dict[str, Any]]:
    """Return one row per provider of each providers key (sms covers mms), in failover
    order: its state, the workspace's sent and failed counts and latency percentiles."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for spec in CHANNELS.values():
        key = spec.provider_settings_key
        if spec.provider_setting is None or key in seen:
            continue  # no breakers where there is no choice of provider (webhooks)
        seen.add(key)
        try:
            choices = providers_for(workspace, spec.name)
        except ValueError:  # a misconfigured channel is reported where it is used
            continue
        for choice in choices:
            state = breaker.read(choice.breaker_id)
            opened = state.opened_at if state.state != breaker.CLOSED else None
            rows.append({
                "channel": key, "position": choice.position, "name": choice.name,
                "state": state.state, "consecutive_failures": state.consecutive,
                "opened_at": datetime.fromtimestamp(opened, UTC) if opened else None,
                **breaker.workspace_stats(choice.breaker_id, str(workspace.pk))})
    return rows
