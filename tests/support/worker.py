"""A live Celery worker in this process (a thread pool on the real broker), for tests."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from messaging.channels import ALL_QUEUES


@contextmanager
def threaded_worker(queues: list[str] | None = None, concurrency: int = 4) -> Iterator[Any]:
    """Run a worker consuming `queues` (all of them by default) until the block ends, and
    return only once every task it started has finished.

    Celery's start_worker ends its worker by terminating it, and terminating the threads
    pool leaves the tasks already running to go on in their threads: a test's transactional
    teardown would then flush the database under a task still writing to it (a deadlock
    that fails the flush). Shutting the pool's executor down waits for them.
    """
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    with start_worker(app, pool="threads", concurrency=concurrency, perform_ping_check=False,
                      queues=queues or list(ALL_QUEUES), shutdown_timeout=30) as worker:
        try:
            yield worker
        finally:
            pool = worker.pool
    pool.executor.shutdown(wait=True, cancel_futures=True)
