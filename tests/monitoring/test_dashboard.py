"""The operator dashboard at /dashboard/: access, workspace scoping, pages and actions."""
from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core.models import DeadLetter
from flows.models import Execution, Step
from messaging import ratelimit
from messaging.models import MessageStatus
from monitoring.dashboard.selectors.overview import Kpi, message_series
from monitoring.rollups import BUCKET_PRECISION
from tests.factories import (
    PASSWORD,
    AlertEventFactory,
    AlertRuleFactory,
    ContactFactory,
    DeadLetterFactory,
    ExecutionFactory,
    FlowFactory,
    MessageFactory,
    StaffUserFactory,
    StepFactory,
    WorkspaceFactory,
    failed_execution,
    failed_message,
    sent_message,
)

pytestmark = pytest.mark.django_db

PAGES = ["dashboard:overview", "dashboard:executions", "dashboard:messages",
         "dashboard:dead-letters", "dashboard:schedules", "dashboard:alerts",
         "dashboard:rate-limits", "dashboard:broadcasts", "dashboard:providers"]


def page(client: Client, name: str, workspace, **params) -> object:
    return client.get(reverse(name), {"workspace": str(workspace.pk), **params})


def kpis(response) -> dict[str, Kpi]:
    return {kpi.key: kpi for kpi in response.context["kpis"]}


# --- access -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(client, workspace, name):
    response = client.get(reverse(name))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/dashboard/")


@pytest.mark.parametrize("name", PAGES)
def test_users_who_are_neither_staff_nor_members_are_refused(client, workspace, name):
    client.force_login(StaffUserFactory(is_staff=False))

    response = client.get(reverse(name))

    assert response.status_code == 403


def test_staff_log_in_through_the_admin_login_and_land_on_the_dashboard(client, workspace):
    user = StaffUserFactory()

    response = client.post("/admin/login/?next=/dashboard/",
                           {"username": user.username, "password": PASSWORD,
                            "next": "/dashboard/"}, follow=True)

    assert response.redirect_chain[-1][0] == "/dashboard/"
    assert response.status_code == 200
    assert "kpis" in response.context


def test_anonymous_post_actions_change_nothing(client, workspace):
    message, letter = failed_message(workspace)

    response = client.post(reverse("dashboard:dead-letter-retry", args=[letter.pk]))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.OPEN


# --- workspaces -------------------------------------------------------------------------------

def test_without_workspaces_every_page_explains_how_to_create_one(staff):
    for name in PAGES:
        response = staff.get(reverse(name))
        assert response.status_code == 200
        assert b"No workspaces yet" in response.content


def test_the_first_workspace_by_name_is_the_default(staff):
    WorkspaceFactory(name="Zulu")
    alpha = WorkspaceFactory(name="Alpha")

    response = staff.get(reverse("dashboard:overview"))

    assert response.context["workspace"] == alpha


@pytest.mark.parametrize("value", ["not-a-uuid", str(uuid.uuid4())])
def test_an_unknown_workspace_answers_404(staff, workspace, value):
    response = staff.get(reverse("dashboard:overview"), {"workspace": value})

    assert response.status_code == 404


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_for_an_empty_workspace(staff, workspace, name):
    response = page(staff, name, workspace)

    assert response.status_code == 200
    assert b'name="viewport"' in response.content
    assert response.context["workspace"] == workspace


def test_the_overview_of_an_empty_workspace_says_no_data(staff, workspace):
    response = page(staff, "dashboard:overview", workspace)

    assert kpis(response)["sent"].value == "0"
    assert kpis(response)["success_rate"].value == "–"
    assert b"No data" in response.content
    assert b"No failures in this range." in response.content


def test_pages_show_only_the_selected_workspace(staff):
    mine, theirs = WorkspaceFactory(name="Mine"), WorkspaceFactory(name="Theirs")
    now = timezone.now()
    sent_message(mine, created=now - timedelta(minutes=5))
    for _ in range(3):
        sent_message(theirs, created=now - timedelta(minutes=5))
    their_message, _ = failed_message(theirs)
    their_execution = ExecutionFactory(workspace=theirs)

    overview = page(staff, "dashboard:overview", mine)
    messages = page(staff, "dashboard:messages", mine)
    executions = page(staff, "dashboard:executions", mine)
    letters = page(staff, "dashboard:dead-letters", mine)

    assert kpis(overview)["sent"].value == "1"
    assert kpis(overview)["dead_letters"].value == "0"
    assert str(their_message.pk) not in messages.content.decode()
    assert messages.context["page"].paginator.count == 1
    assert str(their_execution.pk) not in executions.content.decode()
    assert letters.context["page"].paginator.count == 0


