"""Contact imports: a CSV or JSON Lines file upserted into contacts in the background.

The upload is copied into PostgreSQL in CHUNK_BYTES pieces (any worker on any machine can
read it; memory holds one piece at a time), then a task parses it as a stream and upserts
IMPORT_BATCH rows per transaction. Each batch's contacts, its failed rows and the
import's counters commit together, and the counter update is conditional on the rows
done so far: a second worker on the same import (a sweep after a stall) changes nothing,
and a worker killed mid-file resumes after the last committed batch.

A row matches an existing contact by external_id when it has one, else by phone (E.164),
else by e-mail (lower case). Blank cells leave the contact's field as it is; attribute
columns are merged into the contact's attributes.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from audiences.models import ContactImport, ContactImportChunk, ContactImportError
from audiences.publishing import RUN_IMPORT, send, send_on_commit
from core.models import Contact, Workspace, validate_locale, validate_timezone
from core.phones import normalize_phone

# One stored piece of an upload: a 100 MB file is 100 inserts, and a worker holds one.
CHUNK_BYTES = 1024 * 1024
# One batch: three look-ups, one bulk INSERT (and an UPDATE for the matched), one counter
# update; ~1,000 rows keep a transaction well under a second and the statement small.
IMPORT_BATCH = 1000
# The first errors an import's answer lists; all of them are in the error file.
FIRST_ERRORS = 20

TEXT_FIELDS = {"external_id": 200, "first_name": 100, "last_name": 100}
BOOL_FIELDS = ("sms_subscribed", "email_subscribed")
FIELDS = (*TEXT_FIELDS, "phone", "email", "timezone", "locale", *BOOL_FIELDS)
ATTRIBUTE_PREFIX = "attributes."
KEYS = ("external_id", "phone", "email")
TRUE = {"true", "yes", "y", "1", "t", "on"}
FALSE = {"false", "no", "n", "0", "f", "off"}


class ImportInvalid(Exception):
    """The upload cannot be imported; `fields` maps each refused input to its reasons."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()))
        self.fields = fields


class FileUnreadable(Exception):
    """The stored file is not what its format says (not UTF-8, a bad JSON line, too long)."""


