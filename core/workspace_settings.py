"""Workspace settings read by the older queue service's endpoints, and their checks.

Both live in Workspace.settings (JSON), set by an operator on the workspace's admin page:

- `callback_base_url`: an http(s) URL without query or fragment; a relative
  `callbackEndpoint` on /api/schedule-job is appended to it.
- `compat_workspace_ids`: the older client's (a CRM's) own ids for this workspace, strings
  or integers; `workspaceId` may name one of them as well as the workspace's id or slug.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from core.models import Workspace

CALLBACK_BASE_URL = "callback_base_url"
COMPAT_WORKSPACE_IDS = "compat_workspace_ids"


def callback_base_url(workspace: Workspace) -> str:
    """Return the base a relative callback is joined to ("" when the setting is unset)."""
    return str((workspace.settings or {}).get(CALLBACK_BASE_URL) or "")


def compat_workspace_ids(workspace: Workspace) -> set[str]:
    """Return the older client's ids for the workspace, as text (66338 and "66338" match)."""
    ids = (workspace.settings or {}).get(COMPAT_WORKSPACE_IDS) or []
    return {str(value) for value in ids} if isinstance(ids, list) else set()


def is_plain_id(value: Any) -> bool:
    """Tell whether a value is an id the older client could send: a string or an integer."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _check_base_url(value: Any) -> None:
    """Refuse a callback base that is not an http(s) URL, or carries a query or fragment
    (a path appended after either would not be a path)."""
    message = f"{CALLBACK_BASE_URL} must be an http(s) URL without query or fragment."
    if not isinstance(value, str):
        raise ValidationError(message)
    try:
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError as exc:
        raise ValidationError(message) from exc
    parts = urlsplit(value)
    if parts.query or parts.fragment:
        raise ValidationError(message)


def _check_compat_ids(value: Any) -> None:
    """Refuse compat ids that are not a list of non-empty strings or integers."""
    if not isinstance(value, list) or not all(
            is_plain_id(item) and str(item).strip() for item in value):
        raise ValidationError(f"{COMPAT_WORKSPACE_IDS} must be a list of non-empty strings "
                              "or integers.")


def validate_settings(value: Any) -> None:
    """Refuse workspace settings whose compat keys would be misread at request time."""
    if not isinstance(value, dict):
        raise ValidationError("Settings must be a JSON object.")
    errors = []
    for key, check in ((CALLBACK_BASE_URL, _check_base_url),
                       (COMPAT_WORKSPACE_IDS, _check_compat_ids)):
        if value.get(key) not in (None, ""):
            try:
                check(value[key])
            except ValidationError as exc:
                errors.extend(exc.messages)
    if errors:
        raise ValidationError(errors)
