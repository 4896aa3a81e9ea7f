"""Audiences: contact imports (and, above flows, what sends to many contacts at once)."""
from __future__ import annotations

import uuid

from django.db import models


class ContactImport(models.Model):
    """One uploaded file of contacts, upserted in the background (audiences.imports)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    class Format(models.TextChoices):
        CSV = "csv"
        JSONL = "jsonl"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("core.Workspace", on_delete=models.CASCADE,
                                  related_name="contact_imports")
    filename = models.CharField(max_length=255, blank=True, default="")
    format = models.CharField(max_length=5, choices=Format.choices)
    # Contact field ("phone", "attributes.city") -> the file's column (CSV header or JSON key).
    mapping = models.JSONField(default=dict, blank=True)
    # Region for phone numbers written without +country code ("DE"), blank for none.
    default_region = models.CharField(max_length=2, blank=True, default="")
    # The CSV header as read (the error file repeats these columns); empty for JSON Lines.
    columns = models.JSONField(default=list, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    rows_total = models.PositiveIntegerField(null=True, blank=True)
    # Rows handled so far (created + updated + failed); also the resume point after a crash.
    rows_done = models.PositiveIntegerField(default=0)
    rows_created = models.PositiveIntegerField(default=0)
    rows_updated = models.PositiveIntegerField(default=0)
    rows_failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")  # why the whole file failed
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Refreshed by every batch: the sweeper requeues a running import whose worker died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["workspace", "-created_at"]),
                   models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.filename or self.pk} ({self.status})"


class ContactImportChunk(models.Model):
    """A piece of an import's file, kept in PostgreSQL so any worker on any machine reads
    it (no shared disk); deleted when the import finishes."""

    contact_import = models.ForeignKey(ContactImport, on_delete=models.CASCADE,
                                       related_name="chunks")
    seq = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["contact_import", "seq"],
                                               name="contact_import_chunk_unique_seq")]

    def __str__(self) -> str:
        return f"{self.contact_import_id} #{self.seq}"


class ContactImportError(models.Model):
    """A row of an import that was not imported, with its number and why (the error file)."""

    contact_import = models.ForeignKey(ContactImport, on_delete=models.CASCADE,
                                       related_name="row_errors")
    row = models.PositiveIntegerField()  # 1 = the first data row
    field = models.CharField(max_length=100, blank=True, default="")
    message = models.TextField()
    record = models.JSONField(default=dict, blank=True)  # the row as read, for the error file

    class Meta:
        ordering = ["row", "id"]
        constraints = [models.UniqueConstraint(fields=["contact_import", "row"],
                                               name="contact_import_error_unique_row")]

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


class Broadcast(models.Model):
    """One message to every contact of an audience, sent through the message pipeline at a
    pace (audiences.broadcasts)."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        SCHEDULED = "scheduled"
        SENDING = "sending"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("core.Workspace", on_delete=models.CASCADE,
                                  related_name="broadcasts")
    name = models.CharField(max_length=200)
    channel = models.CharField(max_length=10)
    content = models.JSONField(default=dict)  # the channel's content fields, as for a message
    # Or a template: the version current when the broadcast was made, which every message
    # takes (in its contact's locale), whatever the template becomes while it sends.
    template_version = models.ForeignKey("messaging.TemplateVersion", on_delete=models.SET_NULL,
                                         null=True, blank=True, related_name="+")
    category = models.CharField(max_length=13, default="marketing")
    # The audience: explicit contacts (deduplicated), or every contact matching rules in the
    # flows' condition language (None: not used).
    contact_ids = models.JSONField(null=True, blank=True)
    rules = models.JSONField(null=True, blank=True)
    # The segment the audience came from: its rules (other segments expanded) are copied
    # into `rules` when the broadcast is made.
    segment = models.ForeignKey("Segment", on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="broadcasts")
    send_at = models.DateTimeField(null=True, blank=True)
    throttle = models.CharField(max_length=40, blank=True, default="")  # "1000/min"
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    # When the first message is due (send_at, or the launch); message n is due n / rate later.
    start_at = models.DateTimeField(null=True, blank=True)
    # Creating the messages: the last contact id done, and whether every batch is done.
    cursor = models.CharField(max_length=64, blank=True, default="")
    created_all = models.BooleanField(default=False)
    targeted = models.PositiveIntegerField(default=0)
    # Contacts of the audience without an address on the channel: no message was made.
    skipped = models.PositiveIntegerField(default=0)
    # The counts by message status, kept when the broadcast ends (live ones are counted).
    final_stats = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    # Refreshed by every batch: the sweep requeues a sending broadcast whose task was lost.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["workspace", "-created_at"]),
                   models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class BroadcastRecipient(models.Model):
    """A contact a broadcast targeted, once (unique), with the message made for it."""

    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE,
                                  related_name="recipients")
    contact = models.ForeignKey("core.Contact", on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey("messaging.Message", on_delete=models.SET_NULL, null=True,
                                blank=True, related_name="+")
    position = models.PositiveIntegerField()  # 0 = the first contact sent to

    class Meta:
        constraints = [models.UniqueConstraint(fields=["broadcast", "contact"],
                                               name="broadcast_recipient_unique_contact")]

    def __str__(self) -> str:
        return f"{self.broadcast_id} → {self.contact_id}"


class Segment(models.Model):
    """A named audience: every contact matching rules in the flows' condition language
    (over contact.*, consent included), which may name other segments (audiences.segments).
    Evaluated when used: a broadcast or bulk start takes the rules as they are then."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("core.Workspace", on_delete=models.CASCADE,
                                  related_name="segments")
    name = models.CharField(max_length=200)
    rules = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["workspace", "name"],
                                               name="segment_unique_name")]

    def __str__(self) -> str:
        return self.name
