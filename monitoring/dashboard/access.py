"""Who may act from the dashboard: one place, so tenant roles extend it in one spot.

Today every dashboard user is staff, and staff may act on every workspace; a global action
(pausing a queue for every workspace) is staff-only for good.
"""
from __future__ import annotations

from typing import Any

from core.models import Workspace


def can_act(user: Any, workspace: Workspace | None) -> bool:
    """Return whether the user may pause, resume, cancel or replay in the workspace (None:
    for every workspace at once)."""
    if workspace is None:
        return can_act_globally(user)
    return bool(user is not None and user.is_active and user.is_staff)


def can_act_globally(user: Any) -> bool:
    """Return whether the user may act for every workspace at once (staff only)."""
    return bool(user is not None and user.is_active and user.is_staff)
