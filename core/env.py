"""Typed helpers that read settings from the environment (and from `.env`, when present)."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from dotenv import dotenv_values

BASE_DIR = Path(__file__).resolve().parent.parent

TRUE_VALUES = {"1", "true", "yes", "on"}


def env_str(name: str, default: str = "") -> str:
    """Return the variable, or the default when it is unset or empty."""
    value = os.environ.get(name, "")
    return value if value != "" else default


def env_bool(name: str, default: bool = False) -> bool:
    """Return True for 1/true/yes/on (any case)."""
    value = os.environ.get(name, "")
    return default if value == "" else value.strip().lower() in TRUE_VALUES


def env_int(name: str, default: int) -> int:
    """Return the variable as an int."""
    value = os.environ.get(name, "")
    return default if value == "" else int(value)


def env_float(name: str, default: float) -> float:
    """Return the variable as a float."""
    value = os.environ.get(name, "")
    return default if value == "" else float(value)


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Return a comma-separated variable as a list of stripped, non-empty items."""
    value = os.environ.get(name, "")
    if value == "":
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def redis_url_for_kombu(url: str) -> str:
    """Return a broker URL for kombu: redis-py's unix:// sockets are redis+socket:// there."""
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://"):]
    return url


def env_proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """Return Django's SECURE_PROXY_SSL_HEADER from `Header` or `Header=value` (default https).

    Only for a proxy that sets (or strips) this header on every request: otherwise a client
    could claim https itself (https://docs.djangoproject.com/en/5.2/ref/settings/#secure-proxy-ssl-header).
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, has_value, value = (part.strip() for part in raw.partition("="))
    if not header.replace("-", "").replace("_", "").isalnum() or (has_value and not value):
        raise ValueError(f"{name} must be a header name, optionally =value "
                         f"(e.g. X-Forwarded-Proto or X-Forwarded-Ssl=on), not {raw!r}")
    return "HTTP_" + header.upper().replace("-", "_"), value or "https"


def env_file() -> Path:
    """Return the dotenv file to read: ENV_FILE, else `.env` beside manage.py."""
    return BASE_DIR / os.environ.get("ENV_FILE", ".env")


def env_file_values() -> dict[str, str]:
    """Return the variables of the dotenv file that the real environment does not set."""
    path = env_file()
    if not path.is_file():
        return {}
    return {key: value or "" for key, value in dotenv_values(path).items()
            if key not in os.environ}


def load_env_file() -> None:
    """Copy the dotenv file into os.environ; a real environment variable always wins."""
    os.environ.update(env_file_values())


def var_dir() -> Path:
    """Return VAR_DIR (default ./var), relative paths taken from the project root, so a
    command run from another directory finds the same files as `make run`."""
    return BASE_DIR / env_str("VAR_DIR", "var")


def env_or_var_file(name: str, filename: str) -> str:
    """Return the variable, else the value `make run` generated into VAR_DIR/<filename>."""
    value = env_str(name)
    path = var_dir() / filename
    if not value and path.is_file():
        value = path.read_text().strip()
    return value


if __name__ == "__main__":
    # `eval "$(python -m core.env)"` (scripts/run.sh): the shell sees what settings see.
    if sys.argv[1:] not in ([], ["exports"]):
        sys.exit("usage: python -m core.env [exports]")
    for key, value in env_file_values().items():
        print(f"export {key}={shlex.quote(value)}")
