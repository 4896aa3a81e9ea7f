"""Reads behind the queues page: per channel queue, the pause in force, what it holds and
its messages counted per state."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count

from core.models import Workspace
from messaging.channels import CHANNEL_QUEUES, QUEUE_CHANNELS
from messaging.delivery import pauses
from messaging.models import QueuePause
from monitoring.selectors import queue_detail


@dataclass(frozen=True)
class QueueRow:
    queue: str
    channels: tuple[str, ...]
    own: QueuePause | None  # the workspace's own pause
    everywhere: QueuePause | None  # the pause for every workspace
    held: int
    # waiting, active, scheduled, failed, completed (monitoring.selectors.QUEUE_JOB_STATES)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def paused(self) -> bool:
        return self.own is not None or self.everywhere is not None


def queue_rows(workspace: Workspace) -> list[QueueRow]:
    """Return one row per channel queue for the workspace (two small queries)."""
    found: dict[tuple[str, Any], QueuePause] = {
        (pause.queue, pause.workspace_id): pause
        for pause in QueuePause.objects.filter(workspace__isnull=True) | QueuePause.objects
        .filter(workspace=workspace)}
    held: dict[str, int] = {}
    for row in (pauses.held(workspace_id=workspace.pk).order_by().values("channel")
                .annotate(count=Count("pk"))):
        queue = next(q for q, channels in QUEUE_CHANNELS.items() if row["channel"] in channels)
        held[queue] = held.get(queue, 0) + row["count"]
    return [QueueRow(queue=queue, channels=QUEUE_CHANNELS[queue],
                     own=found.get((queue, workspace.pk)), everywhere=found.get((queue, None)),
                     held=held.get(queue, 0),
                     counts=queue_detail(queue=queue, workspace=workspace, limit=0)["counts"])
            for queue in CHANNEL_QUEUES]
