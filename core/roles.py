"""Who may do what in a workspace: the one permission rule of the dashboard (and of anything
a logged-in person does).

Staff (operators) may do everything everywhere, once their session passed two-factor
sign-in (core.twofactor; before that they may only read). A member's role in a workspace
decides:

- viewer: read the workspace's pages, nothing else;
- admin: also act (replay, discard, cancel, retry, pause, resume) and edit (alert rules,
  schedules);
- owner: what an admin may, and manage the workspace's members.

Global actions (workspace None: a pause of every workspace's queue) are for staff only.
Call `can(user, workspace, action)` before an action; `workspaces_for(user)` scopes reads.
"""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from core.models import Membership, Workspace
from core.twofactor import may_act

VIEW = "view"
REPLAY = "replay"
DISCARD = "discard"
CANCEL = "cancel"
RETRY = "retry"
PAUSE = "pause"
RESUME = "resume"
EDIT = "edit"  # alert rules, schedules, settings
MANAGE_MEMBERS = "manage_members"
# Staff only, whatever the role: lifting a limiter on a shared provider account.
RESET_RATE_LIMITS = "reset_rate_limits"

_OPERATE = frozenset({VIEW, REPLAY, DISCARD, CANCEL, RETRY, PAUSE, RESUME, EDIT})
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    Membership.Role.VIEWER: frozenset({VIEW}),
    Membership.Role.ADMIN: _OPERATE,
    Membership.Role.OWNER: _OPERATE | {MANAGE_MEMBERS},
}
ACTIONS = frozenset().union(*ROLE_ACTIONS.values()) | {RESET_RATE_LIMITS}


def _is_staff(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.is_active and user.is_staff)


def role_of(user: Any, workspace: Workspace) -> str | None:
    """Return the user's role in the workspace ("staff" for operators), None if none."""
    if _is_staff(user):
        return "staff"
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    return (Membership.objects.filter(user=user, workspace=workspace)
            .values_list("role", flat=True).first())


def can(user: Any, workspace: Workspace | None, action: str) -> bool:
    """Return whether the user may do the action in the workspace (None: globally)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if _is_staff(user):
        # Staff act only after two-factor sign-in (TWO_FACTOR_REQUIRED_FOR_STAFF).
        return action == VIEW or may_act(user)
    if workspace is None or action == RESET_RATE_LIMITS:
        return False
    role = role_of(user, workspace)
    return role is not None and action in ROLE_ACTIONS.get(role, frozenset())


def allowed_actions(user: Any, workspace: Workspace) -> frozenset[str]:
    """Return every action the user may do in the workspace (one query, for templates)."""
    if _is_staff(user):
        return ACTIONS if may_act(user) else frozenset({VIEW})
    role = role_of(user, workspace)
    return ROLE_ACTIONS.get(role or "", frozenset())


def workspaces_for(user: Any) -> QuerySet[Workspace]:
    """Return the workspaces the user may see: all for staff, else those it is a member of."""
    if _is_staff(user):
        return Workspace.objects.all()
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Workspace.objects.none()
    return Workspace.objects.filter(memberships__user=user)
