from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.models import Workspace
from core.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a workspace (slug or id) and print it alone on stdout."

    def add_arguments(self, parser) -> None:
        parser.add_argument("workspace", help="workspace slug or id")
        parser.add_argument("--name", default="default")

    def handle(self, *args, **options) -> None:
        ref = options["workspace"]
        workspace = Workspace.objects.filter(slug=ref).first()
        if workspace is None:
            try:
                workspace = Workspace.objects.filter(pk=ref).first()
            except Exception:  # not a UUID
                workspace = None
        if workspace is None:
            raise CommandError(f"No workspace with slug or id '{ref}'.")
        key, secret = api_key_create(workspace=workspace, name=options["name"])
        self.stderr.write(f"Created key {key.prefix} for workspace {workspace.slug}.")
        self.stdout.write(secret)
