"""The executions the /metrics gauge (0007) and the overview's hourly totals (0011) count are
the ones contacts entered: a parallel branch (a flows_execution row with a root_id, which
never changes) is a part of its execution, so a three-way fork is one execution, not four.

Both triggers on flows_execution are made again with that condition (the same builder,
_statement_triggers, with `where`), and both totals of executions counted again from the
table: the compaction locks keep the compactors from folding deltas meanwhile, and dropping
the triggers locks writers out until this commits, so nothing is counted twice or missed.
Reversed, every row counts again, as 0007 and 0011 made them.
"""
import importlib

from django.db import migrations

from monitoring.migrations._statement_triggers import trigger_sql, triggers_drop

metric = importlib.import_module("monitoring.migrations.0007_metric_counter_triggers")
hourly = importlib.import_module("monitoring.migrations.0011_hourly_count_triggers")

TABLE = "flows_execution"
ENTERED = "root_id IS NULL"  # flows.models.ENTERED


def _counted_again(schema_editor, where: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    parts, columns = metric.COUNTED[TABLE]
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('relay_metric_compact')), "
                       "pg_advisory_xact_lock(hashtext('relay_hourly_compact'))")
        for function in (f"relay_metric_{TABLE}", f"relay_hourly_{TABLE}"):
            triggers_drop(cursor, function=function, table=TABLE)
        cursor.execute("DELETE FROM monitoring_metricdelta WHERE metric = 'executions'; "
                       "DELETE FROM monitoring_metriccount WHERE metric = 'executions'; "
                       "DELETE FROM monitoring_hourlydelta WHERE kind = 'execution'; "
                       "DELETE FROM monitoring_hourlycount WHERE kind = 'execution'")
        cursor.execute(trigger_sql(
            function=f"relay_metric_{TABLE}", table=TABLE, columns=columns,
            insert=lambda rows: metric._insert(parts, rows), where=where))
        cursor.execute(trigger_sql(
            function=f"relay_hourly_{TABLE}", table=TABLE, columns=hourly.ROLLED[TABLE][4],
            insert=lambda rows: hourly._insert(TABLE, rows), where=where))


def install(apps, schema_editor) -> None:
    _counted_again(schema_editor, ENTERED)


def uninstall(apps, schema_editor) -> None:
    _counted_again(schema_editor, "")


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0012_history_purge"),
        ("flows", "0008_execution_branches"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