class RowInvalid(Exception):
    """One row cannot be imported; `field` names the contact field at fault."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


# --- The upload ------------------------------------------------------------------------


def mapping_clean(mapping: Any) -> dict[str, str]:
    """Return the mapping (contact field -> column); raise ImportInvalid naming a bad one."""
    if mapping in (None, ""):
        return {}
    if not isinstance(mapping, dict):
        raise ImportInvalid({"mapping": ["Must be a JSON object: contact field -> column."]})
    problems = []
    for target, column in mapping.items():
        if target not in FIELDS and not (target.startswith(ATTRIBUTE_PREFIX)
                                         and len(target) > len(ATTRIBUTE_PREFIX)):
            problems.append(f"Unknown contact field '{target}' (choose from "
                            f"{', '.join(FIELDS)} or attributes.<name>).")
        elif not isinstance(column, str) or not column:
            problems.append(f"The column for '{target}' must be a non-empty string.")
    if problems:
        raise ImportInvalid({"mapping": problems})
    return dict(mapping)


def region_clean(region: str) -> str:
    """Return the default phone region in upper case; raise ImportInvalid for a bad one."""
    import phonenumbers

    region = (region or "").strip().upper()
    if region and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ImportInvalid({"default_region": [
            f"'{region}' is not a two-letter region code (such as DE or US)."]})
    return region


def import_create(*, workspace: Workspace, chunks: Iterable[bytes], filename: str,
                  file_format: str, mapping: Any = None, default_region: str = "",
                  size: int) -> ContactImport:
    """Store the upload and queue its import; raise ImportInvalid, having stored nothing,
    for a bad mapping, region, size or (CSV) header."""
    errors: dict[str, list[str]] = {}
    for check in (lambda: mapping_clean(mapping), lambda: region_clean(default_region)):
        try:
            check()
        except ImportInvalid as exc:
            errors.update(exc.fields)
    if file_format not in ContactImport.Format.values:
        errors["format"] = [f"Choose from {', '.join(ContactImport.Format.values)}."]
    if size > settings.IMPORT_MAX_BYTES:
        errors["file"] = [f"The file is larger than {settings.IMPORT_MAX_BYTES} bytes."]
    elif size == 0:
        errors["file"] = ["The file is empty."]
    if errors:
        raise ImportInvalid(errors)
    with transaction.atomic():
        job = ContactImport.objects.create(
            workspace=workspace, filename=filename[:255], format=file_format,
            mapping=mapping_clean(mapping), default_region=region_clean(default_region))
        digest = hashlib.sha256()
        pieces = _rechunk(chunks)
        for seq, piece in enumerate(pieces):
            digest.update(piece)
            ContactImportChunk.objects.create(contact_import=job, seq=seq, data=piece)
            if seq == 0 and file_format == ContactImport.Format.CSV:
                job.columns = _header_check(piece, job.mapping)
        job.sha256 = digest.hexdigest()
        job.size_bytes = size
        job.save(update_fields=["columns", "sha256", "size_bytes"])
        send_on_commit(RUN_IMPORT, str(job.pk))
    return job


def _rechunk(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the upload again in CHUNK_BYTES pieces (the last may be shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer.extend(chunk)
        while len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer[:CHUNK_BYTES])
            del buffer[:CHUNK_BYTES]
    if buffer:
        yield bytes(buffer)


def _header_check(first: bytes, mapping: dict[str, str]) -> list[str]:
    """Return the CSV header; raise ImportInvalid when it lacks a mapped column or any
    column to match contacts by."""
    head = first.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    columns = [column.strip() for column in next(csv.reader([head]), [])]
    wanted = mapping or {name: name for name in columns}
    missing = sorted(column for column in wanted.values() if column not in columns)
    if missing:
        raise ImportInvalid({"mapping": [
            f"The file has no column '{missing[0]}' (its header: {', '.join(columns)})."]})
    if not any(key in wanted for key in KEYS):
        raise ImportInvalid({"file": [
            "No column maps to external_id, phone or email, so no row could match a "
            f"contact (the header: {', '.join(columns)})."]})
    return columns


# --- Reading the stored file -------------------------------------------------------------


def _lines(job: ContactImport) -> Iterator[str]:
    """Yield the stored file's text lines (each ending in \\n but the last), one stored
    piece in memory at a time."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    count = ContactImportChunk.objects.filter(contact_import=job).count()
    rest = ""
    for seq in range(count):
        data = (ContactImportChunk.objects.filter(contact_import=job, seq=seq)
                .values_list("data", flat=True).get())
        try:
            text = rest + decoder.decode(bytes(data), final=seq == count - 1)
        except UnicodeDecodeError as exc:
            raise FileUnreadable(
                f"The file is not UTF-8 text (byte {seq * CHUNK_BYTES + exc.start}).") from exc
        parts = text.split("\n")
        rest = parts.pop()
        for part in parts:
            yield part + "\n"
    if rest:
        yield rest


def records(job: ContactImport) -> Iterator[dict[str, Any]]:
    """Yield the file's rows as {column: value}, blank lines skipped."""
    if job.format == ContactImport.Format.JSONL:
        yield from _jsonl_records(_lines(job))
        return
    reader = csv.reader(_lines(job))
    header = [column.strip() for column in next(reader, [])]
    try:
        for values in reader:
            if not any(value.strip() for value in values):
                continue
            yield dict(zip(header, values, strict=False))
    except csv.Error as exc:
        raise FileUnreadable(f"The CSV cannot be read past row {reader.line_num}: {exc}.") \
            from exc


