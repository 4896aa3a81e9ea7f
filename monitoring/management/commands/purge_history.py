"""Delete finished history past its retention, in batches."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring import services


class Command(BaseCommand):
    help = ("Delete final messages (and their attempts), finished executions (and their "
            "steps), schedule runs, replayed/discarded dead letters and resolved alert events "
            f"older than --older-than, {services.PURGE_BATCH} at a time. Messages and steps "
            "of open dead letters are kept.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", help="age such as 30d, 12h, 2w")
        parser.add_argument("--dry-run", action="store_true", help="only count")
        parser.add_argument("--retention", action="store_true",
                            help="run the periodic purge now: each kind by its "
                                 "RETENTION_<KIND>_DAYS, recorded like beat's runs")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["retention"]:
            if options["older_than"] or options["dry_run"]:
                raise CommandError("--retention takes neither --older-than nor --dry-run")
            self._retention()
            return
        if not options["older_than"]:
            raise CommandError("give --older-than (such as 30d) or --retention")
        try:
            age = services.parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        totals = services.history_purge(
            older_than=age, dry_run=options["dry_run"],
            on_batch=lambda kind, count: self.stdout.write(f"  deleted a batch of {count} "
                                                           f"{kind}"))
        verb = "would delete" if options["dry_run"] else "deleted"
        for label, count in sorted(totals.items()):
            self.stdout.write(f"{verb} {count:>8} {label}")
        self.stdout.write(self.style.SUCCESS(f"{verb} {sum(totals.values())} row(s) older "
                                             f"than {options['older_than']}"))

    def _retention(self) -> None:
        record = services.retention_purge(
            on_batch=lambda kind, count: self.stdout.write(f"  deleted a batch of {count} "
                                                           f"{kind}"))
        if record is None:
            raise CommandError("another history purge is running; try again later")
        for kind, count in sorted(record.deleted.items()):
            self.stdout.write(f"deleted {count:>8} {kind}")
        if record.error:
            raise CommandError(f"history purge stopped: {record.error}")
        self.stdout.write(self.style.SUCCESS(f"deleted {record.rows} row(s) in all"))