def test_a_detail_page_asked_for_under_another_workspace_answers_404(staff):
    mine, theirs = WorkspaceFactory(), WorkspaceFactory()
    execution = ExecutionFactory(workspace=theirs)
    message = MessageFactory(workspace=theirs)

    assert staff.get(reverse("dashboard:execution-detail", args=[execution.pk]),
                     {"workspace": str(mine.pk)}).status_code == 404
    assert staff.get(reverse("dashboard:message-detail", args=[message.pk]),
                     {"workspace": str(mine.pk)}).status_code == 404
    # Without ?workspace= the page opens in the object's own workspace.
    response = staff.get(reverse("dashboard:execution-detail", args=[execution.pk]))
    assert response.context["workspace"] == theirs


# --- overview ---------------------------------------------------------------------------------

def test_overview_counts_sent_failed_and_the_success_rate(staff, workspace):
    now = timezone.now()
    for status in (MessageStatus.SENT, MessageStatus.SENT, MessageStatus.DELIVERED):
        sent_message(workspace, created=now - timedelta(hours=1), status=status)
    failed_message(workspace, created=now - timedelta(hours=2))
    MessageFactory(workspace=workspace, status=MessageStatus.QUEUED)
    sent_message(workspace, created=now - timedelta(days=3))  # outside the 24 h window

    figures = kpis(page(staff, "dashboard:overview", workspace, range="24h"))

    assert figures["sent"].value == "3"
    assert figures["failed"].value == "1"
    assert figures["success_rate"].value == "75.0%"
    assert figures["dead_letters"].value == "1"


@pytest.mark.parametrize("rolled", [True, False])
def test_overview_shows_the_execution_success_rate_and_a_table_per_flow(staff, workspace,
                                                                        rolled, monkeypatch):
    if not rolled:  # counted from the rows (as everywhere without PostgreSQL)
        monkeypatch.setattr("monitoring.dashboard.selectors.overview.rollups_cover",
                            lambda *args: False)
    # From the hourly totals (PostgreSQL) the percentiles are read from duration buckets.
    precision = BUCKET_PRECISION if rolled and connection.vendor == "postgresql" else 1e-6
    now = timezone.now()
    reminders = FlowFactory(workspace=workspace, name="Reminder")
    welcome = FlowFactory(workspace=workspace, name="Welcome")
    for seconds in (10, 20, 30, 40, 100):
        ExecutionFactory(workspace=workspace, flow=reminders, status="completed",
                         started_at=now - timedelta(hours=1, seconds=seconds),
                         completed_at=now - timedelta(hours=1))
    ExecutionFactory(workspace=workspace, flow=reminders, status="failed",
                     started_at=now - timedelta(hours=2), completed_at=now - timedelta(hours=2))
    ExecutionFactory(workspace=workspace, flow=welcome, status="failed",
                     started_at=now - timedelta(hours=2), completed_at=now - timedelta(hours=2))
    ExecutionFactory(workspace=workspace, flow=welcome, status="cancelled",
                     started_at=now - timedelta(hours=2), completed_at=now - timedelta(hours=2))
    ExecutionFactory(workspace=workspace, flow=welcome, status="completed",  # before the range
                     started_at=now - timedelta(days=3), completed_at=now - timedelta(days=3))
    ExecutionFactory(workspace=workspace, flow=welcome, status="running")

    response = page(staff, "dashboard:overview", workspace, range="24h")

    assert kpis(response)["execution_success_rate"].value == "71.4%"  # 5 of 7
    rows = {row.name: row for row in response.context["flows"]}
    assert list(rows) == ["Reminder", "Welcome"]
    reminder, hello = rows["Reminder"], rows["Welcome"]
    assert (reminder.finished, reminder.completed, reminder.failed) == (6, 5, 1)
    assert [reminder.p50, reminder.p90, reminder.p99] == pytest.approx([30.0, 76.0, 97.6],
                                                                       rel=precision)
    assert (hello.finished, hello.completed, hello.failed) == (2, 0, 1)
    assert hello.p50 is None and hello.failure_rate == 1.0
    html = response.content.decode()
    shown = f"{'≈' if reminder.approximate else ''}{reminder.p50:.1f} s"
    assert f'data-flow="{reminders.pk}"' in html and shown in html


def test_delivery_latency_counts_from_the_schedule_when_a_message_was_scheduled(staff,
                                                                                 workspace):
    now = timezone.now()
    sent_message(workspace, created=now - timedelta(hours=3), latency=2,
                 scheduled_for=now - timedelta(hours=1))
    sent_message(workspace, created=now - timedelta(hours=1), latency=4)

    figures = kpis(page(staff, "dashboard:overview", workspace))

    assert figures["latency"].value == "3.0 s"


