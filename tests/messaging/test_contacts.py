from __future__ import annotations

import pytest

from core.models import Contact
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_it_creates_a_contact_with_a_normalised_phone(api, workspace):
    response = api.post("/api/v1/contacts", {
        "external_id": "c-1", "first_name": "Ada", "phone": "+1 (415) 555-2671",
        "email": "ada@example.com", "timezone": "Europe/Berlin", "attributes": {"vip": True},
    }, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["phone"] == "+14155552671"
    contact = Contact.objects.get(id=body["id"])
    assert contact.workspace == workspace
    assert contact.attributes == {"vip": True}


@pytest.mark.parametrize("field,value", [
    ("phone", "12345"),
    ("phone", "not a phone"),
    ("email", "not-an-email"),
    ("timezone", "Mars/Olympus"),
    ("attributes", ["not", "an", "object"]),
    ("sms_subscribed", "perhaps"),
])
def test_it_refuses_bad_fields_with_field_errors(api, field, value):
    response = api.post("/api/v1/contacts", {"external_id": "x", field: value}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["fields"]
    assert Contact.objects.count() == 0


def test_it_refuses_a_duplicate_external_id(api, workspace):
    ContactFactory(workspace=workspace, external_id="dup")
    response = api.post("/api/v1/contacts", {"external_id": "dup"}, format="json")
    assert response.status_code == 400
    assert "external_id" in response.json()["error"]["fields"]
    assert Contact.objects.filter(external_id="dup").count() == 1


def test_the_same_external_id_is_allowed_in_another_workspace(other_api, workspace):
    ContactFactory(workspace=workspace, external_id="shared")
    response = other_api.post("/api/v1/contacts", {"external_id": "shared"}, format="json")
    assert response.status_code == 201


def test_it_refuses_a_malformed_json_body(api):
    response = api.generic("POST", "/api/v1/contacts", "{not json",
                           content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_upsert_creates_then_updates(api, workspace):
    first = api.post("/api/v1/contacts/upsert", {"external_id": "u-1", "first_name": "A"},
                     format="json")
    assert first.status_code == 201
    second = api.post("/api/v1/contacts/upsert",
                      {"external_id": "u-1", "first_name": "B", "phone": "+14155552671"},
                      format="json")
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    contact = Contact.objects.get(workspace=workspace, external_id="u-1")
    assert (contact.first_name, contact.phone) == ("B", "+14155552671")


def test_upsert_validates_like_create(api):
    response = api.post("/api/v1/contacts/upsert", {"external_id": "u-2", "phone": "999"},
                        format="json")
    assert response.status_code == 400
    assert "phone" in response.json()["error"]["fields"]
    assert api.post("/api/v1/contacts/upsert", {}, format="json").status_code == 400
    assert Contact.objects.count() == 0


def test_it_lists_filters_searches_and_paginates(api, workspace):
    ContactFactory(workspace=workspace, external_id="a", email="ada@example.com",
                   first_name="Ada", phone="+14155552671")
    ContactFactory(workspace=workspace, external_id="b", email="bob@example.com",
                   first_name="Bob", phone="+14155552672")
    ContactFactory.create_batch(3, workspace=workspace)
    assert api.get("/api/v1/contacts").json()["count"] == 5
    assert [c["external_id"] for c in
            api.get("/api/v1/contacts?email=ADA@example.com").json()["results"]] == ["a"]
    assert [c["external_id"] for c in
            api.get("/api/v1/contacts?phone=%2B14155552672").json()["results"]] == ["b"]
    assert [c["external_id"] for c in
            api.get("/api/v1/contacts?external_id=a").json()["results"]] == ["a"]
    assert [c["external_id"] for c in
            api.get("/api/v1/contacts?search=bob").json()["results"]] == ["b"]
    page = api.get("/api/v1/contacts?page_size=2&page=2").json()
    assert page["count"] == 5 and len(page["results"]) == 2 and page["next"] and page["previous"]


def test_it_updates_and_deletes(api, workspace):
    contact = ContactFactory(workspace=workspace)
    response = api.patch(f"/api/v1/contacts/{contact.id}", {"last_name": "Lovelace"},
                         format="json")
    assert response.status_code == 200
    assert response.json()["last_name"] == "Lovelace"
    assert api.patch(f"/api/v1/contacts/{contact.id}", {"phone": "1"},
                     format="json").status_code == 400
    assert api.delete(f"/api/v1/contacts/{contact.id}").status_code == 204
    assert not Contact.objects.filter(id=contact.id).exists()


def _export(api, **params):
    import csv
    import io

    response = api.get("/api/v1/contacts/export", params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.streaming
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_export_streams_the_workspaces_contacts_as_csv(api, workspace):
    ada = ContactFactory(workspace=workspace, external_id="e-1", phone="+14155552671",
                         attributes={"city": "Zürich", "vip": True})
    ContactFactory(workspace=workspace, external_id="e-2", sms_subscribed=False)
    ContactFactory(external_id="elsewhere")  # another workspace's
    rows = _export(api, ordering="created_at")
    assert [row["external_id"] for row in rows] == ["e-1", "e-2"]
    assert rows[0]["id"] == str(ada.id)
    assert rows[0]["phone"] == "+14155552671"
    assert rows[0]["attributes"] == '{"city": "Zürich", "vip": true}'
    assert rows[1]["sms_subscribed"] == "False"
    assert list(rows[0]) == ["id", "external_id", "first_name", "last_name", "phone", "email",
                             "timezone", "locale", "sms_subscribed", "email_subscribed",
                             "attributes", "created_at", "updated_at"]


def test_the_export_takes_the_lists_filters(api, workspace):
    ContactFactory(workspace=workspace, external_id="f-1", sms_subscribed=False)
    ContactFactory(workspace=workspace, external_id="f-2")
    assert [row["external_id"] for row in _export(api, sms_subscribed="false")] == ["f-1"]
    assert _export(api, search="f-2")[0]["external_id"] == "f-2"


def test_an_export_with_a_bad_filter_answers_400(api):
    response = api.get("/api/v1/contacts/export", {"created_after": "yesterday"})
    assert response.status_code == 400
    assert "created_after" in response.json()["error"]["fields"]
