"""Per-flow hourly totals of finished executions (monitoring_flowhourlycount), kept the way
0011 keeps the hourly totals (the same builder, _statement_triggers, with 0013's condition:
only the executions contacts entered): one INSERT into monitoring_flowhourlydelta per
statement, grouped by workspace, flow, the UTC hour of completed_at, status and duration
bucket; rows without a completed_at count nowhere, and an UPDATE moves only the rows whose
counted columns changed. relay_flow_hourly_compact folds the deltas in (counters_compact calls
it with the others). The totals start from one scan, taken while CREATE TRIGGER's lock keeps
writers out.

A duration's bucket (monitoring.rollups reads them; a test compares the two): 0 under
2**-10 s (about a millisecond), else 1 + floor(8 * log2(seconds * 2**10)), eight buckets per
doubling.
"""
from django.db import migrations, models

from monitoring.migrations._statement_triggers import trigger_sql, triggers_drop

TABLE = "flows_execution"
FUNCTION = f"relay_flow_hourly_{TABLE}"
ENTERED = "root_id IS NULL"  # flows.models.ENTERED
COLUMNS = ["workspace_id", "flow_id", "status", "started_at", "completed_at"]
BUCKETS_PER_DOUBLING = 8
SMALLEST_SECONDS = 2.0 ** -10

SECONDS = "extract(epoch FROM r.completed_at - r.started_at)::double precision"
BUCKET = (f"CASE WHEN {SECONDS} < {SMALLEST_SECONDS} THEN 0 ELSE 1 + floor("
          f"{BUCKETS_PER_DOUBLING} * ln({SECONDS} / {SMALLEST_SECONDS}) / ln(2.0))::integer END")

COMPACT = """
CREATE OR REPLACE FUNCTION relay_flow_hourly_compact() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  folded bigint;
BEGIN
  IF NOT pg_try_advisory_xact_lock(hashtext('relay_flow_hourly_compact')) THEN
    RETURN 0;
  END IF;
  WITH moved AS (DELETE FROM monitoring_flowhourlydelta
                 RETURNING workspace_id, hour, flow_id, status, bucket, n),
  folded_rows AS (
    INSERT INTO monitoring_flowhourlycount (workspace_id, hour, flow_id, status, bucket, n)
    SELECT workspace_id, hour, flow_id, status, bucket, sum(n) FROM moved
    GROUP BY workspace_id, hour, flow_id, status, bucket
    ON CONFLICT (workspace_id, hour, flow_id, status, bucket) DO UPDATE
      SET n = monitoring_flowhourlycount.n + excluded.n
    RETURNING 1)
  SELECT count(*) INTO folded FROM folded_rows;
  DELETE FROM monitoring_flowhourlycount WHERE n = 0;
  RETURN folded;
END $$;
"""


def _insert(rows: str) -> str:
    return f"""
    INSERT INTO monitoring_flowhourlydelta (workspace_id, hour, flow_id, status, bucket, n)
    SELECT r.workspace_id, date_trunc('hour', r.completed_at, 'UTC'), r.flow_id, r.status,
           {BUCKET}, sum(r.s)
    FROM ({rows}) AS r WHERE r.completed_at IS NOT NULL GROUP BY 1, 2, 3, 4, 5
    HAVING sum(r.s) <> 0;"""


def install(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(COMPACT)
        cursor.execute(trigger_sql(function=FUNCTION, table=TABLE, columns=COLUMNS,
                                   insert=_insert, where=ENTERED))
        cursor.execute("SELECT relay_flow_hourly_compact()")


def uninstall(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        triggers_drop(cursor, function=FUNCTION, table=TABLE)
        cursor.execute("DROP FUNCTION IF EXISTS relay_flow_hourly_compact(); "
                       "DELETE FROM monitoring_flowhourlydelta; "
                       "DELETE FROM monitoring_flowhourlycount")


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0013_entered_executions_counted"),
        ("flows", "0010_execution_overview_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="FlowHourlyDelta",
            fields=[
                ("workspace_id", models.UUIDField()),
                ("flow_id", models.UUIDField()),
                ("hour", models.DateTimeField()),
                ("status", models.CharField(max_length=20)),
                ("bucket", models.SmallIntegerField()),
                ("n", models.BigIntegerField(default=0)),
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
            ],
            options={
                "abstract": False,
            },
        ),
        migrations.CreateModel(
            name="FlowHourlyCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                           serialize=False, verbose_name="ID")),
                ("workspace_id", models.UUIDField()),
                ("flow_id", models.UUIDField()),
                ("hour", models.DateTimeField()),
                ("status", models.CharField(max_length=20)),
                ("bucket", models.SmallIntegerField()),
                ("n", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [models.UniqueConstraint(
                    fields=("workspace_id", "hour", "flow_id", "status", "bucket"),
                    name="flow_hourly_count_unique")],
            },
        ),
        migrations.RunPython(install, uninstall),
    ]