def _jsonl_records(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise FileUnreadable(f"Line {number} is not JSON: {exc}.") from exc
        if not isinstance(record, dict):
            raise FileUnreadable(f"Line {number} is not a JSON object.")
        yield record


# --- One row ------------------------------------------------------------------------------


@dataclass
class Row:
    """A row made ready to write: its number, the contact fields and attributes it sets."""

    number: int
    values: dict[str, Any]
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """Return what the row matches a contact by: (field, value)."""
        for name in KEYS:
            if self.values.get(name):
                return name, self.values[name]
        raise RowInvalid("external_id", "The row has no external_id, phone or email to "
                                        "match a contact by.")


def row_clean(record: dict[str, Any], *, number: int, mapping: dict[str, str],
              region: str) -> Row:
    """Return the row's normalised fields (E.164 phone, lower-case e-mail, booleans);
    raise RowInvalid naming the first bad field."""
    wanted = mapping or {name: name for name in record
                         if name in FIELDS or name.startswith(ATTRIBUTE_PREFIX)}
    row = Row(number=number, values={})
    for target, column in wanted.items():
        value = record.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # a blank cell leaves the contact's field as it is
        if target.startswith(ATTRIBUTE_PREFIX):
            row.attributes[target[len(ATTRIBUTE_PREFIX):]] = value
        else:
            row.values[target] = _value_clean(target, value, region)
    row.key  # noqa: B018  (raises RowInvalid for a row with nothing to match by)
    return row


def _value_clean(name: str, value: Any, region: str) -> Any:
    """Return one contact field's value normalised, or raise RowInvalid."""
    if name in BOOL_FIELDS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE | FALSE:
            return text in TRUE
        raise RowInvalid(name, f"'{value}' is not true or false.")
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise RowInvalid(name, "Must be text.")
    text = str(value).strip()
    try:
        if name == "phone":
            return normalize_phone(text, region=region or None)
        if name == "email":
            validate_email(text)
            return text.lower()
        if name == "timezone":
            validate_timezone(text)
        if name == "locale":
            validate_locale(text)
    except ValidationError as exc:
        raise RowInvalid(name, exc.messages[0]) from exc
    if name in TEXT_FIELDS and len(text) > TEXT_FIELDS[name]:
        raise RowInvalid(name, f"Longer than {TEXT_FIELDS[name]} characters.")
    return text


# --- One batch ----------------------------------------------------------------------------


def _matches(workspace_id: Any, rows: list[Row]) -> dict[tuple[str, str], Contact]:
    """Return the existing contacts the rows match, by key (the oldest on a shared phone
    or e-mail)."""
    wanted: dict[str, set[str]] = {name: set() for name in KEYS}
    for row in rows:
        name, value = row.key
        wanted[name].add(value)
    found: dict[tuple[str, str], Contact] = {}
    query = Q()
    for name, values in wanted.items():
        if values:
            query |= Q(**{f"{name}__in": values})
    if not query:
        return found
    for contact in (Contact.objects.filter(query, workspace_id=workspace_id)
                    .order_by("-created_at")):
        for name in KEYS:
            value = getattr(contact, name)
            if value and value in wanted[name]:
                found[(name, value)] = contact  # oldest last, so oldest wins
    return found


def _apply(contact: Contact, row: Row) -> None:
    for name, value in row.values.items():
        setattr(contact, name, value)
    if row.attributes:
        contact.attributes = {**(contact.attributes or {}), **row.attributes}


# The columns a new contact gets from an import, in COPY order; an update writes the same
# but the workspace and creation time.
COPY_COLUMNS = ("id", "workspace_id", "external_id", "first_name", "last_name", "phone",
                "email", "timezone", "locale", "attributes", "sms_subscribed",
                "email_subscribed", "created_at", "updated_at")
UPDATE_COLUMNS = tuple(c for c in COPY_COLUMNS if c not in ("workspace_id", "created_at"))
# Rows of one batch's updates, dropped at commit (one per connection, made when first used).
UPDATE_TABLE = """CREATE TEMP TABLE IF NOT EXISTS audiences_contact_update (
    id uuid, external_id varchar(200), first_name varchar(100), last_name varchar(100),
    phone varchar(20), email varchar(254), timezone varchar(64), locale varchar(35),
    attributes jsonb,
    sms_subscribed boolean, email_subscribed boolean, updated_at timestamptz
) ON COMMIT DELETE ROWS"""


def _row_of(contact: Contact, columns: tuple[str, ...]) -> tuple[Any, ...]:
    values = {"attributes": json.dumps(contact.attributes)}
    return tuple(values[c] if c in values else getattr(contact, c) for c in columns)


def _copy(cursor: Any, table: str, columns: tuple[str, ...], contacts: list[Contact]) -> None:
    with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for contact in contacts:
            copy.write_row(_row_of(contact, columns))


def contacts_write(fresh: list[Contact], old: list[Contact]) -> None:
    """Insert the new contacts and update the matched ones: on PostgreSQL with COPY (new
    rows straight into the table; updates into a temporary table, then one UPDATE ... FROM),
    which takes a fraction of bulk_create's time and avoids bulk_update's CASE per row;
    elsewhere with bulk_create and bulk_update."""
    if connection.vendor != "postgresql":
        Contact.objects.bulk_create(fresh, batch_size=IMPORT_BATCH)
        Contact.objects.bulk_update(old, [*FIELDS, "attributes", "updated_at"],
                                    batch_size=IMPORT_BATCH)
        return
    table = Contact._meta.db_table
    with connection.cursor() as cursor:
        if fresh:
            _copy(cursor, table, COPY_COLUMNS, fresh)
        if old:
            cursor.execute(UPDATE_TABLE)
            _copy(cursor, "audiences_contact_update", UPDATE_COLUMNS, old)
            assignments = ", ".join(f"{c} = u.{c}" for c in UPDATE_COLUMNS if c != "id")
            cursor.execute(f"UPDATE {table} AS c SET {assignments} "  # noqa: S608 (our names)
                           "FROM audiences_contact_update AS u WHERE c.id = u.id")
            cursor.execute("DELETE FROM audiences_contact_update")


def batch_write(*, job: ContactImport, rows: list[Row], failed: list[ContactImportError],
                done_before: int) -> bool:
    """Upsert a batch's rows and record its failed ones and the counters in one
    transaction; return False (writing nothing) when another worker got there first."""
    now = timezone.now()
    with transaction.atomic():
        found = _matches(job.workspace_id, rows)
        created = updated = 0
        touched: dict[int, Contact] = {}
        for row in rows:
            contact = found.get(row.key)
            if contact is None:
                contact = Contact(workspace_id=job.workspace_id, created_at=now,
                                  attributes={})
                created += 1
            else:
                updated += 1
            _apply(contact, row)
            contact.updated_at = now
            for name in KEYS:  # later rows of the batch find this contact by any key
                if getattr(contact, name):
                    found[(name, getattr(contact, name))] = contact
            touched[id(contact)] = contact
        fresh = [c for c in touched.values() if c._state.adding]
        old = [c for c in touched.values() if not c._state.adding]
        contacts_write(fresh, old)
        ContactImportError.objects.bulk_create(failed)
        moved = ContactImport.objects.filter(pk=job.pk, rows_done=done_before).update(
            rows_done=done_before + len(rows) + len(failed),
            rows_created=job.rows_created + created, rows_updated=job.rows_updated + updated,
            rows_failed=job.rows_failed + len(failed), heartbeat_at=now)
        if not moved:
            transaction.set_rollback(True)
            return False
    job.rows_done = done_before + len(rows) + len(failed)
    job.rows_created += created
    job.rows_updated += updated
    job.rows_failed += len(failed)
    return True


# --- The job --------------------------------------------------------------------------------


def import_start(*, job: ContactImport) -> bool:
    """Claim a pending import: count its rows (reading the whole file once, so a file that
    cannot be read fails before any contact is written); return False unless it runs."""
    if job.status == ContactImport.Status.PENDING:
        try:
            total = sum(1 for _ in records(job))
        except FileUnreadable as exc:
            _finish(job, ContactImport.Status.FAILED, str(exc))
            return False
        if total > settings.IMPORT_MAX_ROWS:
            _finish(job, ContactImport.Status.FAILED,
                    f"The file has {total} rows; at most {settings.IMPORT_MAX_ROWS} are "
                    "imported at once.")
            return False
        now = timezone.now()
        ContactImport.objects.filter(pk=job.pk, status=ContactImport.Status.PENDING).update(
            status=ContactImport.Status.RUNNING, rows_total=total, started_at=now,
            heartbeat_at=now)
        job.refresh_from_db()
    return job.status == ContactImport.Status.RUNNING


def import_run(*, job: ContactImport, seconds: float) -> bool:
    """Import the next rows for about `seconds`; return True while rows remain (the caller
    queues a fresh task for them)."""
    import time

    if not import_start(job=job):
        return False
    deadline = time.monotonic() + seconds
    rows: list[Row] = []
    failed: list[ContactImportError] = []
    try:
        for number, record in enumerate(records(job), start=1):
            if number <= job.rows_done:
                continue  # committed by an earlier task
            _row_take(job, record, number, rows, failed)
            if len(rows) + len(failed) >= IMPORT_BATCH:
                if not batch_write(job=job, rows=rows, failed=failed,
                                   done_before=job.rows_done):
                    return False
                rows, failed = [], []
                if time.monotonic() > deadline:
                    return True
        if (rows or failed) and not batch_write(job=job, rows=rows, failed=failed,
                                                 done_before=job.rows_done):
            return False
    except FileUnreadable as exc:
        _finish(job, ContactImport.Status.FAILED, str(exc))
        return False
    _finish(job, ContactImport.Status.COMPLETED, "")
    return False


def _row_take(job: ContactImport, record: dict[str, Any], number: int, rows: list[Row],
              failed: list[ContactImportError]) -> None:
    try:
        rows.append(row_clean(record, number=number, mapping=job.mapping,
                              region=job.default_region))
    except RowInvalid as exc:
        failed.append(ContactImportError(contact_import=job, row=number, field=exc.field,
                                         message=exc.message, record=_storable(record)))


def _storable(record: dict[str, Any]) -> dict[str, Any]:
    """Return the record as JSON PostgreSQL stores (no NUL characters)."""
    return json.loads(json.dumps(record, default=str).replace("\\u0000", ""))


def _finish(job: ContactImport, status: str, error: str) -> None:
    """Mark the import finished and drop its stored file (the error rows stay)."""
    with transaction.atomic():
        ContactImport.objects.filter(pk=job.pk).update(status=status, error=error,
                                                       finished_at=timezone.now())
        ContactImportChunk.objects.filter(contact_import=job).delete()
    job.refresh_from_db()


def import_with_retry(*, job_id: Any, seconds: float) -> bool:
    """Run an import (see import_run), trying a batch again once when a concurrent write
    created one of its contacts first (an external_id taken meanwhile)."""
    for attempt in range(2):
        job = ContactImport.objects.get(pk=job_id)
        if job.status in (ContactImport.Status.COMPLETED, ContactImport.Status.FAILED):
            return False
        try:
            return import_run(job=job, seconds=seconds)
        except IntegrityError:
            if attempt:
                raise
    return False


def imports_sweep() -> int:
    """Queue again the imports whose task was lost: pending ones never started, running
    ones whose last batch is older than IMPORT_STALL_SECONDS; return how many."""
    stale = timezone.now() - timedelta(seconds=settings.IMPORT_STALL_SECONDS)
    ids = list(ContactImport.objects.filter(
        Q(status=ContactImport.Status.PENDING, created_at__lt=stale)
        | Q(status=ContactImport.Status.RUNNING, heartbeat_at__lt=stale))
        .values_list("pk", flat=True)[:100])
    for job_id in ids:
        send(RUN_IMPORT, str(job_id))
    return len(ids)


def first_errors_of(jobs: Iterable[ContactImport]) -> dict[Any, list[ContactImportError]]:
    """Return the first FIRST_ERRORS failed rows of each import by id, in row order, in one
    query (for a page of imports, not one per import)."""
    found: dict[Any, list[ContactImportError]] = {job.pk: [] for job in jobs}
    rank = Window(RowNumber(), partition_by=[F("contact_import_id")], order_by=F("row").asc())
    rows = (ContactImportError.objects.filter(contact_import_id__in=list(found))
            .annotate(rank=rank).filter(rank__lte=FIRST_ERRORS).order_by("row"))
    for error in rows:
        found[error.contact_import_id].append(error)
    return found


def error_rows(*, job: ContactImport) -> Iterator[list[Any]]:
    """Yield the error file's rows: row, field, error, then the row as read (the CSV's
    columns, or the JSON line as one `record` column)."""
    columns = job.columns if job.format == ContactImport.Format.CSV else ["record"]
    yield ["row", "field", "error", *columns]
    for error in job.row_errors.order_by("row").iterator(chunk_size=2000):
        if job.format == ContactImport.Format.CSV:
            values = [error.record.get(column, "") for column in columns]
        else:
            values = [json.dumps(error.record)]
        yield [error.row, error.field, error.message, *values]
