"""Webhook endpoints API: validation, the secret shown once, rotation, tenancy."""
from __future__ import annotations

import pytest

from core.models import AuditEntry, Workspace
from messaging.models import WebhookEndpoint
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/relay"


def create(api, **fields):
    return api.post("/api/v1/webhook-endpoints", {"url": URL, "events": ["*"], **fields},
                    format="json")


def test_create_answers_the_secret_once_and_lists_without_it(api):
    created = create(api, description="billing", rate_limit="10/s").json()
    assert created["secret"].startswith("whsec_")
    listed = api.get("/api/v1/webhook-endpoints").json()
    assert listed["count"] == 1
    assert "secret" not in listed["results"][0]
    assert listed["results"][0]["rate_limit"] == "10/s"


@pytest.mark.parametrize(("url", "words"), [
    ("ftp://hooks.example.com/x", "http(s)"),
    ("http://127.0.0.1:8000/x", "private"),
    ("http://10.1.2.3/x", "private"),
    ("https://user:pw@hooks.example.com/x", "credentials"),
])
def test_bad_urls_answer_400_naming_the_url(api, url, words):
    response = create(api, url=url)
    assert response.status_code == 400
    assert words in response.json()["error"]["fields"]["url"][0]
    assert not WebhookEndpoint.objects.exists()


def test_a_private_url_is_allowed_inside_the_allowed_networks(api, allow_local):
    assert create(api, url="http://127.0.0.1:8000/x").status_code == 201


def test_unknown_event_types_answer_400_naming_them(api):
    response = create(api, events=["message.sent", "message.exploded", "nope"])
    assert response.status_code == 400
    message = response.json()["error"]["fields"]["events"][0]
    assert "message.exploded" in message and "nope" in message
    assert create(api, events=[]).status_code == 400


def test_a_bad_rate_limit_answers_400(api):
    response = create(api, rate_limit="fast")
    assert response.status_code == 400
    assert "rate_limit" in response.json()["error"]["fields"]


def test_patch_changes_fields_and_validates_them(api):
    endpoint = create(api).json()
    answer = api.patch(f"/api/v1/webhook-endpoints/{endpoint['id']}",
                       {"events": ["message.failed"], "enabled": False}, format="json")
    assert answer.status_code == 200
    assert answer.json()["events"] == ["message.failed"]
    assert answer.json()["enabled"] is False and answer.json()["disabled_at"]
    bad = api.patch(f"/api/v1/webhook-endpoints/{endpoint['id']}", {"url": "gopher://x"},
                    format="json")
    assert bad.status_code == 400 and "url" in bad.json()["error"]["fields"]
    again = api.patch(f"/api/v1/webhook-endpoints/{endpoint['id']}", {"enabled": True},
                      format="json").json()
    assert again["enabled"] is True and again["disabled_at"] is None


def test_rotate_secret_keeps_the_previous_one_for_a_day(api):
    endpoint = create(api).json()
    rotated = api.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret").json()
    stored = WebhookEndpoint.objects.get(pk=endpoint["id"])
    assert (stored.secret, stored.secret_previous) == (rotated["secret"], endpoint["secret"])
    assert rotated["previous_secret_valid_until"]
    [entry] = AuditEntry.objects.filter(action="webhook_endpoint.rotate_secret")
    assert (entry.target_id, entry.actor.startswith("api:")) == (endpoint["id"], True)
    assert "secret" not in str(entry.detail)


def test_every_route_of_another_workspaces_endpoint_answers_404(api, other_api):
    endpoint = create(other_api).json()
    base = f"/api/v1/webhook-endpoints/{endpoint['id']}"
    delivery = "00000000-0000-0000-0000-000000000000"
    assert api.get(base).status_code == 404
    assert api.patch(base, {"enabled": False}, format="json").status_code == 404
    assert api.delete(base).status_code == 404
    assert api.post(f"{base}/rotate-secret").status_code == 404
    assert api.get(f"{base}/deliveries").status_code == 404
    assert api.post(f"{base}/replay", {"since": "2024-01-01T00:00:00Z"},
                    format="json").status_code == 404
    assert api.post(f"{base}/deliveries/{delivery}/replay").status_code == 404
    assert api.get("/api/v1/webhook-endpoints").json()["count"] == 0
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).enabled


def test_delete_removes_the_endpoint(api):
    endpoint = create(api).json()
    assert api.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}").status_code == 204
    assert not WebhookEndpoint.objects.exists()


def test_replay_needs_a_time_and_an_enabled_endpoint(api):
    endpoint = create(api).json()
    base = f"/api/v1/webhook-endpoints/{endpoint['id']}"
    missing = api.post(f"{base}/replay", {}, format="json")
    assert missing.status_code == 400 and "since" in missing.json()["error"]["fields"]
    api.patch(base, {"enabled": False}, format="json")
    assert api.post(f"{base}/replay", {"since": "2024-01-01T00:00:00Z"},
                    format="json").status_code == 409


def test_the_workspace_secret_rotates_with_an_overlap(api, workspace):
    old = workspace.webhook_secret
    answer = api.post("/api/v1/workspace/webhook-secret/rotate").json()
    workspace.refresh_from_db()
    assert answer["secret"] == workspace.webhook_secret != old
    assert workspace.webhook_secret_previous == old
    assert answer["previous_secret_valid_until"]
    [entry] = AuditEntry.objects.filter(action="webhook_secret.rotate")
    assert entry.workspace_id == workspace.pk
    other = WorkspaceFactory()
    assert Workspace.objects.get(pk=other.pk).webhook_secret_previous == ""
