from __future__ import annotations

import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, close_old_connections

from flows.engine import dispatch_timers
from flows.schedules import schedules_fire_due
from messaging.delivery.timers import DISPATCH_BATCH, dispatch_due


class Command(BaseCommand):
    help = ("Publish due timers continuously (scheduled sends, retries, rate-limit slots, "
            "flow delays and wait timeouts, cron schedules). "
            "Run one per machine or more; they share the work with SKIP LOCKED.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        self.running = True
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.stdout.write("dispatcher started")
        while self.running:
            count = self._pass()
            if options["once"]:
                break
            if count < DISPATCH_BATCH:
                time.sleep(settings.DISPATCH_POLL_SECONDS)
        self.stdout.write("dispatcher stopped")

    def _pass(self) -> int:
        try:
            return dispatch_due() + dispatch_timers() + schedules_fire_due()[1]
        except DatabaseError as exc:  # database restarting: wait and reconnect
            self.stderr.write(f"dispatcher: database error, retrying: {exc}")
            close_old_connections()
            time.sleep(1)
            return 0

    def _stop(self, *args: Any) -> None:
        self.running = False