def test_kpis_show_the_trend_against_the_previous_period(staff, workspace):
    now = timezone.now()
    for _ in range(2):
        sent_message(workspace, created=now - timedelta(minutes=30))
    for _ in range(4):
        sent_message(workspace, created=now - timedelta(minutes=90))
    failed_message(workspace, created=now - timedelta(minutes=20))

    figures = kpis(page(staff, "dashboard:overview", workspace, range="1h"))

    assert (figures["sent"].trend, figures["sent"].tone) == ("-50%", "bad")
    assert (figures["failed"].trend, figures["failed"].tone) == ("new", "bad")
    assert figures["success_rate"].trend == "-33.3 pp"
    assert figures["sent"].previous == "4"


def test_all_time_has_no_previous_period_to_compare_with(staff, workspace):
    sent_message(workspace, created=timezone.now() - timedelta(days=400))

    response = page(staff, "dashboard:overview", workspace, range="all")

    assert kpis(response)["sent"].value == "1"
    assert all(kpi.trend == "" for kpi in response.context["kpis"])
    assert response.context["window"].bucket == "week"


def test_the_overview_draws_pies_and_time_series_as_svg(staff, workspace):
    now = timezone.now()
    sent_message(workspace, created=now - timedelta(hours=2))
    failed_message(workspace, created=now - timedelta(hours=5))
    failed_execution(workspace, started=now - timedelta(hours=3))
    ExecutionFactory(workspace=workspace, started_at=now - timedelta(hours=1),
                     completed_at=now - timedelta(minutes=59))

    response = page(staff, "dashboard:overview", workspace)
    html = response.content.decode()

    assert html.count('class="chart chart-pie"') == 2
    assert html.count('class="chart chart-line"') == 4
    assert "<polyline" in html
    assert "sent: 1 (50.0%)" in html  # a pie slice's tooltip
    series = message_series(workspace, response.context["window"])
    assert sum(series.values["total"]) == 2
    assert len(series.labels) == 25  # every hour of the last 24 h, empty ones included


def test_a_pie_slice_links_to_the_list_filtered_by_its_status(staff, workspace):
    now = timezone.now()
    sent_message(workspace, created=now - timedelta(hours=2))
    failed_message(workspace, created=now - timedelta(hours=5))
    failed_execution(workspace, started=now - timedelta(hours=3))
    html = page(staff, "dashboard:overview", workspace).content.decode()

    failed = f"/dashboard/messages/?workspace={workspace.pk}&amp;status=failed"
    assert f'<a href="{failed}" class="pie-slice" data-slice="failed"' in html
    assert f'<a href="{failed}" data-legend="failed">' in html  # the legend row too
    assert (f'href="/dashboard/executions/?workspace={workspace.pk}&amp;status=failed" '
            'class="pie-slice"') in html
    response = staff.get(failed.replace("&amp;", "&"))
    assert [m.status for m in response.context["page"]] == [MessageStatus.FAILED]
    assert response.context["form"]["status"].value() == "failed"


def test_recent_failures_list_failed_messages_and_executions_newest_first(staff, workspace):
    now = timezone.now()
    message, _ = failed_message(workspace, created=now - timedelta(hours=2),
                                error="number is not reachable")
    execution, _, _ = failed_execution(workspace, started=now - timedelta(hours=1))

    failures = page(staff, "dashboard:overview", workspace).context["failures"]

    assert [failure.url for failure in failures] == [
        reverse("dashboard:execution-detail", args=[execution.pk]),
        reverse("dashboard:message-detail", args=[message.pk])]
    assert failures[1].error == "number is not reachable"


def test_auto_refresh_reloads_the_page_and_keeps_the_chosen_options(staff, workspace):
    response = page(staff, "dashboard:overview", workspace, range="7d", refresh="30s")
    html = response.content.decode()

    assert '<meta http-equiv="refresh" content="30">' in html
    assert '<option value="7d" selected>' in html
    assert '<option value="30s" selected>' in html
    assert "Last refreshed" in html


def test_auto_refresh_is_off_by_default_and_bad_options_fall_back(staff, workspace):
    response = page(staff, "dashboard:overview", workspace, range="1y", refresh="1s")

    assert b'http-equiv="refresh"' not in response.content
    assert response.context["window"].key == "24h"


