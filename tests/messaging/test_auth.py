from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from core.models import ApiKey
from core.services import api_key_create, api_key_revoke
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_it_accepts_a_bearer_key(api, workspace):
    response = api.get("/api/v1/workspace")
    assert response.status_code == 200
    assert response.json()["id"] == str(workspace.id)
    assert response.json()["slug"] == workspace.slug


def test_it_accepts_an_x_api_key_header(api_key, workspace):
    response = APIClient().get("/api/v1/workspace", HTTP_X_API_KEY=api_key)
    assert response.status_code == 200
    assert response.json()["id"] == str(workspace.id)


def test_it_answers_401_without_a_key():
    response = APIClient().get("/api/v1/contacts")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_answers_401_for_a_wrong_key(api_key):
    tampered = api_key[:-4] + ("aaaa" if not api_key.endswith("aaaa") else "bbbb")
    response = APIClient().get("/api/v1/contacts", HTTP_AUTHORIZATION=f"Bearer {tampered}")
    assert response.status_code == 401


def test_it_answers_401_for_a_revoked_key(api, api_key):
    key = ApiKey.objects.get(prefix=api_key.split("_")[1])
    api_key_revoke(api_key=key)
    assert api.get("/api/v1/contacts").status_code == 401


def test_it_stores_only_a_hash_of_the_key(workspace):
    key, secret = api_key_create(workspace=workspace)
    assert secret not in key.hashed_key
    assert key.prefix in secret
    assert len(key.hashed_key) == 64


def test_it_records_last_use(api, api_key):
    key = ApiKey.objects.get(prefix=api_key.split("_")[1])
    assert key.last_used_at is None
    api.get("/api/v1/contacts")
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_another_workspaces_contact_answers_404(api, other_api, workspace):
    contact = ContactFactory(workspace=workspace)
    assert api.get(f"/api/v1/contacts/{contact.id}").status_code == 200
    response = other_api.get(f"/api/v1/contacts/{contact.id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert other_api.delete(f"/api/v1/contacts/{contact.id}").status_code == 404
    assert other_api.patch(f"/api/v1/contacts/{contact.id}", {"first_name": "x"},
                           format="json").status_code == 404
    assert other_api.get("/api/v1/contacts").json()["count"] == 0


def test_admin_requires_a_staff_login(client):
    response = client.get("/admin/core/contact/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_workspace_endpoint_hides_provider_credentials(api, workspace):
    workspace.settings = {"providers": {"sms": {"name": "twilio", "auth_token": "s3cret",
                                                "account_sid": "AC1", "api_key": "k"}},
                          "rate_limits": {"sms": "5/s"}}
    workspace.save()
    body = api.get("/api/v1/workspace").json()
    assert "s3cret" not in str(body)
    assert body["settings"]["providers"]["sms"]["auth_token"] == "***"
    assert body["settings"]["providers"]["sms"]["account_sid"] == "AC1"
    assert body["settings"]["rate_limits"] == {"sms": "5/s"}
