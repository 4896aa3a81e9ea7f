from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.models import Workspace
from core.services import api_key_create


def workspace_by_ref(ref: str) -> Workspace:
    """Return the workspace with this slug or id; CommandError (one line) when none."""
    workspace = Workspace.objects.filter(slug=ref).first()
    if workspace is None:
        try:
            workspace = Workspace.objects.filter(pk=ref).first()
        except Exception:  # not a UUID
            workspace = None
    if workspace is None:
        raise CommandError(f"No workspace with slug or id '{ref}'.")
    return workspace


def _expiry(options: dict) -> datetime | None:
    days, at = options["expires_in"], options["expires_at"]
    if days is not None and at:
        raise CommandError("Give --expires-in or --expires-at, not both.")
    if days is not None:
        if days <= 0:
            raise CommandError("--expires-in must be a positive number of days.")
        return timezone.now() + timedelta(days=days)
    if not at:
        return None
    parsed = parse_datetime(at)
    if parsed is None:
        raise CommandError(f"--expires-at '{at}' is not an ISO 8601 time.")
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = ("Create an API key for a workspace (slug or id) and print it alone on stdout. "
            "Scopes: read, send, manage (default all three).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("workspace", help="workspace slug or id")
        parser.add_argument("--name", default="default")
        parser.add_argument("--scopes", default=None,
                            help="comma-separated: read,send,manage (default: all)")
        parser.add_argument("--expires-in", type=int, default=None, metavar="DAYS")
        parser.add_argument("--expires-at", default=None, help="ISO 8601 time (UTC if naive)")

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = workspace_by_ref(options["workspace"])
        scopes = options["scopes"].split(",") if options["scopes"] is not None else None
        try:
            key, secret = api_key_create(workspace=workspace, name=options["name"],
                                         scopes=scopes, expires_at=_expiry(options))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        expiry = f", expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else ""
        self.stderr.write(f"Created key {key.prefix} for workspace {workspace.slug} "
                          f"(scopes: {','.join(key.scopes)}{expiry}).")
        self.stdout.write(secret)
