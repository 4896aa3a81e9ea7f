from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audiences import imports
from audiences.models import ContactImport, ContactImportChunk, ContactImportError
from core.models import Contact
from tests.factories import ContactFactory
from tests.support.waiting import wait_until

URL = "/api/v1/contacts/imports"


def upload(api, content: str | bytes, name: str = "contacts.csv", headers: dict | None = None,
           **fields: object):
    data = content.encode() if isinstance(content, str) else content
    body = {"file": SimpleUploadedFile(name, data),
            **{key: json.dumps(value) if isinstance(value, dict) else value
               for key, value in fields.items()}}
    return api.post(URL, body, format="multipart", **(headers or {}))


def finished(import_id: str) -> ContactImport:
    wait_until(lambda: ContactImport.objects.get(pk=import_id).status in ("completed", "failed"),
               timeout=60)
    return ContactImport.objects.get(pk=import_id)


def run(job_id: str) -> ContactImport:
    """Run the import in the test's process (the worker path, without the broker)."""
    while imports.import_with_retry(job_id=job_id, seconds=60):
        pass
    return ContactImport.objects.get(pk=job_id)


CSV = ("External ID,Mobile,E-mail,First,City,SMS ok\n"
       "c-1,+49 30 901820,Ada@Example.com,Ada,Berlin,yes\n"
       "c-2,0301234567,bob@example.com,Bob,Hamburg,no\n"
       "c-3,12345,carol@example.com,Carol,Munich,yes\n"
       ",,,Nobody,Nowhere,\n"
       "c-4,,dan@,Dan,Köln,maybe\n")
MAPPING = {"external_id": "External ID", "phone": "Mobile", "email": "E-mail",
           "first_name": "First", "attributes.city": "City", "sms_subscribed": "SMS ok"}


