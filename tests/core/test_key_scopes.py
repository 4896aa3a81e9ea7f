"""API key scopes (read, send, manage) and expiry, checked on every route of the API."""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from rest_framework.test import APIClient

from core.auth import HasScope
from core.models import ApiKey, all_scopes
from core.services import api_key_create

pytestmark = pytest.mark.django_db

WRITES = ("post", "put", "patch", "delete")
# The writes a sending integration makes; every other write needs "manage".
SEND = {
    ("MessageViewSet", "create"), ("MessageViewSet", "validate"),
    ("MessageViewSet", "batch"), ("MessageViewSet", "cancel"),
    ("ScheduleSmsView", "post"), ("ScheduleEmailView", "post"), ("ScheduleJobView", "post"),
    ("ScheduleAiResponseView", "post"),
    ("FlowViewSet", "start"), ("FlowViewSet", "bulk"),
    ("ExecutionViewSet", "cancel"), ("ExecutionViewSet", "retry_step"),
    ("EventView", "post"), ("EventBatchView", "post"), ("InboundView", "post"),
    ("EmailEventView", "post"),
    ("BroadcastViewSet", "create"), ("BroadcastViewSet", "send"),
    ("BroadcastViewSet", "cancel"),
}
# POSTs that change nothing (checks and dry runs): a read-only key may make them.
READ = {("FlowViewSet", "test"), ("ValidateCronView", "post")}
# Not behind API keys at all: provider callbacks (signed), staff-only, the schema.
KEYLESS = {"TwilioStatusView", "TwilioInboundView", "RateLimitResetView",
           "SpectacularAPIView", "SpectacularSwaggerSplitView"}


