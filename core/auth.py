"""API key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from core import logcontext
from core.models import ApiKey, Scope, Workspace
from core.services import ApiKeyExpired, api_key_authenticate

if TYPE_CHECKING:
    # For annotations only: DRF loads this module (DEFAULT_AUTHENTICATION_CLASSES) while
    # rest_framework.views is itself still loading, so it cannot be imported at run time.
    from rest_framework.views import APIView


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate a request by workspace API key; request.auth is the ApiKey."""

    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        secret = request.META.get("HTTP_X_API_KEY", "").strip()
        if not secret:
            header = request.META.get("HTTP_AUTHORIZATION", "")
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                return None
            secret = value.strip()
        try:
            key = api_key_authenticate(secret=secret)
        except ApiKeyExpired as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from exc
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        logcontext.update(workspace_id=key.workspace_id)  # the rest of the request's lines
        return (None, key)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class HasWorkspace(permissions.BasePermission):
    """Allow only requests authenticated by a workspace API key."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, ApiKey)


def required_scope(request: Request, view: APIView) -> str:
    """Return the scope a request needs: read for GET/HEAD/OPTIONS; for a write the view's
    `action_scopes[action]`, else its `write_scope`, else manage (configuration)."""
    if request.method in permissions.SAFE_METHODS:
        return Scope.READ
    action = getattr(view, "action", None)
    scopes = getattr(view, "action_scopes", {})
    if action in scopes:
        return scopes[action]
    return getattr(view, "write_scope", Scope.MANAGE)


class HasScope(permissions.BasePermission):
    """Refuse (403, naming the scope) a key request the key's scopes do not cover.

    Requests not made with a key (a staff session on the operator views) are left to the
    view's other permissions."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        scope = required_scope(request, view)
        if scope not in (key.scopes or []):
            # core.api (ApiError) imports DRF's settings, which import this module.
            raise exceptions.PermissionDenied(f"This key lacks the '{scope}' scope.")
        return True


def workspace_of(request: Request) -> Workspace:
    """Return the workspace of the key that authenticated the request."""
    key = request.auth
    if not isinstance(key, ApiKey):  # HasWorkspace lets no such request reach a view
        raise exceptions.NotAuthenticated()
    return key.workspace
