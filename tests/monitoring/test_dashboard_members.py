"""Workspace members in the dashboard: their own workspaces only, roles decide the buttons
and the actions, and the service's own login, logout and password pages."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from core import roles
from core.models import DeadLetter, Membership
from flows.models import Execution
from messaging.models import MessageStatus
from tests.factories import (
    PASSWORD,
    ExecutionFactory,
    FlowScheduleFactory,
    MembershipFactory,
    StaffUserFactory,
    WorkspaceFactory,
    failed_execution,
    failed_message,
)
from tests.monitoring.test_dashboard import PAGES

pytestmark = pytest.mark.django_db



def _as(client: Client, membership: Membership) -> Client:
    client.force_login(membership.user)
    return client


@pytest.fixture
def ours():
    return WorkspaceFactory(name="Acme")


@pytest.fixture
def theirs():
    return WorkspaceFactory(name="Zeta")


@pytest.fixture
def viewer(client, ours) -> Client:
    return _as(client, MembershipFactory(workspace=ours, role=Membership.Role.VIEWER))


@pytest.fixture
def admin(client, ours) -> Client:
    return _as(client, MembershipFactory(workspace=ours, role=Membership.Role.ADMIN))


# --- the rule ------------------------------------------------------------------------------------

def test_roles_decide_what_a_member_may_do(ours, theirs):
    viewer = MembershipFactory(workspace=ours, role="viewer").user
    admin = MembershipFactory(workspace=ours, role="admin").user
    owner = MembershipFactory(workspace=ours, role="owner").user
    staff = StaffUserFactory()
    for action in (roles.REPLAY, roles.DISCARD, roles.CANCEL, roles.PAUSE, roles.RESUME,
                   roles.EDIT):
        assert not roles.can(viewer, ours, action)
        assert roles.can(admin, ours, action) and roles.can(owner, ours, action)
        assert not roles.can(admin, theirs, action)  # not its workspace
        assert not roles.can(admin, None, action)  # global: staff only
        assert roles.can(staff, None, action) and roles.can(staff, theirs, action)
    assert roles.can(viewer, ours, roles.VIEW) and not roles.can(viewer, theirs, roles.VIEW)
    assert roles.can(owner, ours, roles.MANAGE_MEMBERS)
    assert not roles.can(admin, ours, roles.MANAGE_MEMBERS)
    assert not roles.can(owner, ours, roles.RESET_RATE_LIMITS)
    with pytest.raises(ValueError, match="unknown action"):
        roles.can(staff, ours, "launch")


def test_a_membership_is_unique_per_user_and_workspace(ours):
    from django.db import IntegrityError

    membership = MembershipFactory(workspace=ours)
    with pytest.raises(IntegrityError):
        Membership.objects.create(user=membership.user, workspace=ours, role="admin")


# --- what a member sees --------------------------------------------------------------------------

@pytest.mark.parametrize("name", PAGES)
def test_a_member_sees_only_its_workspaces(viewer, ours, theirs, name):
    response = viewer.get(reverse(name))

    assert response.status_code == 200
    assert response.context["workspace"] == ours  # never the other one, even by default
    assert list(response.context["workspaces"]) == [ours]
    assert "Zeta" not in response.content.decode()
    assert viewer.get(reverse(name), {"workspace": str(theirs.pk)}).status_code == 404


def test_staff_still_see_every_workspace(client, ours, theirs):
    client.force_login(StaffUserFactory())
    response = client.get(reverse("dashboard:overview"), {"workspace": str(theirs.pk)})
    assert response.status_code == 200
    assert {w.name for w in response.context["workspaces"]} == {"Acme", "Zeta"}


def test_a_remembered_workspace_of_someone_else_is_not_opened(viewer, ours, theirs):
    viewer.cookies["dashboard_workspace"] = str(theirs.pk)
    assert viewer.get(reverse("dashboard:overview")).context["workspace"] == ours


def test_another_workspaces_objects_answer_404_to_a_member(admin, theirs):
    message, letter = failed_message(theirs)
    execution, step, step_letter = failed_execution(theirs)
    waiting = ExecutionFactory(workspace=theirs, status=Execution.Status.WAITING)
    schedule = FlowScheduleFactory(workspace=theirs)
    gets = [reverse("dashboard:message-detail", args=[message.pk]),
            reverse("dashboard:execution-detail", args=[execution.pk])]
    posts = [reverse("dashboard:dead-letter-retry", args=[letter.pk]),
             reverse("dashboard:dead-letter-discard", args=[step_letter.pk]),
             reverse("dashboard:step-retry", args=[step.pk]),
             reverse("dashboard:execution-cancel", args=[waiting.pk]),
             reverse("dashboard:schedule-toggle", args=[schedule.pk])]
    for url in gets:
        assert admin.get(url).status_code == 404, url
    for url in posts:
        assert admin.post(url, {"enabled": "0"}).status_code == 404, url
    assert admin.post(reverse("dashboard:dead-letters-retry"),
                      {"workspace": str(theirs.pk)}).status_code == 404
    letter.refresh_from_db()
    waiting.refresh_from_db()
    schedule.refresh_from_db()
    assert letter.status == DeadLetter.Status.OPEN
    assert waiting.status == Execution.Status.WAITING
    assert schedule.enabled


# --- viewers read, admins act --------------------------------------------------------------------

def test_a_viewer_sees_no_action_buttons(viewer, ours):
    failed_message(ours)
    execution, _, _ = failed_execution(ours)
    FlowScheduleFactory(workspace=ours)
    pages = {
        "dead-letters": viewer.get(reverse("dashboard:dead-letters")),
        "execution": viewer.get(reverse("dashboard:execution-detail", args=[execution.pk])),
        "schedules": viewer.get(reverse("dashboard:schedules")),
        "rate-limits": viewer.get(reverse("dashboard:rate-limits")),
    }
    for name, response in pages.items():
        html = response.content.decode()
        assert response.status_code == 200, name
        assert 'method="post"' not in html.replace(
            'method="post" action="/accounts/logout/"', ""), name
    assert "tr data-dead-letter" in pages["dead-letters"].content.decode()


def test_a_viewers_posts_answer_403_and_change_nothing(viewer, ours):
    message, letter = failed_message(ours)
    execution, step, step_letter = failed_execution(ours)
    waiting = ExecutionFactory(workspace=ours, status=Execution.Status.WAITING)
    schedule = FlowScheduleFactory(workspace=ours)
    posts = [(reverse("dashboard:dead-letter-retry", args=[letter.pk]), {}),
             (reverse("dashboard:dead-letter-discard", args=[letter.pk]), {}),
             (reverse("dashboard:dead-letters-retry"), {"workspace": str(ours.pk)}),
             (reverse("dashboard:step-retry", args=[step.pk]), {}),
             (reverse("dashboard:execution-cancel", args=[waiting.pk]), {}),
             (reverse("dashboard:schedule-toggle", args=[schedule.pk]), {"enabled": "0"}),
             (reverse("dashboard:rate-limits-reset"), {"workspace": str(ours.pk)})]
    for url, data in posts:
        assert viewer.post(url, data).status_code == 403, url
    for row in (letter, step_letter, waiting, schedule, message):
        row.refresh_from_db()
    assert letter.status == step_letter.status == DeadLetter.Status.OPEN
    assert waiting.status == Execution.Status.WAITING
    assert schedule.enabled
    assert message.status == MessageStatus.FAILED


def test_an_admin_replays_a_dead_letter_but_cannot_reset_rate_limits(admin, ours):
    message, letter = failed_message(ours)
    page = admin.get(reverse("dashboard:dead-letters")).content.decode()
    assert 'class="retry"' in page
    assert "Reset counters" not in admin.get(reverse("dashboard:rate-limits")).content.decode()

    response = admin.post(reverse("dashboard:dead-letter-retry", args=[letter.pk]))

    assert response.status_code == 302
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED
    assert letter.replayed_by.endswith(Membership.objects.get(workspace=ours).user.username)
    assert admin.post(reverse("dashboard:rate-limits-reset"),
                      {"workspace": str(ours.pk)}).status_code == 403


# --- the service's own login pages ---------------------------------------------------------------

def test_a_member_logs_in_changes_its_password_and_logs_out(client, ours):
    member = MembershipFactory(workspace=ours).user
    page = client.get("/accounts/login/?next=/dashboard/")
    assert page.status_code == 200
    assert b'id="login-form"' in page.content and b"dashboard/dashboard" in page.content

    response = client.post("/accounts/login/", {"username": member.username,
                                                "password": PASSWORD, "next": "/dashboard/"},
                           follow=True)
    assert response.redirect_chain[-1][0] == "/dashboard/"
    assert response.context["workspace"] == ours

    response = client.post("/accounts/password/", {
        "old_password": PASSWORD, "new_password1": "a-new-long-password",
        "new_password2": "a-new-long-password"}, follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/password/done/"
    member.refresh_from_db()
    assert member.check_password("a-new-long-password")

    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client.get("/dashboard/").status_code == 302


def test_a_wrong_password_shows_the_login_page_again(client, ours):
    member = MembershipFactory(workspace=ours).user
    response = client.post("/accounts/login/", {"username": member.username,
                                                "password": "nope"})
    assert response.status_code == 200
    assert b"did not match" in response.content


def test_a_member_who_is_not_staff_does_not_get_into_the_admin(client, ours):
    client.force_login(MembershipFactory(workspace=ours).user)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert client.get("/admin/core/workspace/").status_code == 302


def test_the_topbar_links_the_admin_only_for_staff(viewer, ours):
    html = viewer.get(reverse("dashboard:overview")).content.decode()
    assert 'href="/admin/"' not in html
    assert 'href="/accounts/password/"' in html
    assert 'action="/accounts/logout/"' in html
