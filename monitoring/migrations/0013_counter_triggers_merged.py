"""One trigger function per statement on messages and executions for both counters.

The /metrics counters (0007) and the hourly rollups (0011) each had a statement-level
trigger on these tables, so every INSERT, UPDATE or DELETE ran two trigger functions, and
an UPDATE joined its transition tables (the rows as they were and as they are) four times:
twice in each function. Now one function per table reads the changed rows once (one join,
each changed row giving its new values counted +1 and its old ones -1) and writes both
delta tables from them in one statement. What is counted is unchanged: the same INSERTs
into monitoring_metricdelta and monitoring_hourlydelta, from 0007's and 0011's SQL. An
UPDATE counts the rows whose columns counted by either changed; a row whose change only
one counter sees adds nothing to the other (its +1 and -1 cancel in the same group, which
the HAVING clauses drop). Reversing puts the two triggers back (their functions are kept).
"""
import importlib

from django.db import migrations

METRIC = importlib.import_module("monitoring.migrations.0007_metric_counter_triggers")
HOURLY = importlib.import_module("monitoring.migrations.0011_hourly_count_triggers")
TABLES = ("messaging_message", "flows_execution")
EVENTS = ("insert", "update", "delete")


def _columns(table: str) -> list[str]:
    """Return the columns either counter counts, in a fixed order."""
    return sorted(set(METRIC.COUNTED[table][1]) | set(HOURLY.ROLLED[table][4]))


def _both(table: str, rows: str) -> str:
    """Return one statement writing both counters' deltas for the rows (with a sign s)."""
    metric = METRIC._insert(METRIC.COUNTED[table][0], "SELECT * FROM changed").rstrip()
    hourly = HOURLY._insert(table, "SELECT * FROM changed").rstrip()
    return (f"\n    WITH changed AS MATERIALIZED ({rows}),\n    metric AS ("
            f"{metric.rstrip(';')})\n{hourly}")


def _merged_sql(table: str) -> str:
    columns = _columns(table)
    new = ", ".join(f"n.{c}" for c in columns)
    old = ", ".join(f"o.{c}" for c in columns)
    changed = (f"SELECT x.* FROM new_rows n JOIN old_rows o ON o.id = n.id "
               f"CROSS JOIN LATERAL (SELECT n.*, 1 AS s UNION ALL SELECT o.*, -1) AS x "
               f"WHERE ({new}) IS DISTINCT FROM ({old})")
    function = f"relay_counters_{table}"
    return f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN{_both(table, "SELECT *, 1 AS s FROM new_rows")}
  ELSIF TG_OP = 'DELETE' THEN{_both(table, "SELECT *, -1 AS s FROM old_rows")}
  ELSE{_both(table, changed)}
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
"""


def _triggers(prefix: str, table: str, enable: bool) -> str:
    """Return the statements dropping a table's triggers of a prefix, or creating them
    again for its (kept) function."""
    function = f"{prefix}_{table}"
    if not enable:
        return "".join(f"DROP TRIGGER {function}_{event} ON {table};\n" for event in EVENTS)
    return f"""
CREATE TRIGGER {function}_insert AFTER INSERT ON {table}
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TRIGGER {function}_update AFTER UPDATE ON {table}
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TRIGGER {function}_delete AFTER DELETE ON {table}
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}();
"""


def merge(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in TABLES:
            # One statement per table: no write sees neither the old triggers nor the new.
            cursor.execute(_triggers("relay_metric", table, False)
                           + _triggers("relay_hourly", table, False) + _merged_sql(table))


def split(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in TABLES:
            function = f"relay_counters_{table}"
            cursor.execute(_triggers("relay_counters", table, False)
                           + f"DROP FUNCTION {function}();\n"
                           + _triggers("relay_metric", table, True)
                           + _triggers("relay_hourly", table, True))


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0012_history_purge"),
    ]

    operations = [migrations.RunPython(merge, split)]