@pytest.mark.django_db(transaction=True)
def test_a_csv_import_runs_on_the_worker_and_reports_its_failed_rows(api, workspace,
                                                                      live_worker):
    response = upload(api, CSV, mapping=MAPPING, default_region="de")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "pending"
    assert body["default_region"] == "DE"

    job = finished(body["id"])
    assert job.status == "completed", job.error
    detail = api.get(f"{URL}/{job.pk}").json()
    assert (detail["rows_total"], detail["rows_done"], detail["rows_created"],
            detail["rows_updated"], detail["rows_failed"]) == (5, 5, 2, 0, 3)
    assert [(e["row"], e["field"]) for e in detail["first_errors"]] == [
        (3, "phone"), (4, "external_id"), (5, "email")]
    ada = Contact.objects.get(workspace=workspace, external_id="c-1")
    assert (ada.phone, ada.email, ada.first_name, ada.attributes, ada.sms_subscribed) == (
        "+4930901820", "ada@example.com", "Ada", {"city": "Berlin"}, True)
    bob = Contact.objects.get(workspace=workspace, external_id="c-2")
    assert (bob.phone, bob.sms_subscribed) == ("+49301234567", False)
    assert not ContactImportChunk.objects.filter(contact_import=job).exists()

    errors = api.get(detail["error_file"])
    assert errors.status_code == 200
    assert errors["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(errors.streaming_content).decode())))
    assert rows[0] == ["row", "field", "error", "External ID", "Mobile", "E-mail", "First",
                       "City", "SMS ok"]
    assert rows[1][:4] == ["3", "phone", "'12345' is not a valid phone number.", "c-3"]
    assert rows[3][0:2] == ["5", "email"] and rows[3][3] == "c-4"


@pytest.mark.django_db(transaction=True)
def test_a_second_import_updates_the_contacts_it_matches(api, workspace):
    existing = ContactFactory(workspace=workspace, external_id=None, phone="+4930901820",
                              email="old@example.com", attributes={"tier": "gold"})
    by_email = ContactFactory(workspace=workspace, external_id=None, phone="",
                              email="eve@example.com")
    by_id = ContactFactory(workspace=workspace, external_id="k-9", first_name="Old")
    content = ("phone,email,first_name,external_id,attributes.city\n"
               "+4930901820,,Ada,,Berlin\n"
               ",EVE@example.com,Eve,,\n"
               ",,New,k-9,\n"
               ",,Twice,k-9,Paris\n")
    job = run(upload(api, content).json()["id"])
    assert (job.rows_created, job.rows_updated, job.rows_failed) == (0, 4, 0)
    existing.refresh_from_db()
    assert existing.first_name == "Ada"
    assert existing.email == "old@example.com"  # a blank cell leaves the field as it is
    assert existing.attributes == {"tier": "gold", "city": "Berlin"}
    by_email.refresh_from_db()
    assert by_email.first_name == "Eve"
    by_id.refresh_from_db()
    assert (by_id.first_name, by_id.attributes) == ("Twice", {"city": "Paris"})
    assert Contact.objects.filter(workspace=workspace).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_locale_column_sets_and_updates_the_contacts_locale(api, workspace):
    ContactFactory(workspace=workspace, external_id="l-1", locale="en")
    content = "external_id,locale\nl-1,de-AT\nl-2,fr\nl-3,deutsch\n"
    job = run(upload(api, content).json()["id"])
    assert (job.rows_created, job.rows_updated, job.rows_failed) == (1, 1, 1)
    locales = dict(Contact.objects.filter(workspace=workspace)
                   .values_list("external_id", "locale"))
    assert locales == {"l-1": "de-AT", "l-2": "fr"}
    assert ContactImportError.objects.get(contact_import=job).field == "locale"


@pytest.mark.django_db(transaction=True)
def test_rows_repeated_in_one_file_make_one_contact(api, workspace):
    content = "external_id,first_name\nr-1,A\nr-1,B\nr-2,C\n"
    job = run(upload(api, content).json()["id"])
    assert (job.rows_created, job.rows_updated) == (2, 1)
    assert Contact.objects.get(workspace=workspace, external_id="r-1").first_name == "B"


@pytest.mark.django_db(transaction=True)
def test_a_json_lines_import_keeps_attribute_types(api, workspace):
    lines = [{"id": "j-1", "mail": "j@example.com", "vip": True, "score": 3},
             {"id": "j-2", "mail": "k@example.com", "vip": False, "score": None},
             "not an object"]
    content = "\n".join(json.dumps(line) for line in lines[:2]) + "\n\n"
    response = upload(api, content, name="people.jsonl",
                      mapping={"external_id": "id", "email": "mail", "attributes.vip": "vip",
                               "attributes.score": "score"})
    assert response.json()["format"] == "jsonl"
    job = run(response.json()["id"])
    assert job.status == "completed" and job.rows_created == 2
    assert Contact.objects.get(external_id="j-1").attributes == {"vip": True, "score": 3}
    assert Contact.objects.get(external_id="j-2").attributes == {"vip": False}

    broken = content + json.dumps(lines[2]) + "\n"
    job = run(upload(api, broken, name="people.jsonl", mapping={"external_id": "id"})
              .json()["id"])
    assert job.status == "failed"
    assert job.error == "Line 4 is not a JSON object."
    assert job.rows_done == 0  # the file is read through before anything is written


@pytest.mark.django_db(transaction=True)
def test_a_file_that_is_not_utf8_fails_without_writing(api, workspace):
    job = run(upload(api, "external_id,first_name\nx-1,Jos\xe9\n".encode("latin-1"))
              .json()["id"])
    assert job.status == "failed"
    assert "not UTF-8" in job.error
    assert not Contact.objects.filter(workspace=workspace).exists()


@pytest.mark.django_db(transaction=True)
def test_the_same_file_with_the_same_idempotency_key_imports_once(api, workspace):
    key = {"HTTP_IDEMPOTENCY_KEY": "import-1"}
    first = upload(api, "external_id\ni-1\n", headers=key)
    again = upload(api, "external_id\ni-1\n", headers=key)
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert ContactImport.objects.filter(workspace=workspace).count() == 1
    other = upload(api, "external_id\ni-2\n", headers=key)
    assert other.status_code == 422


@pytest.mark.django_db(transaction=True)
def test_a_batch_another_worker_committed_is_not_written_twice(api, workspace):
    job_id = upload(api, "external_id\na-1\na-2\n").json()["id"]
    job = ContactImport.objects.get(pk=job_id)
    assert imports.import_start(job=job)
    stale = ContactImport.objects.get(pk=job_id)
    run(job_id)
    rows = [imports.row_clean({"external_id": "a-3"}, number=1, mapping={}, region="")]
    assert not imports.batch_write(job=stale, rows=rows, failed=[], done_before=0)
    assert not Contact.objects.filter(external_id="a-3").exists()
    assert ContactImport.objects.get(pk=job_id).rows_done == 2


@pytest.mark.django_db(transaction=True)
def test_an_interrupted_import_resumes_after_its_last_batch(api, workspace, monkeypatch):
    monkeypatch.setattr(imports, "IMPORT_BATCH", 2)
    content = "external_id\n" + "".join(f"b-{n}\n" for n in range(5))
    job_id = upload(api, content).json()["id"]
    job = ContactImport.objects.get(pk=job_id)
    assert imports.import_run(job=job, seconds=0) is True  # one batch, then it hands over
    assert ContactImport.objects.get(pk=job_id).rows_done == 2
    job = run(job_id)
    assert (job.status, job.rows_done, job.rows_created) == ("completed", 5, 5)


@pytest.mark.django_db(transaction=True)
def test_the_sweep_requeues_an_import_whose_task_was_lost(api, workspace, live_worker,
                                                          settings):
    from django.utils import timezone

    settings.IMPORT_STALL_SECONDS = 0
    job = ContactImport.objects.create(workspace=workspace, format="csv", size_bytes=13)
    ContactImportChunk.objects.create(contact_import=job, seq=0, data=b"external_id\ns-1\n")
    ContactImport.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - timezone.timedelta(seconds=5))
    assert imports.imports_sweep() == 1
    assert finished(str(job.pk)).status == "completed"
    assert Contact.objects.filter(workspace=workspace, external_id="s-1").exists()