def test_the_overview_uses_a_fixed_number_of_queries(staff, workspace,
                                                     django_assert_max_num_queries):
    now = timezone.now()
    for hours in range(1, 20):
        sent_message(workspace, created=now - timedelta(hours=hours))
        failed_message(workspace, created=now - timedelta(hours=hours))
        failed_execution(workspace, started=now - timedelta(hours=hours))

    # (one of them: whether the user has two-factor sign-in, core.twofactor; three the
    # execution success rate and the per-flow table, whatever the number of flows)
    with django_assert_max_num_queries(18):
        response = page(staff, "dashboard:overview", workspace)

    assert response.status_code == 200


# --- executions -------------------------------------------------------------------------------

def test_executions_filter_by_flow_status_and_contact(staff, workspace):
    welcome, reminder = (FlowFactory(workspace=workspace, name="Welcome"),
                         FlowFactory(workspace=workspace, name="Reminder"))
    ann = ContactFactory(workspace=workspace, phone="+14155550100", email="ann@example.com")
    wanted = ExecutionFactory(workspace=workspace, flow=welcome, contact=ann,
                              status=Execution.Status.FAILED)
    ExecutionFactory(workspace=workspace, flow=welcome, status=Execution.Status.FAILED)
    ExecutionFactory(workspace=workspace, flow=reminder, contact=ann,
                     status=Execution.Status.FAILED)
    ExecutionFactory(workspace=workspace, flow=welcome, contact=ann)

    for contact in ("ann@example.com", "+14155550100", str(ann.pk)):
        response = page(staff, "dashboard:executions", workspace, flow=str(welcome.pk),
                        status="failed", contact=contact)
        assert list(response.context["page"]) == [wanted]


def test_executions_are_paginated(staff, workspace):
    flow = FlowFactory(workspace=workspace)
    for _ in range(30):
        ExecutionFactory(workspace=workspace, flow=flow)

    first = page(staff, "dashboard:executions", workspace)
    second = page(staff, "dashboard:executions", workspace, page=2)

    assert len(first.context["page"]) == 25
    assert len(second.context["page"]) == 5
    assert f"workspace={workspace.pk}" in first.content.decode().split('rel="next"')[0]


def test_the_executions_list_does_not_query_per_row(staff, workspace,
                                                    django_assert_num_queries):
    def count_queries() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            page(staff, "dashboard:executions", workspace)
        return len(queries)

    ExecutionFactory(workspace=workspace)
    few = count_queries()
    for _ in range(10):
        ExecutionFactory(workspace=workspace)
    assert count_queries() == few


def test_an_execution_detail_shows_the_step_timeline(staff, workspace):
    execution, step, letter = failed_execution(workspace, error="webhook answered 502")

    response = staff.get(reverse("dashboard:execution-detail", args=[execution.pk]))
    html = response.content.decode()

    assert response.status_code == 200
    # started, the two steps, failed
    assert html.count('class="tl-item') == 4
    assert html.count('data-kind="step"') == 2
    assert 'data-kind="started"' in html and 'data-kind="failed"' in html
    assert "webhook answered 502" in html
    assert "&quot;message_id&quot;: &quot;m-1&quot;" in html  # a step's output, as JSON
    assert f"Dead letter #{letter.pk}" in html
    assert reverse("dashboard:step-retry", args=[step.pk]) in html
    assert "Cancel execution" not in html  # a failed execution cannot be cancelled


def test_an_execution_without_steps_still_renders(staff, workspace):
    execution = ExecutionFactory(workspace=workspace, status=Execution.Status.RUNNING,
                                 data={})

    response = staff.get(reverse("dashboard:execution-detail", args=[execution.pk]))

    assert response.status_code == 200
    assert b"No steps yet." in response.content
    assert b"Cancel execution" in response.content


def test_cancel_stops_a_waiting_execution(staff, workspace):
    execution = ExecutionFactory(workspace=workspace, status=Execution.Status.WAITING)
    waiting = StepFactory(execution=execution, status=Step.Status.WAITING, node_type="delay")

    response = staff.post(reverse("dashboard:execution-cancel", args=[execution.pk]),
                          follow=True)

    execution.refresh_from_db()
    waiting.refresh_from_db()
    assert execution.status == Execution.Status.CANCELLED
    assert waiting.status == Step.Status.SKIPPED
    assert b"Execution cancelled." in response.content


def test_cancelling_a_finished_execution_is_refused_with_a_reason(staff, workspace):
    execution = ExecutionFactory(workspace=workspace, status=Execution.Status.COMPLETED)

    response = staff.post(reverse("dashboard:execution-cancel", args=[execution.pk]),
                          follow=True)

    assert b"cannot be cancelled" in response.content
    execution.refresh_from_db()
    assert execution.status == Execution.Status.COMPLETED


