"""Run the sweepers now and report what they found and repaired."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from monitoring import services


class Command(BaseCommand):
    help = ("Repair what the broker lost, now: messages whose worker died mid-send go back "
            "to queued (flagged possible duplicates), queued messages and running executions "
            "whose task vanished are published again, and waiting steps whose message "
            "finished are completed. Beat does the same every 15-30 s.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="only count what would be repaired")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dry_run"]:
            self._table("found (nothing changed)", services.stuck_report())
            return
        report = services.stuck_requeue()
        self._table("found", report["found"])
        self._table("messages repaired", report["messages"])
        self._table("flows repaired", report["flows"])
        repaired = sum(report["messages"].values()) + sum(report["flows"].values())
        self.stdout.write(self.style.SUCCESS(f"repaired {repaired} row(s)"))

    def _table(self, title: str, numbers: dict[str, int]) -> None:
        self.stdout.write(f"{title}:")
        for name, value in numbers.items():
            self.stdout.write(f"  {name:<18} {value}")
