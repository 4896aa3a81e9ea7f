"""Triggers that keep monitoring_hourlycount true as messages and executions change
(PostgreSQL only), the way 0007 keeps the /metrics counters: statement-level, with
transition tables, one INSERT into monitoring_hourlydelta per statement grouped by workspace,
hour and status; an UPDATE counts only rows whose counted columns changed. The totals start
from one scan, taken while CREATE TRIGGER's lock keeps writers out.
"""
from django.db import migrations

# table -> (kind, the hour's column, the timed-row seconds over a row alias r, counted columns)
ROLLED = {
    "messaging_message": (
        "message", "created_at",
        "extract(epoch FROM r.sent_at - coalesce(r.scheduled_for, r.created_at))",
        "r.sent_at IS NOT NULL",
        ["workspace_id", "status", "sent_at", "scheduled_for", "created_at"]),
    "flows_execution": (
        "execution", "started_at", "extract(epoch FROM r.completed_at - r.started_at)",
        "r.completed_at IS NOT NULL", ["workspace_id", "status", "started_at", "completed_at"]),
}

COMPACT = """
CREATE OR REPLACE FUNCTION relay_hourly_compact() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  folded bigint;
BEGIN
  IF NOT pg_try_advisory_xact_lock(hashtext('relay_hourly_compact')) THEN
    RETURN 0;
  END IF;
  WITH moved AS (DELETE FROM monitoring_hourlydelta
                 RETURNING workspace_id, kind, hour, status, n, timed, seconds),
  folded_rows AS (
    INSERT INTO monitoring_hourlycount (workspace_id, kind, hour, status, n, timed, seconds)
    SELECT workspace_id, kind, hour, status, sum(n), sum(timed), sum(seconds) FROM moved
    GROUP BY workspace_id, kind, hour, status
    ON CONFLICT (workspace_id, kind, hour, status) DO UPDATE
      SET n = monitoring_hourlycount.n + excluded.n,
          timed = monitoring_hourlycount.timed + excluded.timed,
          seconds = monitoring_hourlycount.seconds + excluded.seconds
    RETURNING 1)
  SELECT count(*) INTO folded FROM folded_rows;
  DELETE FROM monitoring_hourlycount WHERE n = 0 AND timed = 0;
  RETURN folded;
END $$;
"""


def _insert(table: str, rows: str) -> str:
    kind, stamp, seconds, timed, _ = ROLLED[table]
    return f"""
    INSERT INTO monitoring_hourlydelta (workspace_id, kind, hour, status, n, timed, seconds)
    SELECT r.workspace_id, '{kind}', date_trunc('hour', r.{stamp}, 'UTC'), r.status, sum(r.s),
           sum(CASE WHEN {timed} THEN r.s ELSE 0 END),
           sum(CASE WHEN {timed} THEN r.s * {seconds} ELSE 0 END)
    FROM ({rows}) AS r GROUP BY 1, 2, 3, 4
    HAVING sum(r.s) <> 0 OR sum(CASE WHEN {timed} THEN r.s ELSE 0 END) <> 0
        OR sum(CASE WHEN {timed} THEN r.s * {seconds} ELSE 0 END) <> 0;"""


def _trigger_sql(table: str) -> str:
    columns = ROLLED[table][4]
    new = ", ".join(f"n.{c}" for c in columns)
    old = ", ".join(f"o.{c}" for c in columns)
    changed = (f"SELECT n.*, 1 AS s FROM new_rows n JOIN old_rows o ON o.id = n.id "
               f"WHERE ({new}) IS DISTINCT FROM ({old}) UNION ALL "
               f"SELECT o.*, -1 AS s FROM new_rows n JOIN old_rows o ON o.id = n.id "
               f"WHERE ({new}) IS DISTINCT FROM ({old})")
    function = f"relay_hourly_{table}"
    return f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN{_insert(table, "SELECT *, 1 AS s FROM new_rows")}
  ELSIF TG_OP = 'DELETE' THEN{_insert(table, "SELECT *, -1 AS s FROM old_rows")}
  ELSE{_insert(table, changed)}
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
{_insert(table, f"SELECT *, 1 AS s FROM {table}")}
"""


def install(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(COMPACT)
        for table in ROLLED:
            cursor.execute(_trigger_sql(table))
        cursor.execute("SELECT relay_hourly_compact()")


def uninstall(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in ROLLED:
            function = f"relay_hourly_{table}"
            for event in ("insert", "update", "delete"):
                cursor.execute(f"DROP TRIGGER IF EXISTS {function}_{event} ON {table}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {function}()")
        cursor.execute("DROP FUNCTION IF EXISTS relay_hourly_compact(); "
                       "DELETE FROM monitoring_hourlydelta; DELETE FROM monitoring_hourlycount")


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0010_hourly_counts"),
        ("messaging", "0013_message_lost_before_call"),
        ("flows", "0006_execution_pause"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
