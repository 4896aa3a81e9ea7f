"""Write a supervisord configuration that runs every process of the Procfile.

`make run` (scripts/run.sh) starts supervisord with it: a process that exits is started
again while the others keep running (honcho stopped everything when one process exited),
and Ctrl-C / SIGTERM stops them all. The Procfile stays the one list of process commands;
this module only wraps each in a `[program:x]` section.
`python -m config.supervisor` writes VAR_DIR/supervisord.conf and prints its path.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from core.env import BASE_DIR, load_env_file, var_dir

PROCFILE = BASE_DIR / "Procfile"
# Seconds a process must stay up to count as started; restarts of one that keeps failing
# sooner stop after START_RETRIES (FATAL in the log) instead of looping forever.
START_SECONDS = 3
START_RETRIES = 10
# Celery's warm shutdown finishes running tasks; give it this long before SIGKILL.
STOP_WAIT_SECONDS = 30


def procfile_processes(path: Path = PROCFILE) -> dict[str, str]:
    """Return the Procfile's processes, name -> shell command, in file order."""
    processes: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            processes[name.strip()] = command.strip()
    return processes


def _section(name: str, values: dict[str, object]) -> str:
    return "\n".join([f"[{name}]", *(f"{key}={value}" for key, value in values.items())])


def _program(command: str) -> dict[str, object]:
    """Return one program's settings: the command through bash (the Procfile uses shell
    expansions like ${PORT:-8000}), exec'd so the pid supervisord sees is the process."""
    return {
        # supervisord expands %(...)s in values: a literal % is written %%.
        "command": "/bin/bash -c " + shlex.quote(f"exec {command}").replace("%", "%%"),
        "directory": BASE_DIR,
        "autorestart": "true",
        "startsecs": START_SECONDS,
        "startretries": START_RETRIES,
        # Stop with SIGTERM to the main process only: Celery's main process then finishes the
        # batches its pool is sending (a warm shutdown) and gunicorn's master its requests.
        # SIGTERM to the whole group kills the pool mid-batch and every message in flight
        # is sent again after its lease (`make chaos SCENARIO=sigterm-group`). A process
        # still up after STOP_WAIT_SECONDS is killed with its whole group: no orphans.
        "stopasgroup": "false",
        "killasgroup": "true",
        "stopwaitsecs": STOP_WAIT_SECONDS,
        # Every process's output on the terminal of `make run`, as honcho showed it.
        "redirect_stderr": "true",
        "stdout_logfile": "/dev/stdout",
        "stdout_logfile_maxbytes": 0,
    }


def config_text(var: Path, processes: dict[str, str]) -> str:
    """Return the supervisord configuration for these processes, its files under var."""
    sections = [
        _section("supervisord", {
            "nodaemon": "true", "logfile": var / "supervisord.log",
            "pidfile": var / "supervisord.pid", "childlogdir": var}),
        # supervisorctl (and the tests) reach the running supervisord on this socket.
        _section("unix_http_server", {"file": var / "supervisor.sock", "chmod": "0700"}),
        _section("rpcinterface:supervisor", {
            "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"}),
        _section("supervisorctl", {"serverurl": f"unix://{var / 'supervisor.sock'}"}),
        *(_section(f"program:{name}", _program(command))
          for name, command in processes.items()),
    ]
    return "\n\n".join(sections) + "\n"


def write_config() -> Path:
    """Write VAR_DIR/supervisord.conf from the Procfile and return its path."""
    var = var_dir()
    var.mkdir(parents=True, exist_ok=True)
    path = var / "supervisord.conf"
    path.write_text(config_text(var, procfile_processes()))
    return path


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit("usage: python -m config.supervisor")
    load_env_file()
    print(write_config())
