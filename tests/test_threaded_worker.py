"""The in-process worker of the tests: when its block ends, no task of it is still running
(the transactional teardown that follows flushes the database)."""
from __future__ import annotations

import threading
import time

from config.celery import app
from messaging.channels import ALL_QUEUES
from tests.support.waiting import wait_until
from tests.support.worker import threaded_worker

started = threading.Event()
finished = threading.Event()


@app.task(name="tests.slow_task")
def slow_task() -> None:
    started.set()
    time.sleep(3.0)
    finished.set()


def test_a_task_running_when_the_block_ends_finishes_before_it_returns() -> None:
    started.clear()
    finished.clear()
    app.control.purge()
    with threaded_worker():
        slow_task.apply_async(queue=ALL_QUEUES[0])
        wait_until(started.is_set, timeout=30)
    assert finished.is_set()
