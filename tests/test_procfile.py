"""The Procfile is the one list of processes: the worker consumes exactly the queues of the
channel table, and `make run`'s supervisord runs every Procfile command as written."""
from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from config.supervisor import config_text, procfile_processes
from messaging.channels import ALL_QUEUES


def worker_queues() -> list[str]:
    """Return the `-Q` list of the Procfile's worker command."""
    args = shlex.split(procfile_processes()["worker"])
    return args[args.index("-Q") + 1].split(",")


def test_the_worker_consumes_every_queue_of_the_channel_table() -> None:
    assert worker_queues() == list(ALL_QUEUES)


def test_supervisord_runs_every_procfile_command_and_restarts_it(tmp_path: Path) -> None:
    parser = configparser.RawConfigParser()
    parser.read_string(config_text(tmp_path, procfile_processes()))
    programs = {section.split(":", 1)[1]: parser[section] for section in parser.sections()
                if section.startswith("program:")}
    assert list(programs) == ["web", "worker", "beat", "flower", "dispatcher"]
    for name, command in procfile_processes().items():
        argv = shlex.split(programs[name]["command"].replace("%%", "%"))
        assert argv == ["/bin/bash", "-c", f"exec {command}"]
        assert programs[name]["autorestart"] == "true"
        # SIGTERM to the main process only (a warm shutdown finishes the batches in
        # flight); SIGKILL, after the wait, to the whole group.
        assert (programs[name]["stopasgroup"], programs[name]["killasgroup"]) == (
            "false", "true")
