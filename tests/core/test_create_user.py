"""manage.py create_user: a dashboard user with a role in one workspace."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from core.models import Membership
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_it_creates_a_user_with_a_role_and_prints_a_generated_password_once(capsys):
    workspace = WorkspaceFactory(slug="acme")

    call_command("create_user", "dana", "--workspace", "acme", "--role", "viewer")

    out = capsys.readouterr()
    password = out.out.strip()
    user = get_user_model().objects.get(username="dana")
    assert user.check_password(password) and len(password) >= 12
    assert not user.is_staff
    assert Membership.objects.get(user=user).role == "viewer"
    assert "dana is viewer of acme" in out.err
    assert Membership.objects.get(user=user).workspace == workspace


def test_a_given_password_is_used_and_not_printed(capsys):
    WorkspaceFactory(slug="acme")
    call_command("create_user", "ola", "--workspace", "acme", "--role", "owner",
                 "--password", "a-long-enough-secret")
    out = capsys.readouterr()
    assert out.out == ""
    assert get_user_model().objects.get(username="ola").check_password("a-long-enough-secret")


def test_an_existing_user_joins_a_second_workspace(capsys):
    WorkspaceFactory(slug="acme")
    WorkspaceFactory(slug="zeta")
    call_command("create_user", "kim", "--workspace", "acme", "--role", "admin")
    call_command("create_user", "kim", "--workspace", "zeta", "--role", "viewer")
    assert capsys.readouterr().out.count("\n") == 1  # one password, from the first call
    roles = dict(Membership.objects.filter(user__username="kim")
                 .values_list("workspace__slug", "role"))
    assert roles == {"acme": "admin", "zeta": "viewer"}


@pytest.mark.parametrize("args, message", [
    (["--workspace", "nowhere", "--role", "viewer"], "No workspace with slug or id 'nowhere'"),
    (["--workspace", "acme", "--role", "boss"], "Unknown role 'boss'"),
    (["--workspace", "acme", "--role", "viewer", "--password", "short"], "too short"),
])
def test_bad_input_is_one_line_and_creates_nothing(args, message):
    WorkspaceFactory(slug="acme")
    with pytest.raises(CommandError, match=message):
        call_command("create_user", "lee", *args)
    assert not get_user_model().objects.filter(username="lee").exists()


def test_a_second_membership_in_the_same_workspace_is_refused():
    WorkspaceFactory(slug="acme")
    call_command("create_user", "kim", "--workspace", "acme", "--role", "admin")
    with pytest.raises(CommandError, match="already admin of acme"):
        call_command("create_user", "kim", "--workspace", "acme", "--role", "viewer")
    with pytest.raises(CommandError, match="exists already"):
        call_command("create_user", "kim", "--workspace", "acme", "--role", "viewer",
                     "--password", "another-long-secret")

