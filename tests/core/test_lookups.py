"""`field__any` (core.lookups): the same rows as `field__in`, written as one array parameter
on PostgreSQL, for keys, relations and plain columns, empty and negated too."""
from __future__ import annotations

import uuid

import pytest
from django.db import connection

from messaging.models import Message
from tests.factories import ContactFactory, MessageFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_any_finds_what_in_finds_with_one_parameter():
    workspace = WorkspaceFactory()
    contacts = [ContactFactory(workspace=workspace) for _ in range(3)]
    wanted = [contacts[0].pk, contacts[2].pk, uuid.uuid4()]
    model = type(contacts[0])

    found = model.objects.filter(pk__any=wanted)

    assert set(found) == set(model.objects.filter(pk__in=wanted)) == {contacts[0], contacts[2]}
    assert set(model.objects.exclude(pk__any=wanted)) == {contacts[1]}
    assert set(model.objects.filter(workspace__any=[workspace.pk])) == set(contacts)
    assert set(model.objects.filter(external_id__any=[contacts[1].external_id])) == {
        contacts[1]}
    assert list(model.objects.filter(pk__any=[])) == []
    assert model.objects.exclude(pk__any=[]).count() == 3
    sql, params = found.query.sql_with_params()
    if connection.vendor == "postgresql":
        assert "= ANY(%s)" in sql and list(params) == [wanted]
    sent = [MessageFactory(workspace=workspace, contact=contact) for contact in contacts]
    by_contact = Message.objects.filter(contact_id__any=wanted)
    assert set(by_contact) == set(Message.objects.filter(contact_id__in=wanted)) == {
        sent[0], sent[2]}