def test_retry_runs_a_failed_step_again_and_closes_its_dead_letter(staff, workspace):
    execution, step, letter = failed_execution(workspace)

    response = staff.post(reverse("dashboard:step-retry", args=[step.pk]))

    assert response.status_code == 302
    assert response["Location"] == (reverse("dashboard:execution-detail", args=[execution.pk])
                                    + f"?workspace={workspace.pk}")
    step.refresh_from_db()
    execution.refresh_from_db()
    assert step.retry_count == 1
    assert execution.status == Execution.Status.RUNNING
    assert execution.current_node == step.node_id
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED


def test_a_failed_step_without_a_dead_letter_is_retried_through_the_engine(staff, workspace):
    execution, step, letter = failed_execution(workspace)
    letter.delete()

    response = staff.post(reverse("dashboard:step-retry", args=[step.pk]), follow=True)

    step.refresh_from_db()
    assert step.retry_count == 1
    assert f"Step {step.node_id} queued to run again.".encode() in response.content


def test_retrying_a_step_that_did_not_fail_is_refused(staff, workspace):
    step = StepFactory(execution=ExecutionFactory(workspace=workspace))

    response = staff.post(reverse("dashboard:step-retry", args=[step.pk]), follow=True)

    assert b"Only a failed step of a failed execution can be retried." in response.content


def test_actions_accept_get_only_as_a_405(staff, workspace):
    execution, step, letter = failed_execution(workspace)

    for url in (reverse("dashboard:step-retry", args=[step.pk]),
                reverse("dashboard:execution-cancel", args=[execution.pk]),
                reverse("dashboard:dead-letter-retry", args=[letter.pk]),
                reverse("dashboard:rate-limits-reset")):
        assert staff.get(url).status_code == 405


def test_a_next_url_on_another_host_is_ignored(staff, workspace):
    execution = ExecutionFactory(workspace=workspace, status=Execution.Status.RUNNING)

    response = staff.post(reverse("dashboard:execution-cancel", args=[execution.pk]),
                          {"next": "https://evil.example.com/"})

    assert response["Location"].startswith("/dashboard/executions/")


# --- messages ---------------------------------------------------------------------------------

def test_messages_filter_by_status_channel_and_search(staff, workspace):
    wanted = MessageFactory(workspace=workspace, channel="email", to="ann@example.com",
                            status=MessageStatus.FAILED)
    MessageFactory(workspace=workspace, channel="sms", status=MessageStatus.FAILED)
    MessageFactory(workspace=workspace, channel="email", status=MessageStatus.SENT)
    MessageFactory(workspace=workspace, channel="email", to="bob@example.com",
                   status=MessageStatus.FAILED)

    response = page(staff, "dashboard:messages", workspace, status="failed", channel="email",
                    q="ann@")

    assert list(response.context["page"]) == [wanted]


def test_the_messages_list_does_not_query_per_row(staff, workspace,
                                                  django_assert_max_num_queries):
    for _ in range(25):
        failed_message(workspace)

    # (one of them: whether the user has two-factor sign-in, core.twofactor)
    with django_assert_max_num_queries(7):
        page(staff, "dashboard:messages", workspace)


def test_a_message_detail_lists_its_attempts(staff, workspace):
    message, _ = failed_message(workspace, error="HTTP 500 from provider")

    response = staff.get(reverse("dashboard:message-detail", args=[message.pk]))
    html = response.content.decode()

    assert html.count("data-attempt=") == 3
    assert "HTTP 500 from provider" in html
    assert "[http_500]" in html


def test_the_messages_page_finds_a_recipients_messages_however_the_phone_is_written(
        staff, workspace):
    from messaging.models import Direction

    to_her = MessageFactory(workspace=workspace, to="+14155552671",
                            status=MessageStatus.FAILED)
    from_her = MessageFactory(workspace=workspace, direction=Direction.INBOUND,
                              sender="+14155552671", to="+14155550199",
                              status=MessageStatus.RECEIVED)
    MessageFactory(workspace=workspace, to="+14155550100", provider_message_id="SM9")

    found = page(staff, "dashboard:messages", workspace,
                 recipient="+1 (415) 555-2671").content.decode()
    refused = page(staff, "dashboard:messages", workspace, recipient="nobody").content.decode()
    by_id = page(staff, "dashboard:messages", workspace, q="SM9").content.decode()

    assert found.count("data-message=") == 2
    assert f'data-message="{to_her.pk}"' in found and f'data-message="{from_her.pk}"' in found
    assert "data-message=" not in refused and "Not a phone number" in refused
    assert by_id.count("data-message=") == 1


