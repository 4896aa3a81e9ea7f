from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.management.commands.create_api_key import workspace_by_ref
from core.models import Membership
from core.services import MemberError, member_add


class Command(BaseCommand):
    help = ("Give a dashboard user (created when new) a role in a workspace: owner, admin or "
            "viewer. A generated password is printed once when none is given.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--workspace", required=True, help="workspace slug or id")
        parser.add_argument("--role", required=True, help=", ".join(Membership.Role.values))
        parser.add_argument("--password", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = workspace_by_ref(options["workspace"])
        try:
            membership, generated = member_add(
                username=options["username"], workspace=workspace, role=options["role"],
                password=options["password"])
        except MemberError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"{membership.user.get_username()} is {membership.role} of "
                          f"{workspace.slug}.")
        if generated:
            self.stderr.write("Password (shown once):")
            self.stdout.write(generated)
