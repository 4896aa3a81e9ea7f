from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.services import api_key_create, workspace_create


class Command(BaseCommand):
    help = "Create a workspace and print a new API key alone on stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--timezone", default="UTC")
        parser.add_argument("--slug", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            workspace = workspace_create(name=options["name"], slug=options["slug"],
                                         timezone_name=options["timezone"])
        except ValidationError as exc:
            # One line naming each field: "name: This field cannot be blank."
            fields = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
            raise CommandError("; ".join(
                f"{field}: {message}" if field else message
                for field, messages in fields.items() for message in messages)) from exc
        _, secret = api_key_create(workspace=workspace)
        # The key alone on stdout, so `KEY=$(...)` needs no pipe that would hide a failure.
        self.stderr.write(f"Created workspace {workspace.slug} ({workspace.id}).")
        self.stderr.write("API key (shown once):")
        self.stdout.write(secret)