def test_a_message_detail_shows_its_timeline_in_order(staff, workspace):
    from core.audit import Actor
    from messaging.delivery import creation

    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "x"}, send_at=timezone.now()
                                      + timedelta(hours=1))
    creation.message_cancel(message=message, actor=Actor(name="user:ops", source="dashboard"))

    html = staff.get(reverse("dashboard:message-detail", args=[message.pk])).content.decode()

    assert html.index('data-timeline="accepted"') < html.index('data-timeline="cancelled"')
    assert "dashboard:ops" in html and "from_status" in html


def test_a_suppressed_marketing_message_says_why_in_the_list_and_the_detail(staff, workspace):
    message = MessageFactory(workspace=workspace, status=MessageStatus.SUPPRESSED,
                             category="marketing", suppressed_reason="frequency_cap")
    MessageFactory(workspace=workspace, status=MessageStatus.SENT)

    detail = staff.get(reverse("dashboard:message-detail", args=[message.pk])).content.decode()
    listing = page(staff, "dashboard:messages", workspace, status="suppressed")
    html = listing.content.decode()

    assert "<dt>Category</dt><dd>marketing</dd>" in detail
    assert "frequency_cap (the recipients' rules" in detail
    assert html.count("data-message=") == 1
    assert ">frequency_cap</span>" in html and ">marketing</span>" in html
    assert kpis(page(staff, "dashboard:overview", workspace))["suppressed"].value == "1"


def test_a_message_without_contact_sent_time_or_content_still_renders(staff, workspace):
    message = MessageFactory(workspace=workspace, contact=None, to="", content={},
                             status=MessageStatus.QUEUED)

    response = staff.get(reverse("dashboard:message-detail", args=[message.pk]))
    listing = page(staff, "dashboard:messages", workspace)

    assert response.status_code == 200
    assert b"No attempts yet." in response.content
    assert listing.status_code == 200


# --- dead letters -----------------------------------------------------------------------------

def test_dead_letters_show_open_entries_by_default_and_filter(staff, workspace):
    _, open_letter = failed_message(workspace)
    _, _, step_letter = failed_execution(workspace)
    DeadLetterFactory(workspace=workspace, status=DeadLetter.Status.DISCARDED)

    default = page(staff, "dashboard:dead-letters", workspace)
    steps = page(staff, "dashboard:dead-letters", workspace, kind="step")
    every = page(staff, "dashboard:dead-letters", workspace, status="all")
    by_error = page(staff, "dashboard:dead-letters", workspace, error="502")

    assert {row[0] for row in default.context["rows"]} == {open_letter, step_letter}
    assert [row[0] for row in steps.context["rows"]] == [step_letter]
    assert every.context["page"].paginator.count == 3
    assert [row[0] for row in by_error.context["rows"]] == [step_letter]


def test_retrying_a_message_dead_letter_requeues_the_message_once(staff, workspace):
    message, letter = failed_message(workspace)
    url = reverse("dashboard:dead-letter-retry", args=[letter.pk])

    first = staff.post(url, follow=True)
    second = staff.post(url, follow=True)

    letter.refresh_from_db()
    message.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED
    assert letter.replay_count == 1
    assert letter.replayed_by.endswith(first.context["user"].username)
    assert message.status == MessageStatus.QUEUED
    assert b"Replayed:" in first.content
    assert b"Not replayed: Already replayed" in second.content


def test_retrying_a_step_dead_letter_retries_the_step(staff, workspace):
    execution, step, letter = failed_execution(workspace)

    staff.post(reverse("dashboard:dead-letter-retry", args=[letter.pk]))

    letter.refresh_from_db()
    execution.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED
    assert execution.status == Execution.Status.RUNNING


def test_discarding_a_dead_letter_keeps_it_listed_as_discarded(staff, workspace):
    message, letter = failed_message(workspace)

    response = staff.post(reverse("dashboard:dead-letter-discard", args=[letter.pk]),
                          follow=True)
    again = staff.post(reverse("dashboard:dead-letter-discard", args=[letter.pk]),
                       follow=True)

    letter.refresh_from_db()
    message.refresh_from_db()
    assert letter.status == DeadLetter.Status.DISCARDED
    assert message.status == MessageStatus.FAILED
    assert b"Dead letter discarded." in response.content
    assert b"the entry is discarded, not open" in again.content
    assert page(staff, "dashboard:dead-letters", workspace,
                status="discarded").context["page"].paginator.count == 1


