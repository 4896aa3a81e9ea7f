"""gunicorn config for chaos scenario 4: the web process "dies" between commit and publish.

Every accepted message is committed but its task is never published, as if the process
were killed right after the commit. Only the sweeper can deliver these messages.
"""
from __future__ import annotations


def post_worker_init(worker) -> None:  # noqa: ARG001 (gunicorn's hook signature)
    from messaging.delivery import creation

    creation.publish = lambda messages, now=None: 0  # the lost on-commit publish
