"""Reads behind the broadcasts page: each broadcast with its stats and progress."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from audiences.broadcasts import stats_of_many
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


def broadcast_rows(broadcasts: Iterable[Broadcast]) -> list[BroadcastRow]:
    """Return a page of broadcasts with their stats (one counting query for those that
    run)."""
    page = list(broadcasts)
    stats = stats_of_many(page)
    return [BroadcastRow(broadcast=broadcast, stats=stats[broadcast.pk]) for broadcast in page]
