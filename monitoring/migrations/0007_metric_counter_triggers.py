"""Triggers that keep monitoring_metriccount true as rows change (PostgreSQL only).

Statement-level triggers with transition tables: one INSERT into monitoring_metricdelta per
statement, grouped by labels, whatever number of rows the statement wrote; an UPDATE counts
only the rows whose counted columns changed. The totals start from one scan of the tables,
taken while CREATE TRIGGER's lock keeps writers out, so nothing is counted twice or missed.
Elsewhere (SQLite, for development) /metrics scans the tables as before.

The histogram bounds are monitoring.metrics' DELIVERY_BUCKETS and STEP_BUCKETS; a test
compares the two.
"""
from django.db import migrations

from monitoring.migrations._statement_triggers import trigger_sql, triggers_drop

DELIVERY_BOUNDS = "ARRAY[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0]"
STEP_BOUNDS = "ARRAY[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0]"

HELPERS = f"""
CREATE OR REPLACE FUNCTION relay_metric_bucket(seconds double precision,
                                               bounds double precision[])
RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce((SELECT min(bound)::text FROM unnest(bounds) AS bound
                   WHERE seconds <= bound), '+Inf')
$$;

-- What one message row counts for: relay_messages, and relay_message_delivery_seconds once sent.
CREATE OR REPLACE FUNCTION relay_metric_message_parts(
    workspace uuid, channel text, status text, sent_at timestamptz, intended timestamptz,
    sign integer)
RETURNS TABLE(metric text, a text, b text, c text, n bigint, seconds double precision)
LANGUAGE sql IMMUTABLE AS $$
  SELECT 'messages', workspace::text, channel, status, sign::bigint, 0::double precision
  UNION ALL
  SELECT 'delivery', channel, '',
         relay_metric_bucket(extract(epoch FROM sent_at - intended)::double precision,
                             {DELIVERY_BOUNDS}),
         sign::bigint, sign * extract(epoch FROM sent_at - intended)::double precision
  WHERE sent_at IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION relay_metric_step_parts(
    node_type text, started_at timestamptz, completed_at timestamptz, sign integer)
RETURNS TABLE(metric text, a text, b text, c text, n bigint, seconds double precision)
LANGUAGE sql IMMUTABLE AS $$
  SELECT 'steps', node_type, '',
         relay_metric_bucket(extract(epoch FROM completed_at - started_at)::double precision,
                             {STEP_BOUNDS}),
         sign::bigint, sign * extract(epoch FROM completed_at - started_at)::double precision
  WHERE completed_at IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION relay_metric_compact() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  folded bigint;
BEGIN
  -- One compactor at a time: two would only wait on each other's counter rows.
  IF NOT pg_try_advisory_xact_lock(hashtext('relay_metric_compact')) THEN
    RETURN 0;
  END IF;
  WITH moved AS (DELETE FROM monitoring_metricdelta RETURNING metric, a, b, c, n, seconds),
  folded_rows AS (
    INSERT INTO monitoring_metriccount (metric, a, b, c, n, seconds)
    SELECT metric, a, b, c, sum(n), sum(seconds) FROM moved GROUP BY metric, a, b, c
    ON CONFLICT (metric, a, b, c) DO UPDATE
      SET n = monitoring_metriccount.n + excluded.n,
          seconds = monitoring_metriccount.seconds + excluded.seconds
    RETURNING 1)
  SELECT count(*) INTO folded FROM folded_rows;
  DELETE FROM monitoring_metriccount WHERE n = 0;
  RETURN folded;
END $$;
"""

# table -> (the parts call over a row alias r and a sign s, the counted columns)
COUNTED = {
    "messaging_message": (
        "relay_metric_message_parts(r.workspace_id, r.channel, r.status, r.sent_at, "
        "coalesce(r.scheduled_for, r.created_at), r.s)",
        ["workspace_id", "channel", "status", "sent_at", "scheduled_for", "created_at"]),
    "messaging_deliveryattempt": (
        "(SELECT 'attempts'::text, m.channel::text, coalesce(nullif(r.outcome, ''), 'running'), "
        "''::text, r.s::bigint, 0::double precision FROM messaging_message m "
        "WHERE m.id = r.message_id)",
        ["message_id", "outcome"]),
    "flows_execution": (
        "(SELECT 'executions'::text, r.workspace_id::text, r.status::text, ''::text, "
        "r.s::bigint, 0::double precision)",
        ["workspace_id", "status"]),
    "flows_step": (
        "relay_metric_step_parts(r.node_type, r.started_at, r.completed_at, r.s)",
        ["node_type", "started_at", "completed_at"]),
}


def _insert(parts: str, rows: str) -> str:
    return f"""
    INSERT INTO monitoring_metricdelta (metric, a, b, c, n, seconds)
    SELECT p.metric, p.a, p.b, p.c, sum(p.n), sum(p.seconds)
    FROM ({rows}) AS r, LATERAL {parts} AS p(metric, a, b, c, n, seconds)
    GROUP BY 1, 2, 3, 4 HAVING sum(p.n) <> 0 OR sum(p.seconds) <> 0;"""


def _trigger_sql(table: str) -> str:
    parts, columns = COUNTED[table]
    return trigger_sql(
        function=f"relay_metric_{table}", table=table, columns=columns,
        insert=lambda rows: _insert(parts, rows),
        start_note="-- Start from what is there: the trigger's lock keeps writers out until "
                   "this commits.\n")


def install(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(HELPERS)
        for table in COUNTED:
            cursor.execute(_trigger_sql(table))
        cursor.execute("SELECT relay_metric_compact()")


def uninstall(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in COUNTED:
            triggers_drop(cursor, function=f"relay_metric_{table}", table=table)
        cursor.execute("DROP FUNCTION IF EXISTS relay_metric_compact(); "
                       "DROP FUNCTION IF EXISTS relay_metric_step_parts; "
                       "DROP FUNCTION IF EXISTS relay_metric_message_parts; "
                       "DROP FUNCTION IF EXISTS relay_metric_bucket; "
                       "DELETE FROM monitoring_metricdelta; DELETE FROM monitoring_metriccount")


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0006_metric_counters"),
        ("messaging", "0006_queue_pauses"),
        ("flows", "0006_execution_pause"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
