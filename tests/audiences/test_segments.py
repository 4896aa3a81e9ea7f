from __future__ import annotations

import pytest

from audiences import broadcasts, segments
from audiences.models import Broadcast, BroadcastRecipient, Segment
from flows import services
from flows.models import BulkStart, Execution
from tests.factories import ContactFactory, FlowFactory, WorkspaceFactory
from tests.support.waiting import wait_until

URL = "/api/v1/segments"
BERLIN = {"all": [{"field": "contact.attributes.city", "op": "eq", "value": "Berlin"}]}
SMS_OPTED_IN = {"all": [{"field": "contact.consent.sms", "op": "eq", "value": True}]}


def create(api, name="Berlin", rules=None):
    return api.post(URL, {"name": name, "rules": rules or BERLIN}, format="json")


@pytest.mark.django_db
def test_a_segment_counts_and_previews_its_contacts_live(api, workspace):
    ada = ContactFactory(workspace=workspace, first_name="Ada", attributes={"city": "Berlin"})
    ContactFactory(workspace=workspace, attributes={"city": "Paris"})
    ContactFactory(attributes={"city": "Berlin"})  # another workspace's
    response = create(api)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["name"], body["rules"]) == ("Berlin", BERLIN)
    preview = api.get(f"{URL}/{body['id']}/preview").json()
    assert preview["count"] == 1
    assert [(c["id"], c["first_name"]) for c in preview["contacts"]] == [(str(ada.pk), "Ada")]
    more = ContactFactory.create_batch(24, workspace=workspace, attributes={"city": "Berlin"})
    preview = api.get(f"{URL}/{body['id']}/preview").json()
    assert preview["count"] == 25
    first = sorted([str(ada.pk), *(str(c.pk) for c in more)])[:segments.PREVIEW_SIZE]
    assert [c["id"] for c in preview["contacts"]] == first


@pytest.mark.django_db
def test_rules_the_database_cannot_decide_count_across_batches(api, workspace,
                                                               monkeypatch):
    monkeypatch.setattr(segments, "SCAN_BATCH", 2)
    adults = [ContactFactory(workspace=workspace, attributes={"age": age})
              for age in (18, "21", 40.5, " 30")]
    for age in (17, "17", "adult", None):
        ContactFactory(workspace=workspace, attributes={"age": age})
    ContactFactory(workspace=workspace, attributes={})
    response = create(api, "Adults", {"all": [
        {"field": "contact.attributes.age", "op": "gte", "value": 18}]})
    preview = api.get(f"{URL}/{response.json()['id']}/preview").json()
    assert preview["count"] == 4
    assert [c["id"] for c in preview["contacts"]] == sorted(str(c.pk) for c in adults)


@pytest.mark.django_db
def test_rules_see_consent_and_other_segments(api, workspace):
    both = ContactFactory(workspace=workspace, attributes={"city": "Berlin"})
    ContactFactory(workspace=workspace, attributes={"city": "Berlin"}, sms_subscribed=False)
    parisian = ContactFactory(workspace=workspace, attributes={"city": "Paris"})
    berlin = create(api).json()
    reachable = create(api, "Reachable in Berlin", {"all": [
        {"segment": berlin["id"]}, *SMS_OPTED_IN["all"]]})
    assert reachable.status_code == 201, reachable.json()
    preview = api.get(f"{URL}/{reachable.json()['id']}/preview").json()
    assert (preview["count"], [c["id"] for c in preview["contacts"]]) == (1, [str(both.pk)])
    # A change to the included segment changes the segment built on it.
    paris = {"all": [{"field": "contact.attributes.city", "op": "eq", "value": "Paris"}]}
    assert api.patch(f"{URL}/{berlin['id']}", {"rules": paris},
                     format="json").status_code == 200
    preview = api.get(f"{URL}/{reachable.json()['id']}/preview").json()
    assert [c["id"] for c in preview["contacts"]] == [str(parisian.pk)]


