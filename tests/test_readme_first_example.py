"""The README's first example, run as written (bash, curl) against the live test server and a
live worker: the contact it creates is greeted by name, and the outbox page shows the send."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from django.test import Client
from django.urls import reverse

from messaging.models import Message
from tests.factories import StaffUserFactory
from tests.support.waiting import wait_until

README = Path(__file__).resolve().parent.parent / "README.md"


def first_example() -> str:
    """Return the README's shell block that creates a contact and sends it a message."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    [block] = [block for block in blocks if "CONTACT=$(" in block]
    return block


def test_the_readmes_first_example_greets_the_contact_by_name(live_server, live_worker,
                                                             workspace, api_key):
    host = live_server.url.removeprefix("http://")
    script = first_example().replace("localhost:8000", host)
    script = re.sub(r"^KEY=.*$", f"KEY={api_key}", script, count=1, flags=re.M)

    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                          text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    message = wait_until(lambda: Message.objects.filter(workspace=workspace,
                                                        status="sent").first())
    assert message.contact is not None and message.contact.first_name == "Ada"
    assert message.provider == "console" and message.rendered == {"body": "Hi Ada"}
    staff = Client()
    staff.force_login(StaffUserFactory())
    page = staff.get(reverse("dashboard:outbox"), {"workspace": str(workspace.pk)})
    assert "Hi Ada" in page.content.decode()
