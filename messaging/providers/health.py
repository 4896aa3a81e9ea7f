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
    order: its breaker (id and state), the workspace's sent and failed counts and latency
    percentiles."""
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
                "breaker_id": choice.breaker_id, "channel": key,
                "position": choice.position, "name": choice.name,
                "state": state.state, "consecutive_failures": state.consecutive,
                "opened_at": datetime.fromtimestamp(opened, UTC) if opened else None,
                **breaker.workspace_stats(choice.breaker_id, str(workspace.pk))})
    return rows


def providers_down(*, workspace: Workspace, since: datetime, channel: str = "") -> int:
    """Return how many of the workspace's providers (of one channel's, when given) have
    their breaker open now or opened since `since`: an outage shorter than the interval
    between two evaluations still counts."""
    key = CHANNELS[channel].provider_settings_key if channel in CHANNELS else ""
    down = 0
    for row in provider_health(workspace=workspace):
        if key and row["channel"] != key:
            continue
        state = breaker.read(row["breaker_id"])
        opened = state.opened_at
        if state.state != breaker.CLOSED or (opened and opened >= since.timestamp()):
            down += 1
    return down

