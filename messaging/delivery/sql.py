"""Raw-SQL helpers for the hot path: one statement over many rows on PostgreSQL."""
from __future__ import annotations

from typing import Any, cast

from django.db import connection
from django.db.models import Field


def column(model: Any, name: str) -> str:
    """Return the database column of a model's field."""
    return str(cast(Field, model._meta.get_field(name)).column)


def unnest(columns: list[Any], rows: list[Any]) -> tuple[str, list[Any]]:
    """Return `unnest(%s::type[], ...) AS v(column, ...)` and its arrays: the rows'
    values of the columns, one array per column, for one statement over all the rows."""
    arrays = [[column.get_db_prep_save(getattr(row, column.attname), connection)
               for row in rows] for column in columns]
    types = ", ".join(f"%s::{column.db_type(connection)}[]" for column in columns)
    names = ", ".join(f'"{column.column}"' for column in columns)
    return f"unnest({types}) AS v({names})", arrays


def update_rows(model: Any, fields: list[str], rows: list[Any], **same: Any) -> None:
    """Write each row's own values of `fields`, and the values in `same` to all of them
    (rows already locked by the caller). On PostgreSQL one UPDATE ... FROM unnest(arrays):
    Django's bulk_update builds a CASE per field and row, and compiling those cost more
    CPU than the rest of a delivery batch."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        for row in rows:
            model.objects.filter(pk=row.pk).update(
                **{name: getattr(row, name) for name in fields}, **same)
        return
    meta = model._meta
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    values, arrays = unnest(columns, rows)
    constants = [(meta.get_field(name), value) for name, value in same.items()]
    sets = ", ".join([f'"{column.column}" = v."{column.column}"' for column in columns[1:]]
                     + [f'"{field.column}" = %s' for field, _ in constants])
    params = [field.get_db_prep_save(value, connection) for field, value in constants]
    with connection.cursor() as cursor:
        cursor.execute(f'UPDATE "{meta.db_table}" AS t SET {sets} FROM {values} '
                       f'WHERE t."{meta.pk.column}" = v."{meta.pk.column}"', params + arrays)
