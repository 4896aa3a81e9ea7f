"""Reads for audiences, each scoped to one workspace."""
from __future__ import annotations

from django.db.models import QuerySet

from audiences.models import Broadcast, ContactImport, Segment
from core.models import Workspace


def contact_imports_list(*, workspace: Workspace) -> QuerySet[ContactImport]:
    """Return the workspace's contact imports, newest first."""
    return ContactImport.objects.filter(workspace=workspace).order_by("-created_at")


def broadcasts_list(*, workspace: Workspace) -> QuerySet[Broadcast]:
    """Return the workspace's broadcasts, newest first."""
    return (Broadcast.objects.filter(workspace=workspace).select_related("template_version")
            .order_by("-created_at"))


def segments_list(*, workspace: Workspace) -> QuerySet[Segment]:
    """Return the workspace's segments by name."""
    return Segment.objects.filter(workspace=workspace).order_by("name")
