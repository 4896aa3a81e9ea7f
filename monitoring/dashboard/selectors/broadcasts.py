"""Reads behind the broadcasts page: each broadcast with its stats and progress."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from audiences.broadcasts import stats_of
from audiences.models import Broadcast
from audiences.selectors import broadcasts_list
from core.models import Workspace


@dataclass(frozen=True)
class BroadcastRow:
    broadcast: Broadcast
    stats: dict[str, Any]

    @property
    def percent(self) -> int:
        """Return the progress as a whole percentage, for the bar's label."""
        return round(self.stats["progress"] * 100)


def broadcasts_page_rows(workspace: Workspace) -> QuerySet[Broadcast]:
    """Return the workspace's broadcasts, newest first (the page paginates them)."""
    return broadcasts_list(workspace=workspace)


def broadcast_row(broadcast: Broadcast) -> BroadcastRow:
    """Return one broadcast with its stats (one counting query while it runs)."""
    return BroadcastRow(broadcast=broadcast, stats=stats_of(broadcast))
