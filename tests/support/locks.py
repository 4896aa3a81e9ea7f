"""Run a call while another transaction holds the rows it writes (PostgreSQL): what a
statement does when a row it read changed before it could write it."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from django.db import connection, connections

from tests.support.waiting import wait_until

T = TypeVar("T")


def behind_a_lock(sql: str, params: list[Any], call: Callable[[], T]) -> T:
    """Run `sql` in a transaction of its own and, while it is open, `call` in a thread (with
    a connection of its own); once the call waits for a lock that transaction holds, commit
    it. Return what the call returns, or raise what it raises."""
    settings = connection.settings_dict
    holder = psycopg.connect(dbname=settings["NAME"], user=settings["USER"],
                             password=settings["PASSWORD"] or None,
                             host=settings["HOST"] or None, port=settings["PORT"] or None)
    try:
        holder.execute(sql, params)  # opens the transaction, left uncommitted
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(_closing, call)
            wait_until(lambda: result.done() or _blocked_by(holder.info.backend_pid))
            holder.commit()
            return result.result(timeout=30)
    finally:
        holder.close()


def _closing(call: Callable[[], T]) -> T:
    try:
        return call()
    finally:
        connections.close_all()  # this thread's


def _blocked_by(pid: int) -> bool:
    """Return whether a session waits for a lock the session `pid` holds."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity "
                       "WHERE %s = ANY(pg_blocking_pids(pid))", [pid])
        return bool(cursor.fetchone()[0])
