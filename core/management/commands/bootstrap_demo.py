from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from core.models import Workspace
from core.services import api_key_create, workspace_create


class Command(BaseCommand):
    help = "First run only: create a demo workspace with an API key and an admin user."

    def handle(self, *args: Any, **options: Any) -> None:
        if Workspace.objects.filter(slug="demo").exists():
            self.stdout.write("Demo workspace exists already (keys are shown only once; "
                              "make another with: python manage.py create_api_key demo).")
            return
        workspace = workspace_create(name="Demo", slug="demo")
        _, secret = api_key_create(workspace=workspace, name="demo")
        user_model = get_user_model()
        password = secrets.token_urlsafe(12)
        if not user_model.objects.filter(username="admin").exists():
            user_model.objects.create_superuser("admin", "admin@example.com", password)
            login = f"admin / {password}"
        else:
            login = "admin (existing user, password unchanged)"
        self.stdout.write("=" * 72)
        self.stdout.write("Demo workspace created.")
        # The web process listens on PORT under make run (the Procfile's default is 8000).
        base = f"http://localhost:{os.environ.get('PORT') or 8000}"
        self.stdout.write(f"  Admin login ({base}/admin/): {login}")
        self.stdout.write(f"  API key (shown once): {secret}")
        self.stdout.write(f'  Try: curl -H "Authorization: Bearer <key>" {base}/api/v1/contacts')
        self.stdout.write("=" * 72)
