"""Every /api/v1 route that names a row by id is served through core.api.WorkspaceScoped, so
a new view cannot forget the workspace scope (another workspace's id answers 404)."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from core.api import WorkspaceScoped
from flows.schedule_api import FlowScheduleView
from messaging.api.contacts import ContactViewSet
from monitoring.api.dead_letters import DeadLetterViewSet

# Views of /api/v1 routes with an id that are rightly not scoped by the key's workspace, each
# with the reason. None so far: the unauthenticated provider webhooks name no row in their
# paths, and a view added here must say how else it keeps tenants apart.
NOT_SCOPED: dict[type, str] = {}

# A path group that names a row: pk, id or <thing>_id (not e.g. a queue's name).
ID_GROUP = re.compile(r"\(\?P<(?:pk|id|\w+_id)>")


def _routes(resolver: URLResolver, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    """Yield every route under the resolver with its full path pattern (regex text)."""
    for entry in resolver.url_patterns:
        pattern = prefix + entry.pattern.regex.pattern.lstrip("^")
        if isinstance(entry, URLResolver):
            yield from _routes(entry, pattern)
        else:
            yield pattern, entry


def _view_class(callback: Callable) -> type | None:
    """Return the class behind a route's view function (DRF sets cls, Django view_class)."""
    return getattr(callback, "cls", None) or getattr(callback, "view_class", None)


def _scoped(view: type | None) -> bool:
    """Say whether the view's rows come through WorkspaceScoped, not around it."""
    return (isinstance(view, type) and issubclass(view, WorkspaceScoped)
            and view.get_queryset is WorkspaceScoped.get_queryset)


def test_every_api_route_with_an_id_is_scoped_to_the_keys_workspace() -> None:
    routes = {pattern: _view_class(entry.callback) for pattern, entry in _routes(get_resolver())
              if pattern.startswith("api/v1/") and ID_GROUP.search(pattern)}

    unscoped = {pattern: getattr(view, "__name__", repr(view))
                for pattern, view in routes.items()
                if view not in NOT_SCOPED and not _scoped(view)}

    assert unscoped == {}
    # The walk reaches the routers' detail routes (uuid and integer ids) and the hand-written
    # regex routes: a walk that found nothing would pass for nothing.
    assert {ContactViewSet, DeadLetterViewSet, FlowScheduleView} <= set(routes.values())


def test_a_view_that_filters_its_own_rows_is_not_taken_for_scoped() -> None:
    class OwnRows(WorkspaceScoped):
        model = ContactViewSet.model

        def scoped_queryset(self, *, workspace):
            return self.model.objects.filter(workspace=workspace)

        def get_queryset(self):  # bypasses scoped_queryset: the walk must refuse it
            return self.model.objects.all()

    assert _scoped(ContactViewSet)
    assert not _scoped(OwnRows)
    assert not _scoped(None)  # a plain function view


@pytest.mark.parametrize(("declared", "missing"), [
    ({"model": ContactViewSet.model}, "scoped_queryset"),
    ({"scoped_queryset": ContactViewSet.scoped_queryset}, "model"),
    ({}, "model and scoped_queryset"),
])
def test_a_view_that_does_not_say_which_rows_it_serves_cannot_be_declared(
        declared: dict, missing: str) -> None:
    with pytest.raises(TypeError, match=f"NoRows must declare {missing}"):
        type("NoRows", (WorkspaceScoped,), declared)
