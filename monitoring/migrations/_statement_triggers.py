"""Statement-level triggers with transition tables, shared by migrations 0007 (the /metrics
counters), 0011 (the hourly rollups) and 0013 (both, for the executions contacts entered).

The leading underscore keeps Django's migration loader from taking this for a migration.
Migrations are history: for a migration already applied, what this renders must never
change (rendering both migrations before and after a change must give the same SQL), so a
new kind of trigger gets a new parameter here, not a different default.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

EVENTS = ("insert", "update", "delete")


def changed_rows(columns: Iterable[str]) -> str:
    """Return the rows of an UPDATE whose counted columns changed: the new row with sign 1,
    the old with sign -1 (column s)."""
    new = ", ".join(f"n.{c}" for c in columns)
    old = ", ".join(f"o.{c}" for c in columns)
    return (f"SELECT n.*, 1 AS s FROM new_rows n JOIN old_rows o ON o.id = n.id "
            f"WHERE ({new}) IS DISTINCT FROM ({old}) UNION ALL "
            f"SELECT o.*, -1 AS s FROM new_rows n JOIN old_rows o ON o.id = n.id "
            f"WHERE ({new}) IS DISTINCT FROM ({old})")


def trigger_sql(*, function: str, table: str, columns: Iterable[str],
                insert: Callable[[str], str], start_note: str = "", where: str = "") -> str:
    """Return the trigger function `function` and its three statement triggers on `table`,
    then the INSERT counting what is there already; `insert(rows)` is the INSERT of the
    deltas of `rows` (a SELECT with a sign column s). With `where` (a condition on the
    table's columns, which no UPDATE may change) only the rows it holds for count."""
    return f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN{insert(_kept("SELECT *, 1 AS s FROM new_rows", where))}
  ELSIF TG_OP = 'DELETE' THEN{insert(_kept("SELECT *, -1 AS s FROM old_rows", where))}
  ELSE{insert(_kept(changed_rows(columns), where))}
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER {function}_insert AFTER INSERT ON {table}
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TRIGGER {function}_update AFTER UPDATE ON {table}
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TRIGGER {function}_delete AFTER DELETE ON {table}
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}();
{start_note}{insert(_kept(f"SELECT *, 1 AS s FROM {table}", where))}
"""


def _kept(rows: str, where: str) -> str:
    """Return the rows `where` holds for (all of them without a condition)."""
    return f"SELECT * FROM ({rows}) AS kept WHERE {where}" if where else rows


def triggers_drop(cursor: Any, *, function: str, table: str) -> None:
    """Drop what trigger_sql made for `function` on `table`."""
    for event in EVENTS:
        cursor.execute(f"DROP TRIGGER IF EXISTS {function}_{event} ON {table}")
    cursor.execute(f"DROP FUNCTION IF EXISTS {function}()")
