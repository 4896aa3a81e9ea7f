"""Django's PostgreSQL backend, checking a reused connection only after it sat idle.

CONN_HEALTH_CHECKS sends `SELECT 1` before the first query of every request (and task) on a
reused connection: a round trip that was a tenth of a single-message request's time. A
connection that ran a query less than DB_HEALTH_CHECK_IDLE_SECONDS ago is taken as
alive, as a pooler does (PgBouncer's server_check_delay,
https://www.pgbouncer.org/config.html#server_check_delay). One that died within that
second (a restart under load) fails its next request, which answers 503 with Retry-After
(core.api.DatabaseUnavailableMiddleware); Django then closes it at the request's end, so
the request after that connects afresh.
"""
from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    """PostgreSQL; the health check skipped for a connection used moments ago."""

    used_at = float("-inf")  # time.monotonic() of the last cursor made

    def create_cursor(self, name: Any = None) -> Any:
        cursor = super().create_cursor(name)
        self.used_at = time.monotonic()
        return cursor

    def close_if_health_check_failed(self) -> None:
        """Check the connection only when it has been idle long enough to have died
        unnoticed (a server restart, an idle timeout, a dropped network path)."""
        idle = time.monotonic() - self.used_at
        if self.connection is not None and idle < settings.DB_HEALTH_CHECK_IDLE_SECONDS:
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