def _patterns(resolvers: list, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for entry in resolvers:
        regex = entry.pattern.regex.pattern.lstrip("^")
        if isinstance(entry, URLResolver):
            yield from _patterns(entry.url_patterns, prefix + regex)
        elif isinstance(entry, URLPattern):
            yield prefix + regex, entry.callback


def _example(regex: str) -> str:
    """Return a concrete path matching the pattern (ids filled with a number or a UUID)."""
    def fill(match: re.Match) -> str:
        for candidate in ("1", str(uuid.uuid4())):
            if re.fullmatch(match.group(2), candidate):
                return candidate
        raise AssertionError(f"no example for {match.group(0)}")
    path = re.sub(r"\(\?P<(\w+)>((?:[^()]|\([^()]*\))+)\)", fill, regex)
    path = path.replace("/?$", "/").replace("$", "").replace("\\Z", "").replace("\\", "")
    return "/" + path


def _operations() -> list[tuple[str, str, str, str]]:
    """Return (path, method, view class name, action) for every write of every API route."""
    found = []
    for regex, callback in _patterns(get_resolver().url_patterns):
        cls = getattr(callback, "cls", None)
        if cls is None or cls.__name__ in KEYLESS:
            continue  # a Django view (dashboard, admin, metrics) or not behind a key
        path = _example(regex)
        if resolve(path).func is not callback:
            continue  # shadowed by an earlier route (suppressions' list): never reached
        actions = getattr(callback, "actions", None) or {
            method: method for method in WRITES if hasattr(cls, method)}
        for method, action in actions.items():
            if method in WRITES:
                found.append((path, method, cls.__name__, action))
    return found


OPERATIONS = _operations()


def _client(workspace, scopes: list[str]) -> APIClient:
    _, secret = api_key_create(workspace=workspace, name="scoped", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def _call(client: APIClient, path: str, method: str) -> Any:
    return getattr(client, method)(path, {}, format="json")


def test_the_walk_finds_every_kind_of_write():
    names = {(name, action) for _, _, name, action in OPERATIONS}
    assert SEND | READ <= names  # the tables below name real operations
    assert ("DeadLetterViewSet", "retry") in names
    assert ("WorkspaceView", "patch") in names
    assert len(OPERATIONS) > 40


def test_every_view_behind_a_key_checks_scopes():
    from django.conf import settings

    assert "core.auth.HasScope" in settings.REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"]
    for regex, callback in _patterns(get_resolver().url_patterns):
        cls = getattr(callback, "cls", None)
        if cls is not None and cls.__name__ not in KEYLESS:
            assert HasScope in cls.permission_classes, regex


def test_a_read_only_key_gets_403_naming_the_scope_on_every_write(workspace):
    client = _client(workspace, ["read"])
    for path, method, name, action in OPERATIONS:
        response = _call(client, path, method)
        if (name, action) in READ:
            assert response.status_code != 403, (method, path)
            continue
        scope = "send" if (name, action) in SEND else "manage"
        assert response.status_code == 403, (method, path, response.content)
        assert response.json() == {"error": {
            "code": "forbidden", "message": f"This key lacks the '{scope}' scope."}}, path


def test_a_send_only_key_sends_but_cannot_manage_or_read(workspace):
    client = _client(workspace, ["send"])
    for path, method, name, action in OPERATIONS:
        response = _call(client, path, method)
        if (name, action) in SEND:
            assert response.status_code != 403, (method, path, response.content)
        else:
            needed = "read" if (name, action) in READ else "manage"
            assert response.status_code == 403, (method, path)
            assert f"'{needed}'" in response.json()["error"]["message"]
    assert client.get("/api/v1/messages").status_code == 403


def test_a_send_only_key_creates_a_message(workspace):
    client = _client(workspace, ["send"])
    response = client.post("/api/v1/messages", {"channel": "sms", "to": "+14155550100",
                                                "body": "hi"}, format="json")
    assert response.status_code == 201, response.content


def test_a_read_and_send_key_reads_and_sends_but_cannot_replay(workspace):
    client = _client(workspace, ["read", "send"])
    assert client.get("/api/v1/messages").status_code == 200
    assert client.get("/api/v1/dead-letters").status_code == 200
    response = client.post("/api/v1/dead-letters/1/retry", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This key lacks the 'manage' scope."
    response = client.patch("/api/v1/workspace", {"name": "x"}, format="json")
    assert response.status_code == 403


def test_a_key_made_without_scopes_has_all_three(workspace, api):
    key = ApiKey.objects.get(workspace=workspace)
    assert key.scopes == all_scopes() == ["read", "send", "manage"]
    assert api.patch("/api/v1/workspace", {"name": "Renamed"}, format="json").status_code == 200


def test_an_expired_key_answers_401_saying_so(workspace):
    key, secret = api_key_create(workspace=workspace,
                                 expires_at=timezone.now() + timedelta(days=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/contacts").status_code == 200
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get("/api/v1/contacts")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_key_cannot_be_made_already_expired_or_without_scopes(workspace):
    with pytest.raises(ValueError, match="future"):
        api_key_create(workspace=workspace, expires_at=timezone.now() - timedelta(days=1))
    with pytest.raises(ValueError, match="Unknown scope 'admin'"):
        api_key_create(workspace=workspace, scopes=["read", "admin"])
    with pytest.raises(ValueError, match="at least one"):
        api_key_create(workspace=workspace, scopes=[""])


def test_create_api_key_takes_scopes_and_expiry(workspace, capsys):
    call_command("create_api_key", workspace.slug, "--scopes", "send,read",
                 "--expires-in", "30")
    out = capsys.readouterr()
    key = ApiKey.objects.get(workspace=workspace)
    assert key.prefix in out.out
    assert key.scopes == ["read", "send"]
    assert timedelta(days=29) < key.expires_at - timezone.now() <= timedelta(days=30)
    assert "scopes: read,send" in out.err
    call_command("create_api_key", workspace.slug, "--name", "b",
                 "--expires-at", "2999-01-02T03:04:05")
    assert ApiKey.objects.get(name="b").expires_at.year == 2999


@pytest.mark.parametrize("args, message", [
    (["--scopes", "read,everything"], "Unknown scope 'everything'"),
    (["--expires-in", "0"], "positive number of days"),
    (["--expires-at", "next tuesday"], "not an ISO 8601 time"),
    (["--expires-at", "2001-01-01T00:00:00Z"], "must be in the future"),
    (["--expires-in", "3", "--expires-at", "2999-01-01T00:00:00Z"], "not both"),
])
def test_create_api_key_refuses_bad_options_in_one_line(workspace, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_api_key", workspace.slug, *args)
    assert not ApiKey.objects.exists()
