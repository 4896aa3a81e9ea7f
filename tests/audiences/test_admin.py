from __future__ import annotations

import json

import pytest

from audiences.models import Broadcast, ContactImport, ContactImportError, Segment
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_the_import_and_broadcast_pages_render(staff, workspace):
    job = ContactImport.objects.create(workspace=workspace, format="csv", filename="a.csv")
    ContactImportError.objects.create(contact_import=job, row=2, field="phone",
                                      message="'1' is not a valid phone number.")
    broadcast = Broadcast.objects.create(workspace=workspace, name="news", channel="sms",
                                         content={"body": "hi"})
    for url in ["/admin/audiences/contactimport/",
                f"/admin/audiences/contactimport/{job.pk}/change/",
                "/admin/audiences/broadcast/",
                f"/admin/audiences/broadcast/{broadcast.pk}/change/"]:
        response = staff.get(url)
        assert response.status_code == 200, url
    page = staff.get(f"/admin/audiences/contactimport/{job.pk}/change/").content.decode()
    assert "is not a valid phone number" in page
    assert staff.get("/admin/audiences/contactimport/add/").status_code == 403


def test_the_admin_cancels_a_broadcast(staff, workspace):
    contact = ContactFactory(workspace=workspace)
    broadcast = Broadcast.objects.create(workspace=workspace, name="news", channel="sms",
                                         content={"body": "hi"}, contact_ids=[str(contact.pk)],
                                         status="sending")
    done = Broadcast.objects.create(workspace=workspace, name="old", channel="sms",
                                    content={"body": "hi"}, status="completed")
    staff.post("/admin/audiences/broadcast/", {"action": "cancel",
                                               "_selected_action": [broadcast.pk, done.pk]})
    assert Broadcast.objects.get(pk=broadcast.pk).status == "cancelled"
    assert Broadcast.objects.get(pk=done.pk).status == "completed"


def test_the_admin_edits_segments_checking_their_rules(staff, workspace):
    rules = '{"all": [{"field": "contact.attributes.city", "op": "eq", "value": "Berlin"}]}'
    response = staff.post("/admin/audiences/segment/add/", {
        "workspace": workspace.pk, "name": "Berlin", "rules": rules})
    assert response.status_code == 302, response.content.decode()[:2000]
    segment = Segment.objects.get()
    assert segment.rules["all"][0]["value"] == "Berlin"
    cycle = staff.post(f"/admin/audiences/segment/{segment.pk}/change/", {
        "workspace": workspace.pk, "name": "Berlin",
        "rules": json.dumps({"all": [{"segment": str(segment.pk)}]})})
    assert cycle.status_code == 200 and "cycle" in cycle.content.decode()
    bad = staff.post("/admin/audiences/segment/add/", {
        "workspace": workspace.pk, "name": "Bad", "rules": '{"all": [{"field": "x.y"}]}'})
    assert bad.status_code == 200 and "missing operator" in bad.content.decode()
    assert Segment.objects.count() == 1
    assert staff.get("/admin/audiences/segment/").status_code == 200


def test_the_admin_refuses_a_change_that_breaks_an_including_segment(staff, workspace):
    rules = {"all": [{"field": "contact.attributes.city", "op": "eq", "value": "Berlin"}]}
    inner = Segment.objects.create(workspace=workspace, name="Inner", rules=rules)
    outer = inner
    for depth in range(8):
        outer = Segment.objects.create(workspace=workspace, name=f"Level {depth}",
                                       rules={"all": [{"segment": str(outer.pk)}]})
    response = staff.post(f"/admin/audiences/segment/{inner.pk}/change/", {
        "workspace": workspace.pk, "name": "Inner",
        "rules": json.dumps({"all": [{"any": [{"all": [rules]}]}]})})
    assert response.status_code == 200 and "Level" in response.content.decode()
    assert Segment.objects.get(pk=inner.pk).rules == rules
