"""The dashboard is found: `/` and admin's "View site" lead to it, it opens on the workspace
with the latest traffic, and it stays on the one the operator picked."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.factories import MessageFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def shown_workspace(client: Client, path: str = "/dashboard/", **params: str) -> str:
    response = client.get(path, params)
    assert response.status_code == 200
    return response.context["workspace"].name


def test_the_root_redirects_to_the_dashboard(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"


def test_admins_view_site_link_goes_to_the_dashboard(staff: Client) -> None:
    response = staff.get("/admin/")
    assert response.context["site_url"] == "/dashboard/"
    assert b'href="/dashboard/"' in response.content


def test_it_opens_on_the_workspace_with_the_latest_traffic(staff: Client) -> None:
    quiet, busy = WorkspaceFactory(name="Aardvark"), WorkspaceFactory(name="Zebra")
    now = timezone.now()
    MessageFactory(workspace=quiet, created_at=now - timedelta(days=2))
    MessageFactory(workspace=busy, created_at=now - timedelta(minutes=1))
    WorkspaceFactory(name="Aaa without traffic")
    assert shown_workspace(staff) == "Zebra"


def test_without_any_traffic_it_opens_on_the_first_by_name(staff: Client) -> None:
    WorkspaceFactory(name="Beta")
    WorkspaceFactory(name="Alpha")
    assert shown_workspace(staff) == "Alpha"


def test_it_remembers_the_chosen_workspace_across_pages(staff: Client) -> None:
    chosen, busy = WorkspaceFactory(name="Chosen"), WorkspaceFactory(name="Busy")
    MessageFactory(workspace=busy)
    assert shown_workspace(staff, workspace=str(chosen.pk)) == "Chosen"
    assert shown_workspace(staff) == "Chosen"
    assert shown_workspace(staff, "/dashboard/messages/") == "Chosen"
    assert shown_workspace(staff, workspace=str(busy.pk)) == "Busy"
    assert shown_workspace(staff, "/dashboard/executions/") == "Busy"


def test_a_remembered_workspace_that_was_deleted_falls_back_to_the_latest_traffic(
        staff: Client) -> None:
    gone, busy = WorkspaceFactory(name="Gone"), WorkspaceFactory(name="Busy")
    MessageFactory(workspace=busy)
    shown_workspace(staff, workspace=str(gone.pk))
    gone.delete()
    assert shown_workspace(staff) == "Busy"
