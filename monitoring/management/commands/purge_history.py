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
        parser.add_argument("--older-than", required=True, help="age such as 30d, 12h, 2w")
        parser.add_argument("--dry-run", action="store_true", help="only count")

    def handle(self, *args: Any, **options: Any) -> None:
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
