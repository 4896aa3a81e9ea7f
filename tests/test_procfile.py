"""The Procfile's worker consumes exactly the queues of the channel table."""
from __future__ import annotations

import shlex
from pathlib import Path

from messaging.channels import ALL_QUEUES

PROCFILE = Path(__file__).resolve().parents[1] / "Procfile"


def worker_queues() -> list[str]:
    """Return the `-Q` list of the Procfile's worker command."""
    for line in PROCFILE.read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "worker":
            args = shlex.split(command)
            return args[args.index("-Q") + 1].split(",")
    raise AssertionError("the Procfile has no worker process")


def test_the_worker_consumes_every_queue_of_the_channel_table() -> None:
    assert worker_queues() == list(ALL_QUEUES)
