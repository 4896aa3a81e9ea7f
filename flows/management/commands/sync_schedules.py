"""Repair mismatches between flow schedules and django-celery-beat's periodic tasks."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from flows.schedules import schedules_sync


class Command(BaseCommand):
    help = ("Make every flow schedule's periodic task match it (create missing ones, fix "
            "crontab, time zone and enabled flag, delete orphans) and print a report. "
            "Beat runs this at start too.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="Report the mismatches without changing anything.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        report = schedules_sync(dry_run=dry_run)
        for line in report.lines():
            self.stdout.write(line)
