"""The dead-letters REST API: filters, scoping, bulk replay counts, discard, export."""
from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import DeadLetter
from messaging.models import Message
from tests.factories import DeadLetterFactory, MessageFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def failed_letter(workspace, **fields) -> DeadLetter:
    """Return an open dead letter whose message is still failed (so it can be replayed)."""
    message = MessageFactory(workspace=workspace, channel=fields.pop("channel", "sms"),
                             status="failed", attempts=3, max_attempts=3)
    return DeadLetterFactory(workspace=workspace, source_id=str(message.pk),
                             channel=message.channel, **fields)


def ids(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [item["id"] for item in response.json()["results"]]


def test_the_list_filters_by_kind_channel_error_time_and_flow(api, workspace):
    old = DeadLetterFactory(workspace=workspace, created_at=timezone.now() - timedelta(days=2))
    sms = DeadLetterFactory(workspace=workspace, error="503 from provider", error_code="503")
    email = DeadLetterFactory(workspace=workspace, channel="email", error="bad address")
    step = DeadLetterFactory(workspace=workspace, kind="step", channel="", flow_id="f-1")
    DeadLetterFactory(workspace=WorkspaceFactory())
    assert ids(api.get("/api/v1/dead-letters")) == [step.pk, email.pk, sms.pk, old.pk]
    assert ids(api.get("/api/v1/dead-letters", {"kind": "step"})) == [step.pk]
    assert ids(api.get("/api/v1/dead-letters", {"channel": "email"})) == [email.pk]
    assert ids(api.get("/api/v1/dead-letters", {"error": "503"})) == [sms.pk]
    assert ids(api.get("/api/v1/dead-letters", {"flow": "f-1"})) == [step.pk]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert old.pk not in ids(api.get("/api/v1/dead-letters", {"since": since}))
    assert ids(api.get("/api/v1/dead-letters", {"until": since})) == [old.pk]
    page = api.get("/api/v1/dead-letters", {"page_size": 2}).json()
    assert page["count"] == 4 and len(page["results"]) == 2
    assert api.get("/api/v1/dead-letters", {"kind": "nope"}).status_code == 400


def test_another_workspaces_dead_letter_is_not_found(other_api, workspace):
    letter = failed_letter(workspace)
    assert other_api.get(f"/api/v1/dead-letters/{letter.pk}").status_code == 404
    assert other_api.post(f"/api/v1/dead-letters/{letter.pk}/retry").status_code == 404
    assert other_api.delete(f"/api/v1/dead-letters/{letter.pk}").status_code == 404


def test_a_replay_queues_the_same_message_with_a_fresh_attempt_budget(api, workspace):
    letter = failed_letter(workspace)
    response = api.post(f"/api/v1/dead-letters/{letter.pk}/retry")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "replayed"
    message = Message.objects.get(pk=letter.source_id)
    assert (message.status, message.attempts, message.max_attempts) == ("queued", 3, 6)
    assert message.failed_at is None


def test_a_message_that_is_no_longer_failed_is_refused_with_the_reason(api, workspace):
    letter = failed_letter(workspace)
    Message.objects.filter(pk=letter.source_id).update(status="sent")
    response = api.post(f"/api/v1/dead-letters/{letter.pk}/retry")
    assert response.status_code == 409
    assert response.json()["error"] == {"code": "not_replayable",
                                        "message": "The message is sent, not failed."}
    letter.refresh_from_db()
    assert (letter.status, letter.replay_result) == ("open", "refused: The message is sent, "
                                                             "not failed.")


def test_bulk_replay_answers_counts_and_skips_what_is_not_open(api, workspace):
    replayable = [failed_letter(workspace) for _ in range(3)]
    gone = failed_letter(workspace)
    Message.objects.filter(pk=gone.source_id).delete()
    failed_letter(workspace, status="discarded")
    failed_letter(workspace, channel="email")
    response = api.post("/api/v1/dead-letters/retry", {"channel": "sms", "limit": 10},
                        format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert {k: body[k] for k in ("matched", "replayed", "refused", "remaining")} == {
        "matched": 4, "replayed": 3, "refused": 1, "remaining": 0}
    assert body["refusals"] == [{"id": gone.pk, "reason": "The message no longer exists "
                                                          "(purged?)."}]
    assert all(Message.objects.get(pk=letter.source_id).status == "queued"
               for letter in replayable)
    again = api.post("/api/v1/dead-letters/retry", {"channel": "sms"}, format="json").json()
    assert (again["matched"], again["replayed"]) == (1, 0)  # only the refused one is open


def test_bulk_replay_stops_at_its_limit_and_says_what_remains(api, workspace):
    for _ in range(3):
        failed_letter(workspace)
    body = api.post("/api/v1/dead-letters/retry?limit=2").json()
    assert (body["replayed"], body["remaining"]) == (2, 1)
    assert api.post("/api/v1/dead-letters/retry", {"nope": 1},
                    format="json").status_code == 400


def test_delete_discards_an_open_entry_and_refuses_a_replayed_one(api, workspace):
    letter = failed_letter(workspace)
    assert api.delete(f"/api/v1/dead-letters/{letter.pk}").status_code == 204
    letter.refresh_from_db()
    assert letter.status == "discarded"
    assert api.post(f"/api/v1/dead-letters/{letter.pk}/retry").status_code == 409
    replayed = failed_letter(workspace, status="replayed")
    assert api.delete(f"/api/v1/dead-letters/{replayed.pk}").status_code == 409


def test_export_streams_csv_and_json_of_the_filtered_entries(api, workspace):
    first = DeadLetterFactory(workspace=workspace, error='quote " and, comma',
                              payload={"to": "+1415"})
    DeadLetterFactory(workspace=workspace, kind="step", channel="")
    DeadLetterFactory(workspace=WorkspaceFactory())
    response = api.get("/api/v1/dead-letters/export", {"format": "csv", "kind": "message"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(int(r["id"]), r["error"], json.loads(r["payload"])) for r in rows] == [
        (first.pk, 'quote " and, comma', {"to": "+1415"})]
    response = api.get("/api/v1/dead-letters/export", {"format": "json"})
    assert response.status_code == 200
    exported = json.loads(b"".join(response.streaming_content))
    assert [item["kind"] for item in exported] == ["message", "step"]
    DeadLetterFactory(workspace=workspace, kind="step", error="=HYPERLINK(\"http://x\")")
    response = api.get("/api/v1/dead-letters/export", {"format": "csv", "kind": "step"})
    errors = [row["error"] for row in csv.DictReader(
        io.StringIO(b"".join(response.streaming_content).decode()))]
    assert errors[-1] == "'=HYPERLINK(\"http://x\")"  # not run as a formula
    assert api.get("/api/v1/dead-letters/export", {"format": "xml"}).status_code in (400, 404)
