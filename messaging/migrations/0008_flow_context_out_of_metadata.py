"""Move each message's template context from metadata["_context"] to flow_context.

Until 0007 a flow send kept its trigger and steps in its metadata, where API answers and
events showed them. Rows move in batches, each committed on its own (the migration is not
atomic): a large table is not held in one transaction, and a run cut short resumes where it
stopped, since a moved row no longer has the key. Rows an API sender gave a `_context`
move too, so every message renders as it did.
"""
from __future__ import annotations

from typing import Any

from django.db import migrations, transaction

KEY = "_context"
# One batch: an index range read of up to 1,000 rows' metadata and one UPDATE of them
# (well under a second on PostgreSQL and SQLite).
BATCH = 1000


def _move(apps: Any, schema_editor: Any, *, forward: bool) -> None:
    """Move the context of every message that has one, batch by batch in primary key order."""
    message_model = apps.get_model("messaging", "Message")
    alias = schema_editor.connection.alias
    rows = message_model.objects.using(alias).order_by("pk").only("pk", "metadata",
                                                                  "flow_context")
    rows = rows.filter(metadata__has_key=KEY) if forward else rows.filter(
        flow_context__isnull=False)
    last = None
    while True:
        with transaction.atomic(using=alias):
            batch = list((rows if last is None else rows.filter(pk__gt=last))[:BATCH])
            if not batch:
                return
            for message in batch:
                if not isinstance(message.metadata, dict):
                    continue  # a JSON array holding the string "_context" matches has_key
                metadata = dict(message.metadata)
                if forward:
                    message.flow_context = metadata.pop(KEY)
                else:
                    metadata[KEY], message.flow_context = message.flow_context, None
                message.metadata = metadata
            message_model.objects.using(alias).bulk_update(batch, ["metadata",
                                                                   "flow_context"])
        last = batch[-1].pk


def context_out_of_metadata(apps: Any, schema_editor: Any) -> None:
    """Move metadata["_context"] to flow_context."""
    _move(apps, schema_editor, forward=True)


def context_back_into_metadata(apps: Any, schema_editor: Any) -> None:
    """Move flow_context back to metadata["_context"] (for a migration backwards)."""
    _move(apps, schema_editor, forward=False)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('messaging', '0007_message_flow_context'),
    ]

    operations = [
        migrations.RunPython(context_out_of_metadata, context_back_into_metadata,
                             elidable=True),
    ]
