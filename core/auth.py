"""API key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
from __future__ import annotations

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from core.models import ApiKey, Workspace
from core.services import api_key_authenticate


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
        key = api_key_authenticate(secret=secret)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return (None, key)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class HasWorkspace(permissions.BasePermission):
    """Allow only requests authenticated by a workspace API key."""

    def has_permission(self, request: Request, view) -> bool:
        return isinstance(request.auth, ApiKey)


def workspace_of(request: Request) -> Workspace:
    """Return the workspace of the key that authenticated the request."""
    key = request.auth
    if not isinstance(key, ApiKey):  # HasWorkspace lets no such request reach a view
        raise exceptions.NotAuthenticated()
    return key.workspace
