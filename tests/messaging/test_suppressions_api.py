"""GET/POST/DELETE /api/v1/suppressions: the workspace's suppression list."""
from __future__ import annotations

import pytest

from messaging.models import Suppression
from messaging.recipients.suppressions import suppression_add
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def add(api, **body):
    return api.post("/api/v1/suppressions", body, format="json")


def test_an_address_is_added_once_normalized_and_listed(api, workspace):
    first = add(api, channel="sms", address="+1 (415) 555-2671")
    again = add(api, channel="sms", address="+14155552671")
    email = add(api, channel="email", address="Ann@Example.com", reason="bounced")

    assert first.status_code == 201
    assert first.json()["address"] == "+14155552671"
    assert first.json()["reason"] == "manual"
    assert first.json()["source"].startswith("api:")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert email.json()["address"] == "ann@example.com"
    listed = api.get("/api/v1/suppressions").json()
    assert listed["count"] == 2
    assert [row["channel"] for row in api.get("/api/v1/suppressions?channel=email")
            .json()["results"]] == ["email"]
    by_address = api.get("/api/v1/suppressions?address=%2B1%20415%20555%202671").json()
    assert [row["id"] for row in by_address["results"]] == [first.json()["id"]]
    assert api.get("/api/v1/suppressions?reason=bounced").json()["count"] == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"channel": "sms", "address": "not a phone"}, "address"),
    ({"channel": "email", "address": "nobody"}, "address"),
    ({"channel": "fax", "address": "+14155552671"}, "channel"),
    ({"channel": "sms"}, "address"),
    ({"channel": "sms", "address": "+14155552671", "reason": "because"}, "reason"),
    ({"channel": "sms", "address": 14155552671}, "address"),
])
def test_bad_input_answers_400_naming_the_field_and_adds_nothing(api, body, field):
    response = add(api, **body)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Suppression.objects.exists()


def test_removal_by_id_and_by_address(api, workspace):
    row = add(api, channel="sms", address="+14155552671").json()
    other = add(api, channel="email", address="ann@example.com").json()

    assert api.delete(f"/api/v1/suppressions/{row['id']}").status_code == 204
    removed = api.delete("/api/v1/suppressions?channel=email&address=ANN@example.com")
    assert removed.status_code == 204
    assert not Suppression.objects.filter(pk__in=[row["id"], other["id"]]).exists()
    missing = api.delete("/api/v1/suppressions?channel=email&address=ann@example.com")
    assert missing.status_code == 404
    bad = api.delete("/api/v1/suppressions?channel=email&address=nope")
    assert bad.status_code == 400 and "address" in bad.json()["error"]["fields"]
    assert api.delete("/api/v1/suppressions?address=x").status_code == 400


def test_another_workspaces_rows_are_invisible_and_untouchable(api, other_api, workspace):
    theirs, _ = suppression_add(workspace=WorkspaceFactory(), channel="sms",
                                address="+14155552671", reason="stop")
    ours = add(api, channel="sms", address="+14155552671").json()

    assert [row["id"] for row in api.get("/api/v1/suppressions").json()["results"]] == [
        ours["id"]]
    assert api.get(f"/api/v1/suppressions/{theirs.pk}").status_code == 404
    assert api.delete(f"/api/v1/suppressions/{theirs.pk}").status_code == 404
    assert Suppression.objects.filter(pk=theirs.pk).exists()


def test_a_stronger_reason_replaces_an_unsubscribe_but_not_the_other_way(workspace):
    row, _ = suppression_add(workspace=workspace, channel="email", address="a@example.com",
                             reason="unsubscribed")
    row, created = suppression_add(workspace=workspace, channel="email",
                                   address="a@example.com", reason="bounced")
    assert (created, row.reason) == (False, "bounced")
    row, _ = suppression_add(workspace=workspace, channel="email", address="a@example.com",
                             reason="unsubscribed")
    assert Suppression.objects.get(pk=row.pk).reason == "bounced"