def test_retry_all_matching_replays_only_the_filtered_open_entries(staff, workspace):
    messages = [failed_message(workspace)[0] for _ in range(2)]
    _, _, step_letter = failed_execution(workspace)

    response = staff.post(reverse("dashboard:dead-letters-retry"),
                          {"workspace": str(workspace.pk), "kind": "message",
                           "status": "open"}, follow=True)

    assert b"Replayed 2 of 2; 0 refused." in response.content
    assert {m.status for m in messages} == {MessageStatus.FAILED}  # stale copies
    for message in messages:
        message.refresh_from_db()
        assert message.status == MessageStatus.QUEUED
    step_letter.refresh_from_db()
    assert step_letter.status == DeadLetter.Status.OPEN


def test_retry_all_without_a_workspace_is_refused(staff, workspace):
    failed_message(workspace)

    response = staff.post(reverse("dashboard:dead-letters-retry"), {"kind": "message"})

    assert response.status_code == 400


def test_dead_letters_export_as_csv_and_json_with_the_filters(staff, workspace):
    _, letter = failed_message(workspace)
    failed_execution(workspace)
    other = WorkspaceFactory()
    failed_message(other)

    as_csv = page(staff, "dashboard:dead-letters-export", workspace, format="csv",
                  kind="message")
    as_json = page(staff, "dashboard:dead-letters-export", workspace, format="json",
                   status="all")
    bad = page(staff, "dashboard:dead-letters-export", workspace, format="xml")

    rows = list(csv.DictReader(io.StringIO(b"".join(as_csv.streaming_content).decode())))
    assert [row["id"] for row in rows] == [str(letter.pk)]
    assert "attachment" in as_csv["Content-Disposition"]
    entries = json.loads(b"".join(as_json.streaming_content))
    assert {entry["workspace_id"] for entry in entries} == {str(workspace.pk)}
    assert len(entries) == 2
    assert bad.status_code == 400


def test_dead_letters_page_links_to_the_failed_message_and_execution(staff, workspace):
    message, _ = failed_message(workspace)
    execution, _, _ = failed_execution(workspace)

    html = page(staff, "dashboard:dead-letters", workspace).content.decode()

    assert reverse("dashboard:message-detail", args=[message.pk]) in html
    assert reverse("dashboard:execution-detail", args=[execution.pk]) in html
    assert "dead-letters/export/?workspace=" in html


# --- schedules, alerts, rate limits -----------------------------------------------------------

def test_the_schedules_page_lists_next_runs_and_counters(staff, workspace):
    from flows.models import FlowSchedule
    from flows.schedules import schedule_create

    flow = FlowFactory(workspace=workspace, name="Daily digest")
    contact = ContactFactory(workspace=workspace)
    schedule = schedule_create(workspace=workspace, flow=flow, cron="0 9 * * *",
                               timezone="Europe/Berlin", audience={"contact_id": str(contact.pk)})
    FlowSchedule.objects.filter(pk=schedule.pk).update(runs=7, successes=6, failures=1,
                                                       last_run_status="failed")
    other = WorkspaceFactory()
    schedule_create(workspace=other, flow=FlowFactory(workspace=other, name="Not mine"),
                    cron="@hourly", timezone="UTC", audience={})

    response = page(staff, "dashboard:schedules", workspace)
    html = response.content.decode()

    [row] = response.context["rows"]
    assert (row.runs, row.successes, row.failures) == (7, 6, 1)
    assert len(row.upcoming) == 3
    assert row.upcoming[0] == schedule.next_run_at
    assert "Daily digest" in html and "Not mine" not in html
    assert b"No runs yet." in response.content


def test_schedule_runs_show_their_counts_in_words(staff, workspace):
    from flows.models import ScheduleRun
    from flows.schedules import schedule_create

    flow = FlowFactory(workspace=workspace, name="Daily digest")
    schedule = schedule_create(workspace=workspace, flow=flow, cron="0 9 * * *",
                               timezone="UTC", audience={"filter": {"all": []}})
    ScheduleRun.objects.create(schedule=schedule, occurrence_at=timezone.now(),
                               fired_at=timezone.now(), status="succeeded", total=3,
                               started=1, skipped=4, refused=2)

    html = page(staff, "dashboard:schedules", workspace).content.decode()

    assert ("1 of 3 started, 2 skipped (already in the flow), 2 did not match the filter"
            in html)


def test_the_schedule_toggle_disables_and_enables_through_the_schedules_service(staff,
                                                                                workspace):
    from flows.schedules import schedule_create

    schedule = schedule_create(workspace=workspace, flow=FlowFactory(workspace=workspace),
                               cron="*/5 * * * *", timezone="UTC", audience={})
    url = reverse("dashboard:schedule-toggle", args=[schedule.pk])

    off = staff.post(url, {"enabled": "0"}, follow=True)
    schedule.refresh_from_db()
    assert not schedule.enabled
    assert not schedule.periodic_task.enabled  # beat's copy follows
    assert schedule.next_run_at is None
    assert b"Schedule disabled." in off.content

    staff.post(url, {"enabled": "1"})
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.periodic_task.enabled
    assert schedule.next_run_at is not None


