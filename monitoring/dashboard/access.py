"""Who may pause and resume from the dashboard, as core.roles says: owners and admins of a
workspace (and staff) for the workspace; staff alone for every workspace at once."""
from __future__ import annotations

from typing import Any

from core import roles
from core.models import Workspace


def can_act(user: Any, workspace: Workspace | None) -> bool:
    """Return whether the user may pause and resume in the workspace (None: for every
    workspace at once)."""
    return roles.can(user, workspace, roles.PAUSE) and roles.can(user, workspace, roles.RESUME)


def can_act_globally(user: Any) -> bool:
    """Return whether the user may act for every workspace at once (staff only)."""
    return can_act(user, None)
