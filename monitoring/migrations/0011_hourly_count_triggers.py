"""Triggers that keep monitoring_hourlycount true as messages and executions change
(PostgreSQL only), the way 0007 keeps the /metrics counters (the same builder,
_statement_triggers): statement-level, with
transition tables, one INSERT into monitoring_hourlydelta per statement grouped by workspace,
hour and status; an UPDATE counts only rows whose counted columns changed. The totals start
from one scan, taken while CREATE TRIGGER's lock keeps writers out.
"""
from django.db import migrations

from monitoring.migrations._statement_triggers import trigger_sql, triggers_drop

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
    return trigger_sql(function=f"relay_hourly_{table}", table=table, columns=ROLLED[table][4],
                       insert=lambda rows: _insert(table, rows))


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
            triggers_drop(cursor, function=f"relay_hourly_{table}", table=table)
        cursor.execute("DROP FUNCTION IF EXISTS relay_hourly_compact(); "
                       "DELETE FROM monitoring_hourlydelta; DELETE FROM monitoring_hourlycount")


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0010_hourly_counts"),
        ("messaging", "0013_message_lost_before_call"),
        ("flows", "0006_execution_pause"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