def test_an_empty_workspace_has_no_schedules(staff, workspace):
    response = page(staff, "dashboard:schedules", workspace)

    assert b"No schedules in this workspace." in response.content


def test_the_alerts_page_lists_rules_and_recent_events_of_the_workspace(staff, workspace):
    rule = AlertRuleFactory(workspace=workspace, name="Too many failures", threshold=10.0)
    notice = MessageFactory(workspace=workspace, channel="email", status=MessageStatus.SENT)
    AlertEventFactory(rule=rule, summary="failure rate 42% over 5 min",
                      message_ids=[str(notice.pk)])
    quiet = AlertRuleFactory(workspace=workspace, name="Backlog", enabled=False)
    AlertRuleFactory(workspace=WorkspaceFactory(), name="Somebody else's rule")

    response = page(staff, "dashboard:alerts", workspace)
    html = response.content.decode()

    assert list(response.context["rules"]) == [quiet, rule]
    assert "failure rate 42% over 5 min" in html
    assert "firing" in html
    assert "delivered</span>" in html
    assert "Somebody else" not in html


def test_the_rate_limit_page_shows_deferrals_per_channel_and_recent_events(staff, workspace):
    other = WorkspaceFactory()
    ratelimit.reset(str(workspace.pk))
    for channel in ("sms", "sms", "email"):
        ratelimit.record_deferral(workspace_id=str(workspace.pk), channel=channel, delay=0.4)
    ratelimit.record_deferral(workspace_id=str(other.pk), channel="sms", delay=1)

    response = page(staff, "dashboard:rate-limits", workspace)
    html = response.content.decode()

    assert response.context["counts"] == [("sms", 2), ("email", 1)]
    assert html.count('class="deferral"') == 3
    assert "400 ms" in html
    assert 'class="chart chart-bars"' in html
    ratelimit.reset(str(other.pk))


def test_the_rate_limit_reset_button_clears_the_workspace_counters(staff, workspace):
    other = WorkspaceFactory()
    ratelimit.record_deferral(workspace_id=str(workspace.pk), channel="sms", delay=0.4)
    ratelimit.record_deferral(workspace_id=str(other.pk), channel="sms", delay=0.4)

    response = staff.post(reverse("dashboard:rate-limits-reset"),
                          {"workspace": str(workspace.pk)}, follow=True)

    assert ratelimit.deferral_counts(str(workspace.pk)) == {}
    assert ratelimit.deferral_counts(str(other.pk)) == {"sms": 1}
    assert b"No rate-limit deferrals recorded." in response.content
    ratelimit.reset(str(other.pk))


def test_the_rate_limit_page_survives_redis_being_down(staff, workspace, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    response = page(staff, "dashboard:rate-limits", workspace)

    assert response.status_code == 200
    assert b"Redis is unavailable" in response.content


def test_the_providers_page_shows_each_providers_breaker_counts_and_latencies(
        staff, workspace, settings):
    from messaging.providers import breaker
    from messaging.providers.health import provider_health

    settings.PROVIDER_BREAKER_FAILURES = 3
    workspace.settings = {"providers": {"sms": [
        {"name": "http", "api_url": f"https://sms-{uuid.uuid4().hex}.example"},
        {"name": "twilio", "account_sid": f"AC{uuid.uuid4().hex}", "auth_token": "t"}]}}
    workspace.save()
    first, second = (row["breaker_id"] for row in provider_health(workspace=workspace)
                     if row["channel"] == "sms")
    for latency in (0.010, 0.020, 0.030, 0.040):
        breaker.record(first, workspace_id=str(workspace.pk), kind=breaker.SUCCESS,
                       latency=latency)
    for _ in range(3):
        breaker.record(second, workspace_id=str(workspace.pk), kind=breaker.FAILURE,
                       latency=0.5)
    try:
        response = page(staff, "dashboard:providers", workspace)
    finally:
        breaker.reset(first)
        breaker.reset(second)
    html = response.content.decode()
    rows = [row for row in response.context["providers"] if row["channel"] == "sms"]
    assert [(r["name"], r["state"], r["sent"], r["failed"]) for r in rows] == [
        ("http", "closed", 4, 0), ("twilio", "open", 0, 3)]
    assert html.count('class="provider"') == len(response.context["providers"])
    assert 'data-state="open"' in html
    assert "30 ms" in html and "500 ms" in html  # p50 of the first's, p95 of the second's
    assert 'aria-current="page">Providers</a>' in html
