"""Start Flower only behind a strong basic-auth password (the Procfile's `flower`).

Flower shows every task's arguments and can revoke tasks and shut workers down, and its
basic auth has no lockout of its own: a guessable password there undoes the sign-in
lockout of the web process. So this refuses to start it unless every `user:password` of
FLOWER_BASIC_AUTH has a password of at least MIN_PASSWORD_LENGTH characters that is not a
well-known default, then execs `celery -A config flower` with the given arguments. Flower
reads FLOWER_BASIC_AUTH from the environment itself, so the password is not on the command
line (where `ps` shows it). README "Security" says how to put Flower behind a proxy.

    python -m processes.flower --port=5555 --persistent=True ...
"""
from __future__ import annotations

import os
import sys

from core.env import env_or_var_file, load_env_file

# 16 characters of `secrets.token_urlsafe` (what `make run` generates) is 96 bits.
MIN_PASSWORD_LENGTH = 16
KNOWN_DEFAULTS = {"admin", "password", "flower", "changeme", "change-me", "secret", "celery",
                  "guest", "root", "test", "letmein", "12345678", "123456789012", "qwerty"}


def auth_problems(value: str) -> list[str]:
    """Return why FLOWER_BASIC_AUTH (`user:password[,user:password...]`) is not safe to
    serve with; an empty list means it is."""
    if not value.strip():
        return ["FLOWER_BASIC_AUTH is not set: Flower would answer anyone"]
    problems = []
    for pair in value.split(","):
        user, sep, password = pair.strip().partition(":")
        if not sep or not user:
            problems.append(f"{pair.strip()!r} is not user:password")
        elif len(password) < MIN_PASSWORD_LENGTH:
            problems.append(f"the password of {user!r} is shorter than "
                            f"{MIN_PASSWORD_LENGTH} characters")
        elif password.lower() in KNOWN_DEFAULTS or password.lower() == user.lower() or (
                len(set(password)) < 4):
            problems.append(f"the password of {user!r} is a default or trivially guessable")
    return problems


def main(argv: list[str]) -> int:
    """Check the basic auth, then replace this process with Flower."""
    load_env_file()
    value = env_or_var_file("FLOWER_BASIC_AUTH", "flower_auth")
    problems = auth_problems(value)
    if problems:
        for problem in problems:
            print(f"refusing to start Flower: {problem}", file=sys.stderr)
        print("set FLOWER_BASIC_AUTH=user:<a long random password> (README: Security)",
              file=sys.stderr)
        return 2
    os.environ["FLOWER_BASIC_AUTH"] = value.strip()
    command = [sys.executable, "-m", "celery", "-A", "config", "flower", *argv]
    os.execv(sys.executable, command)
    return 0  # not reached: execv replaces the process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
