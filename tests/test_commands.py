from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from core.models import Workspace

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_create_workspace_prints_a_working_key_alone_on_the_last_line():
    lines = run("create_workspace", "Acme Inc", "--timezone", "America/New_York")
    key = lines[-1]
    workspace = Workspace.objects.get(slug="acme-inc")
    assert workspace.timezone == "America/New_York"
    response = APIClient().get("/api/v1/workspace", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    assert response.json()["slug"] == "acme-inc"


def test_create_workspace_refuses_a_bad_timezone():
    with pytest.raises(CommandError):
        run("create_workspace", "Bad", "--timezone", "Nowhere/Land")
    assert not Workspace.objects.exists()


def test_create_api_key_by_slug():
    run("create_workspace", "Beta")
    key = run("create_api_key", "beta")[-1]
    assert APIClient().get("/api/v1/contacts", HTTP_X_API_KEY=key).status_code == 200
    with pytest.raises(CommandError):
        run("create_api_key", "missing")


def test_bootstrap_demo_runs_once(monkeypatch):
    monkeypatch.setenv("PORT", "18800")  # make run's web port, printed in the links
    first = "\n".join(run("bootstrap_demo"))
    assert "API key" in first and "admin /" in first
    assert "http://localhost:18800/admin/" in first and ":8000" not in first
    second = "\n".join(run("bootstrap_demo"))
    assert "exists already" in second
    assert Workspace.objects.filter(slug="demo").count() == 1


def test_openapi_schema_lists_the_endpoints(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/contacts" in paths or "/api/v1/contacts/" in str(paths)
    assert client.get("/api/docs/").status_code == 200
