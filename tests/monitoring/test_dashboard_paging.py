"""The dashboard's lists page without counting their rows (monitoring.dashboard.paging): a
page reads one row past its end to know whether an older page exists, so its cost does not
grow with the table."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import ExecutionFactory, MessageFactory, StepFactory

pytestmark = pytest.mark.django_db

PAGE_SIZE = 25


def open_page(staff: Client, name: str, workspace, **params) -> tuple[object, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = staff.get(reverse(name), {"workspace": str(workspace.pk), **params})
    assert response.status_code == 200
    return response, [query["sql"] for query in queries.captured_queries]


def test_the_messages_list_pages_newest_first_without_a_row_count(staff, workspace):
    messages = MessageFactory.create_batch(PAGE_SIZE + 3, workspace=workspace)
    newest_first = sorted(messages, key=lambda m: (m.created_at, m.pk), reverse=True)

    first, sql = open_page(staff, "dashboard:messages", workspace)
    assert not [q for q in sql if "COUNT(" in q.upper()], "a page counted the table"
    page = first.context["page"]
    assert [m.pk for m in page] == [m.pk for m in newest_first[:PAGE_SIZE]]
    assert (page.has_previous(), page.has_next(), page.next_page_number()) == (False, True, 2)
    assert 'rel="next"' in first.content.decode()

    second, _ = open_page(staff, "dashboard:messages", workspace, page=2)
    page = second.context["page"]
    assert [m.pk for m in page] == [m.pk for m in newest_first[PAGE_SIZE:]]
    assert (page.has_previous(), page.has_next()) == (True, False)
    assert 'rel="prev"' in second.content.decode()
    assert 'rel="next"' not in second.content.decode()


@pytest.mark.parametrize("asked", ["0", "-2", "x", ""])
def test_a_page_number_that_is_not_one_shows_the_first_page(staff, workspace, asked):
    MessageFactory.create_batch(2, workspace=workspace)
    response, _ = open_page(staff, "dashboard:messages", workspace, page=asked)
    page = response.context["page"]
    assert (page.number, len(page), page.has_next()) == (1, 2, False)
    assert "2 rows" in response.content.decode()


def test_a_page_past_the_end_is_empty_and_links_back(staff, workspace):
    MessageFactory.create_batch(2, workspace=workspace)
    response, _ = open_page(staff, "dashboard:messages", workspace, page=5)
    page = response.context["page"]
    assert (len(page), page.has_previous(), page.has_next()) == (0, True, False)
    assert 'rel="prev"' in response.content.decode()


def test_the_executions_list_counts_the_steps_of_its_page_only(staff, workspace):
    busy = ExecutionFactory(workspace=workspace)
    StepFactory.create_batch(3, execution=busy)
    idle = ExecutionFactory(workspace=workspace)

    response, sql = open_page(staff, "dashboard:executions", workspace)
    counts = {execution.pk: execution.step_count for execution in response.context["page"]}
    assert counts == {busy.pk: 3, idle.pk: 0}
    # The list's own query joins no steps; one grouped query counts the page's.
    step_queries = [q for q in sql if "flows_step" in q]
    assert len(step_queries) == 1 and "IN (" in step_queries[0]
    assert not [q for q in sql if "COUNT(*)" in q.upper()]
