"""A walk's new steps, built with Django's positional constructor, hold what the keyword
constructor gives them."""
from __future__ import annotations

from typing import Any

import pytest

from flows import engine, services, walker
from flows.models import Execution, Step
from tests.factories import ContactFactory, FlowFactory

pytestmark = pytest.mark.django_db

CONDITION_UPDATE_SEND = (
    [{"id": "n1", "type": "condition", "data": {"rules": {"all": [
        {"field": "contact.attributes.vip", "op": "exists"}]}}},
     {"id": "n2", "type": "update_contact", "data": {"attributes": {"done": True}}},
     {"id": "n3", "type": "send_sms", "data": {"body": "Hi"}},
     {"id": "x", "type": "end"}],
    [{"id": "e1", "source": "n1", "target": "n2", "sourceHandle": "true"},
     {"id": "e2", "source": "n1", "target": "x", "sourceHandle": "false"},
     {"id": "e3", "source": "n2", "target": "n3"}])


def test_a_walked_step_holds_every_field_the_keyword_constructor_gives_it(workspace,
                                                                          monkeypatch):
    flow = FlowFactory(workspace=workspace, publish=True, nodes=CONDITION_UPDATE_SEND[0],
                       edges=CONDITION_UPDATE_SEND[1])
    contact = ContactFactory(workspace=workspace, attributes={"vip": True})
    started, _ = services.executions_start_many(flow=flow, contacts=[contact], data={},
                                                source="api")
    execution = Execution.objects.select_related("contact", "workspace").get(
        pk=started[0].pk)
    built: list[tuple[Step, Step]] = []
    new_step = walker._new_step

    def both(execution: Execution, node: dict, visit: int, fields: dict[str, Any]) -> Step:
        """Build the step as the walk does, and as it did with the keyword constructor."""
        step = new_step(execution, node, visit, fields)
        built.append((step, Step(execution=execution, node_id=node["id"],
                                 node_type=node["type"], visit=visit, **fields)))
        return step

    monkeypatch.setattr(walker, "_new_step", both)
    steps = engine._walk(execution, [], {}).steps
    assert [s.node_id for s in steps] == ["n1", "n2", "n3"]
    assert [step for step, _ in built] == steps
    assert steps[0].message is None and steps[2].message is not None
    for step, expected in built:
        for field in Step._meta.concrete_fields:
            assert getattr(step, field.attname) == getattr(expected, field.attname), field
        assert (step._state.adding, step._state.db) == (True, None)
        assert step._state.fields_cache == expected._state.fields_cache
        assert step.execution is execution