@pytest.mark.django_db
def test_segments_may_not_include_each_other_in_a_cycle(api, workspace):
    first = create(api, "First").json()
    second = create(api, "Second", {"any": [{"segment": first["id"]}]}).json()
    response = api.patch(f"{URL}/{first['id']}", {"rules": {"all": [
        {"segment": second["id"]}]}}, format="json")
    assert response.status_code == 400
    assert "cycle" in response.json()["error"]["fields"]["rules"][0]
    itself = api.patch(f"{URL}/{first['id']}", {"rules": {"all": [{"segment": first["id"]}]}},
                       format="json")
    assert itself.status_code == 400 and "rules" in itself.json()["error"]["fields"]
    assert Segment.objects.get(pk=first["id"]).rules == BERLIN


@pytest.mark.django_db
def test_an_included_segment_cannot_be_deleted(api, workspace):
    first = create(api, "First").json()
    second = create(api, "Second", {"any": [{"segment": first["id"]}]}).json()
    response = api.delete(f"{URL}/{first['id']}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "segment_in_use"
    assert api.delete(f"{URL}/{second['id']}").status_code == 204
    assert api.delete(f"{URL}/{first['id']}").status_code == 204
    assert not Segment.objects.exists()


@pytest.mark.parametrize("body,field", [
    ({"rules": {"all": [{"field": "trigger.x", "op": "eq", "value": 1}]}}, "rules"),
    ({"rules": {"all": [{"field": "contact.x", "op": "like"}]}}, "rules"),
    ({"rules": {"all": []}}, "rules"),
    ({"rules": "city = Berlin"}, "rules"),
    ({"rules": {"all": [{"segment": "not-a-uuid"}]}}, "rules"),
    ({"rules": {"all": [{"segment": "7f1c1a9e-0000-4000-8000-000000000000"}]}}, "rules"),
    ({"name": ""}, "name"),
    ({"name": "Taken"}, "name"),
])
@pytest.mark.django_db
def test_bad_input_answers_400_naming_the_field_and_writes_nothing(api, workspace, body,
                                                                   field):
    create(api, "Taken")
    response = api.post(URL, {"name": "New", "rules": BERLIN, **body}, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert Segment.objects.count() == 1


@pytest.mark.django_db
def test_another_workspaces_segment_is_not_found_nor_included(api, other_api, workspace):
    segment_id = create(api).json()["id"]
    assert other_api.get(f"{URL}/{segment_id}").status_code == 404
    assert other_api.get(f"{URL}/{segment_id}/preview").status_code == 404
    assert other_api.patch(f"{URL}/{segment_id}", {"name": "x"},
                           format="json").status_code == 404
    assert other_api.delete(f"{URL}/{segment_id}").status_code == 404
    assert other_api.get(URL).json()["count"] == 0
    response = other_api.post(URL, {"name": "Mine", "rules": {"all": [
        {"segment": segment_id}]}}, format="json")
    assert response.status_code == 400 and "rules" in response.json()["error"]["fields"]
    assert api.get(URL, {"search": "Berl"}).json()["count"] == 1


@pytest.mark.django_db
def test_a_broadcast_to_a_segment_copies_its_rules(api, other_api, workspace):
    berlin = ContactFactory(workspace=workspace, attributes={"city": "Berlin"})
    ContactFactory(workspace=workspace, attributes={"city": "Paris"})
    segment = create(api).json()
    outer = create(api, "Outer", {"all": [{"segment": segment["id"]}]}).json()
    body = {"name": "Sale", "channel": "sms", "content": {"body": "Hi"}}
    response = api.post("/api/v1/broadcasts", {**body, "segment_id": outer["id"]},
                        format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["segment_id"] == outer["id"]
    assert created["rules"] == {"all": [BERLIN]}
    broadcast = Broadcast.objects.get(pk=created["id"])
    while broadcasts.broadcast_run_batch(broadcast=Broadcast.objects.get(pk=broadcast.pk)):
        pass
    assert list(BroadcastRecipient.objects.filter(broadcast=broadcast)
                .values_list("contact_id", flat=True)) == [berlin.pk]
    # Two audiences, or another workspace's segment: 400 on the field, nothing written.
    both = api.post("/api/v1/broadcasts", {**body, "segment_id": segment["id"],
                                           "contact_ids": [str(berlin.pk)]}, format="json")
    assert both.status_code == 400 and "segment_id" in both.json()["error"]["fields"]
    foreign = other_api.post("/api/v1/broadcasts", {**body, "segment_id": segment["id"]},
                             format="json")
    assert foreign.status_code == 400 and "segment_id" in foreign.json()["error"]["fields"]
    assert Broadcast.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_broadcast_to_a_segment_sends_to_its_reachable_contacts(api, workspace,
                                                                  live_worker, dispatcher):
    ada = ContactFactory(workspace=workspace, phone="+14155552671",
                         attributes={"city": "Berlin"})
    ContactFactory(workspace=workspace, phone="+14155552672", attributes={"city": "Berlin"},
                   sms_subscribed=False)
    ContactFactory(workspace=workspace, phone="+14155552673", attributes={"city": "Paris"})
    segment = create(api, "Reachable in Berlin", {"all": [*BERLIN["all"],
                                                          *SMS_OPTED_IN["all"]]}).json()
    response = api.post("/api/v1/broadcasts", {"name": "Sale", "channel": "sms",
                                               "content": {"body": "Hi"},
                                               "segment_id": segment["id"]}, format="json")
    assert response.status_code == 201, response.json()
    broadcast_id = response.json()["id"]

    def completed() -> bool:
        broadcasts.broadcasts_tick()
        return Broadcast.objects.get(pk=broadcast_id).status == "completed"

    wait_until(completed, timeout=60)
    stats = api.get(f"/api/v1/broadcasts/{broadcast_id}").json()["stats"]
    assert (stats["targeted"], stats["sent"], stats["suppressed"]) == (1, 1, 0)
    recipient = BroadcastRecipient.objects.get(broadcast_id=broadcast_id)
    assert (recipient.contact_id, recipient.message.status) == (ada.pk, "sent")


@pytest.mark.django_db
def test_a_flows_bulk_start_takes_a_segment(api, workspace):
    flow = FlowFactory(workspace=workspace, publish=True)
    berlin = ContactFactory(workspace=workspace, attributes={"city": "Berlin"})
    ContactFactory(workspace=workspace, attributes={"city": "Paris"})
    segment = create(api).json()
    url = f"/api/v1/flows/{flow.pk}/executions/bulk"
    response = api.post(url, {"segment_id": segment["id"]}, format="json")
    assert response.status_code == 202, response.json()
    job = BulkStart.objects.get(pk=response.json()["id"])
    assert job.filter == BERLIN
    while services.bulk_start_run_batch(job=BulkStart.objects.get(pk=job.pk)):
        pass
    assert list(Execution.objects.filter(flow=flow).values_list("contact_id", flat=True)) == [
        berlin.pk]
    both = api.post(url, {"segment_id": segment["id"], "filter": BERLIN}, format="json")
    assert both.status_code == 400
    foreign = Segment.objects.create(workspace=WorkspaceFactory(), name="Theirs",
                                     rules=BERLIN)
    response = api.post(url, {"segment_id": str(foreign.pk)}, format="json")
    assert response.status_code == 400
    assert "segment_id" in response.json()["error"]["fields"]
    assert BulkStart.objects.count() == 1


@pytest.mark.django_db
def test_a_change_that_would_nest_an_including_segment_too_deep_is_refused(api, workspace):
    inner = create(api, "Inner").json()
    outer = inner
    for depth in range(8):  # each inclusion nests one group deeper
        outer = create(api, f"Level {depth}", {"all": [{"segment": outer["id"]}]}).json()
    assert api.get(f"{URL}/{outer['id']}/preview").status_code == 200
    deeper = {"all": [{"any": [{"all": [BERLIN]}]}]}
    response = api.patch(f"{URL}/{inner['id']}", {"rules": deeper}, format="json")
    assert response.status_code == 400, response.json()
    assert "Level" in response.json()["error"]["fields"]["rules"][0]
    assert Segment.objects.get(pk=inner["id"]).rules == BERLIN
    assert api.get(f"{URL}/{outer['id']}/preview").status_code == 200


@pytest.mark.django_db
def test_the_same_idempotency_key_creates_one_segment(api, workspace):
    body = {"name": "Berlin", "rules": BERLIN}
    first = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="seg-1")
    again = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="seg-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = api.post(URL, {**body, "name": "Paris"}, format="json",
                     HTTP_IDEMPOTENCY_KEY="seg-1")
    assert other.status_code == 422
    assert Segment.objects.count() == 1