@pytest.mark.parametrize("fields,content,field", [
    ({"mapping": {"nickname": "Nick"}}, "external_id\nx\n", "mapping"),
    ({"mapping": {"phone": "Mobile"}}, "external_id,phone\nx,+14155552671\n", "mapping"),
    ({"mapping": "[1, 2]"}, "external_id\nx\n", "mapping"),
    ({"mapping": "{not json"}, "external_id\nx\n", "mapping"),
    ({"default_region": "XX"}, "external_id\nx\n", "default_region"),
    ({"format": "xlsx"}, "external_id\nx\n", "format"),
    ({}, "first_name,city\nAda,Berlin\n", "file"),
    ({}, "", "file"),
])
@pytest.mark.django_db
def test_a_bad_upload_answers_400_naming_the_field_and_stores_nothing(api, fields, content,
                                                                       field):
    response = upload(api, content, **fields)
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert not ContactImport.objects.exists()


@pytest.mark.django_db
def test_an_upload_without_a_file_answers_400(api):
    response = api.post(URL, {"mapping": "{}"}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_a_file_over_the_size_limit_is_refused(api, settings):
    settings.IMPORT_MAX_BYTES = 10
    response = upload(api, "external_id\n123456789\n")
    assert response.status_code == 400
    assert "file" in response.json()["error"]["fields"]


@pytest.mark.django_db(transaction=True)
def test_a_file_over_the_row_limit_fails_before_writing(api, workspace, settings):
    settings.IMPORT_MAX_ROWS = 2
    job = run(upload(api, "external_id\nm-1\nm-2\nm-3\n").json()["id"])
    assert job.status == "failed" and "3 rows" in job.error
    assert not Contact.objects.filter(workspace=workspace).exists()


@pytest.mark.django_db
def test_another_workspaces_import_is_not_found(api, other_api):
    job_id = upload(api, "external_id\nw-1\n").json()["id"]
    assert other_api.get(f"{URL}/{job_id}").status_code == 404
    assert other_api.get(f"{URL}/{job_id}/errors.csv").status_code == 404
    assert other_api.get(URL).json()["count"] == 0
    assert api.get(URL, {"status": "pending"}).json()["count"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_quoted_field_may_hold_a_newline_and_a_file_spans_chunks(api, workspace,
                                                                   monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_BYTES", 16)
    content = 'external_id,attributes.note\nq-1,"two\nlines"\nq-2,Zoë ünïcode\n'
    job = run(upload(api, content).json()["id"])
    assert job.status == "completed", job.error
    assert ContactImportChunk.objects.count() == 0
    assert Contact.objects.get(external_id="q-1").attributes == {"note": "two\nlines"}
    assert Contact.objects.get(external_id="q-2").attributes == {"note": "Zoë ünïcode"}


@pytest.mark.django_db
def test_the_error_rows_of_a_json_lines_import_carry_the_line(workspace):
    job = ContactImport.objects.create(workspace=workspace, format="jsonl")
    ContactImportError.objects.create(contact_import=job, row=2, field="phone",
                                      message="bad", record={"phone": "1"})
    assert list(imports.error_rows(job=job)) == [
        ["row", "field", "error", "record"], [2, "phone", "bad", '{"phone": "1"}']]


def failed_import(workspace, errors: int) -> ContactImport:
    """Return a completed import with `errors` failed rows (rows 2, 3, ...)."""
    job = ContactImport.objects.create(workspace=workspace, format="csv", status="completed",
                                       rows_total=errors, rows_done=errors,
                                       rows_failed=errors)
    ContactImportError.objects.bulk_create([
        ContactImportError(contact_import=job, row=row, field="phone", message="bad")
        for row in range(2, errors + 2)])
    return job


@pytest.mark.django_db
def test_the_list_reads_a_pages_first_errors_in_one_query(api, workspace):
    failed_import(workspace, imports.FIRST_ERRORS + 5)
    api.get(URL)  # the key's first use of the test is recorded once
    with CaptureQueriesContext(connection) as one:
        assert api.get(URL).status_code == 200
    failed_import(workspace, 2)
    ContactImport.objects.create(workspace=workspace, format="csv", status="completed")
    with CaptureQueriesContext(connection) as three:
        listed = api.get(URL).json()["results"]
    assert [[e["row"] for e in item["first_errors"]] for item in listed] == [
        [], [2, 3], list(range(2, imports.FIRST_ERRORS + 2))]
    assert len(three.captured_queries) == len(one.captured_queries)
