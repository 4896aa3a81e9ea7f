"""The move of workspaces, keys, contacts and dead letters to core keeps what hangs on them."""
from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations import RunPython

pytestmark = pytest.mark.django_db

core_initial = importlib.import_module("core.migrations.0001_initial")


def test_the_core_migration_runs_the_relabelling():
    steps = [op for op in core_initial.Migration.operations if isinstance(op, RunPython)]
    assert [step.code for step in steps] == [core_initial.adopt_content_types]
    assert ("contenttypes", "0002_remove_content_type_name") in core_initial.Migration.dependencies


def test_permissions_granted_on_the_old_labels_follow_the_models_to_core():
    # A database from before the move: the content type is messaging's, with a grant on it.
    ContentType.objects.filter(app_label="core", model="contact").delete()
    old = ContentType.objects.create(app_label="messaging", model="contact")
    permission = Permission.objects.create(content_type=old, codename="view_contact",
                                           name="Can view contact")
    staff = User.objects.create_user("ops", is_staff=True)
    staff.user_permissions.add(permission)

    core_initial.adopt_content_types(apps, SimpleNamespace(connection=connection))
    ContentType.objects.clear_cache()

    permission.refresh_from_db()
    assert permission.content_type.app_label == "core"
    assert User.objects.get(pk=staff.pk).has_perm("core.view_contact")


def test_a_new_database_keeps_the_content_types_it_has():
    before = list(ContentType.objects.filter(app_label="core").values_list("pk", "model"))
    core_initial.adopt_content_types(apps, SimpleNamespace(connection=connection))
    after = list(ContentType.objects.filter(app_label="core").values_list("pk", "model"))
    assert after == before and {"workspace", "apikey", "contact", "deadletter"} <= {
        model for _, model in after}
