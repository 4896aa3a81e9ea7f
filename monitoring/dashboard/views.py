"""Server-rendered dashboard, one workspace at a time: staff see every workspace, a
member only its own (core.roles decides what its role may do there).

Views stay thin: they resolve the workspace among those the user may see, read through
selectors, check the action with core.roles.can, act through monitoring.dashboard.actions,
and render. Another workspace's object answers 404; an action the role may not do, 403.
Times show in the workspace's time zone.
"""
from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import redis
from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page
from django.db.models import Count, Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core import roles
from core.audit import Actor, actor_of
from core.models import DeadLetter, Membership, Workspace
from flows.models import Execution, Flow, FlowSchedule, Step
from messaging import ratelimit
from messaging.channels import QUEUE_CHANNELS
from messaging.events import endpoints as event_endpoints
from messaging.models import Message, MessageStatus, WebhookEndpoint
from messaging.providers.health import provider_health
from messaging.recipients.profile import recipient_profile
from messaging.selectors import timeline_list
from monitoring import selectors as monitoring_selectors
from monitoring import services
from monitoring.dashboard import actions
from monitoring.dashboard.access import can_act, can_act_globally
from monitoring.dashboard.forms import (
    MUTE_CHOICES,
    AlertRuleForm,
    AuditFilterForm,
    DeadLetterFilterForm,
    ExecutionFilterForm,
    MessageFilterForm,
    MuteForm,
    OverviewForm,
    RecipientForm,
    ScheduleForm,
)
from monitoring.dashboard.overview import overview_context
from monitoring.dashboard.paging import WindowPaginator
from monitoring.dashboard.selectors.alerts import alerts_context
from monitoring.dashboard.selectors.broadcasts import broadcast_rows, broadcasts_page_rows
from monitoring.dashboard.selectors.common import (
    as_uuid,
    format_seconds,
    pretty_json,
    workspace_tz,
    workspace_with_latest_traffic,
)
from monitoring.dashboard.selectors.dead_letters import dead_letter_link
from monitoring.dashboard.selectors.executions import (
    execution_branches,
    execution_timeline,
    executions_count_steps,
    executions_list,
)
from monitoring.dashboard.selectors.flows import flow_funnel
from monitoring.dashboard.selectors.messages import messages_list
from monitoring.dashboard.selectors.outbox import console_in_use, outbox_item, outbox_messages
from monitoring.dashboard.selectors.queues import queue_rows
from monitoring.dashboard.selectors.rate_limits import rate_limit_panels
from monitoring.dashboard.selectors.schedules import cron_preview, schedule_rows, schedule_runs
from monitoring.dashboard.selectors.windows import REFRESH_CHOICES, window_for
from monitoring.models import AlertRule

PAGE_SIZE = 25
# Cookie naming the workspace last picked, so every page opens on it until another is (a
# cookie, not the session: remembering costs no database write per page).
CHOSEN_WORKSPACE = "dashboard_workspace"
REMEMBER_SECONDS = 365 * 24 * 3600
RATE_LIMIT_EVENTS = 100

View = Callable[..., HttpResponseBase]


# --- workspace resolution and rendering ----------------------------------------------------

def _visible(request: HttpRequest) -> QuerySet[Workspace]:
    """Return the workspaces the user may see (all for staff, its own for a member)."""
    return roles.workspaces_for(request.user)


def _requested_workspace(request: HttpRequest) -> Workspace | None:
    """Return the ?workspace= one (404 when unknown or not the user's), else the one
    remembered in the cookie, else the one with the latest traffic; None when none exist."""
    visible = _visible(request)
    wanted = request.GET.get("workspace") or request.POST.get("workspace")
    if wanted:
        pk = as_uuid(wanted)
        workspace = visible.filter(pk=pk).first() if pk else None
        if workspace is None:
            raise Http404("No such workspace.")
        return workspace
    remembered = as_uuid(request.COOKIES.get(CHOSEN_WORKSPACE, ""))
    workspace = visible.filter(pk=remembered).first() if remembered else None
    return workspace or workspace_with_latest_traffic(visible)


def member_required(view: View) -> View:
    """Send anonymous visitors to the login page; refuse (403) users who are neither staff
    nor a member of any workspace."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not user.is_active or not (
                user.is_staff or Membership.objects.filter(user=user).exists()):
            raise PermissionDenied("You are not a member of any workspace.")
        return view(request, *args, **kwargs)

    return wrapper


def _allow(request: HttpRequest, workspace: Workspace | None, action: str) -> None:
    """Refuse (403) an action the user's role may not do in the workspace."""
    if not roles.can(request.user, workspace, action):
        raise PermissionDenied(f"Your role may not {action.replace('_', ' ')} here.")


def dashboard_page(view: View) -> View:
    """Require a member, resolve the workspace, and hand it to the view (or say there is
    none)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        workspace = _requested_workspace(request)
        if workspace is None:
            return _render(request, "dashboard/no_workspace.html", None, {})
        response = view(request, workspace, *args, **kwargs)
        if request.GET.get("workspace") or request.POST.get("workspace"):
            response.set_cookie(CHOSEN_WORKSPACE, str(workspace.pk), max_age=REMEMBER_SECONDS,
                                httponly=True, samesite="Lax",
                                secure=settings.SESSION_COOKIE_SECURE)
        return response

    return member_required(wrapper)


def workspace_action(action: str) -> Callable[[View], View]:
    """Make a POST view act on the workspace named in the form (never a default one), after
    checking that the user's role may do the action there."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def checked(request: HttpRequest, workspace: Workspace, *args: Any,
                    **kwargs: Any) -> HttpResponseBase:
            if not request.POST.get("workspace"):
                # An action never falls back to "the first workspace".
                return HttpResponseBadRequest("workspace is required")
            _allow(request, workspace, action)
            return view(request, workspace, *args, **kwargs)

        return dashboard_page(checked)

    return decorate


def _owned(request: HttpRequest, queryset: QuerySet, pk: Any, *,
           through: str = "workspace") -> Any:
    """Return the object when its workspace (reached by `through`) is one the user may see;
    404 otherwise, and when ?workspace= names another workspace than its own."""
    obj = get_object_or_404(queryset.filter(**{f"{through}__in": _visible(request)}), pk=pk)
    wanted = request.GET.get("workspace")
    if wanted and as_uuid(wanted) != _workspace_of(obj, through).pk:
        raise Http404("Not in this workspace.")
    return obj


def _workspace_of(obj: Any, through: str) -> Workspace:
    for part in through.split("__"):
        obj = getattr(obj, part)
    return obj


def _target(request: HttpRequest, queryset: QuerySet, pk: Any, action: str, *,
            through: str = "workspace") -> Any:
    """Return the object an action is aimed at: 404 unless the user may see its workspace,
    403 unless its role may do the action there."""
    obj = _owned(request, queryset.select_related(through), pk, through=through)
    _allow(request, _workspace_of(obj, through), action)
    return obj


def _render(request: HttpRequest, template: str, workspace: Workspace | None,
            context: dict[str, Any], *, section: str = "") -> HttpResponse:
    context = {
        "workspace": workspace,
        "workspaces": _visible(request).order_by("name", "pk").only("id", "name", "slug"),
        # What the user may do here: templates show only the buttons it may press.
        "allowed": roles.allowed_actions(request.user, workspace) if workspace else frozenset(),
        "section": section,
        "section_url": reverse(f"dashboard:{section or 'overview'}"),
        "console_outbox": workspace is not None and console_in_use(workspace),
        "rendered_at": timezone.now(),
        **context,
    }
    # Everything is stored in UTC; operators read times in the workspace's own zone.
    with timezone.override(workspace_tz(workspace) if workspace else UTC):
        return render(request, template, context)


def _page_of(request: HttpRequest, queryset: QuerySet) -> Page:
    """Return the asked page of the rows (no row count: monitoring.dashboard.paging)."""
    return WindowPaginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def _back(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
    """Redirect to the form's `next` when it is a local URL, else to the fallback."""
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = fallback
    return HttpResponseRedirect(target)


def _report(request: HttpRequest, outcome: actions.Outcome) -> None:
    (flash.success if outcome.ok else flash.error)(request, outcome.text)


def _with_workspace(url: str, workspace_id: Any) -> str:
    return f"{url}?workspace={workspace_id}"


# --- overview -------------------------------------------------------------------------------

@require_GET
@dashboard_page
def overview(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """Show KPIs with trends, status pies, volume/latency/execution-time charts, failures."""
    form = OverviewForm(request.GET)
    values = form.values()
    window = window_for(workspace, values["range"])
    context = {
        "form": form,
        "window": window,
        "refresh": values["refresh"],
        "refresh_seconds": REFRESH_CHOICES.get(values["refresh"], ("", 0))[1],
        **overview_context(workspace, window),
    }
    return _render(request, "dashboard/overview.html", workspace, context)


# --- executions -----------------------------------------------------------------------------

@require_GET
@dashboard_page
def executions(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """List executions with flow/status/contact filters, paginated."""
    form = ExecutionFilterForm(request.GET, workspace=workspace)
    values = form.values()
    queryset = executions_list(workspace, flow=values["flow"] or None,
                                         status=values["status"], contact=values["contact"])
    page = _page_of(request, queryset)
    executions_count_steps(list(page))
    return _render(request, "dashboard/executions.html", workspace,
                   {"form": form, "page": page}, section="executions")


@require_GET
@member_required
def execution_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Show one execution with its step timeline (inputs, outputs, errors) and actions."""
    execution = _owned(request, Execution.objects.select_related(
        "workspace", "flow", "contact", "version"), pk)
    timeline = execution_timeline(execution)
    context = {
        "execution": execution,
        "timeline": timeline,
        "has_steps": any(item.step is not None for item in timeline),
        "branches": execution_branches(execution),
        "data": pretty_json(execution.data),
        "duration": format_seconds(execution.duration_seconds),
        "can_cancel": execution.status in (Execution.Status.RUNNING, Execution.Status.WAITING),
        "can_pause": execution.status in (Execution.Status.RUNNING, Execution.Status.WAITING),
    }
    return _render(request, "dashboard/execution_detail.html", execution.workspace, context,
                   section="executions")


@require_GET
@member_required
def flow_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Show a flow's funnel: each node with its counts, and its splits' comparison."""
    flow = _owned(request, Flow.objects.select_related("workspace"), pk)
    return _render(request, "dashboard/flow_detail.html", flow.workspace,
                   {"flow": flow, **flow_funnel(flow)}, section="executions")


@require_POST
@member_required
def execution_cancel(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Cancel a running or waiting execution."""
    execution = _target(request, Execution.objects.all(), pk, roles.CANCEL)
    _report(request, actions.execution_cancel(execution=execution, actor=_actor(request)))
    return _back(request, _with_workspace(
        reverse("dashboard:execution-detail", args=[pk]), execution.workspace_id))


@require_POST
@member_required
def execution_pause(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Pause (resume=1: resume) a running or waiting execution."""
    resume = request.POST.get("resume") == "1"
    execution = _target(request, Execution.objects.all(), pk,
                        roles.RESUME if resume else roles.PAUSE)
    _report(request, actions.execution_pause(execution=execution, actor=_actor(request),
                                             resume=resume))
    return _back(request, _with_workspace(
        reverse("dashboard:execution-detail", args=[pk]), execution.workspace_id))


@require_POST
@member_required
def step_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Run a failed step of a failed execution again."""
    step = _target(request, Step.objects.all(), pk, roles.RETRY,
                   through="execution__workspace")
    _report(request, actions.step_retry(step=step, actor=_actor(request)))
    return _back(request, _with_workspace(
        reverse("dashboard:execution-detail", args=[step.execution_id]),
        step.execution.workspace_id))


# --- messages -------------------------------------------------------------------------------

@require_GET
@dashboard_page
def messages(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """List messages with status/channel/search filters, paginated."""
    form = MessageFilterForm(request.GET)
    values = form.values()
    queryset = messages_list(workspace, status=values["status"], channel=values["channel"],
                             search=values["q"], recipient=values["recipient"])
    if form.recipient_invalid():
        queryset = queryset.none()
    return _render(request, "dashboard/messages.html", workspace,
                   {"form": form, "page": _page_of(request, queryset)}, section="messages")


@require_GET
@dashboard_page
def recipient(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """Show everything sent to one address in a range (default: the last 30 days), with its
    consent, suppressions and frequency-cap counts."""
    form = RecipientForm(request.GET if "address" in request.GET else None)
    context: dict[str, Any] = {"form": form}
    if form.is_valid():
        until = form.cleaned_data["until"] or timezone.now()
        since = form.cleaned_data["since"] or until - timedelta(days=RECIPIENT_DAYS)
        profile = recipient_profile(workspace=workspace, address=form.cleaned_data["address"],
                                    since=since, until=until)
        context.update(profile=profile, page=_page_of(request, profile.messages.select_related(
            "contact")))
    return _render(request, "dashboard/recipient.html", workspace, context, section="messages")


# Without a `since`, the recipient page covers this many days.
RECIPIENT_DAYS = 30


@require_GET
@dashboard_page
def outbox(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """List what the console provider sent (recipient, rendered content), newest first."""
    page = _page_of(request, outbox_messages(workspace))
    return _render(request, "dashboard/outbox.html", workspace,
                   {"page": page, "items": [outbox_item(message) for message in page]},
                   section="outbox")


@require_GET
@member_required
def message_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Show one message with its delivery attempts, flow steps and dead letters."""
    message = _owned(request, Message.objects.select_related("workspace", "contact", "parent"),
                     pk)
    context = {
        "message": message,
        "attempts": message.delivery_attempts.order_by("number"),
        # Oldest first, as the API answers it; a message has tens of entries, not thousands.
        "timeline": timeline_list(message=message)[:TIMELINE_SHOWN],
        "steps": message.flow_steps.select_related("execution__flow"),
        "dead_letters": DeadLetter.objects.filter(workspace_id=message.workspace_id,
                                                  kind=DeadLetter.Kind.MESSAGE,
                                                  source_id=str(message.pk)),
        "content": pretty_json(message.content),
        "rendered": pretty_json(message.rendered),
        "metadata": pretty_json(message.metadata),
        "response": pretty_json(message.response),
        "latency": format_seconds(_latency(message)),
    }
    return _render(request, "dashboard/message_detail.html", message.workspace, context,
                   section="messages")


# The dashboard shows this many of a message's timeline entries (the API pages the rest).
TIMELINE_SHOWN = 200


def _latency(message: Message) -> float | None:
    if message.sent_at is None:
        return None
    return (message.sent_at - (message.scheduled_for or message.created_at)).total_seconds()


# --- dead letters ---------------------------------------------------------------------------

def _dead_letters(request: HttpRequest, workspace: Workspace) -> tuple[DeadLetterFilterForm,
                                                                        QuerySet[DeadLetter]]:
    """Return the filter form and the workspace's dead letters matching it, newest first."""
    form = DeadLetterFilterForm(request.GET if request.method == "GET" else request.POST)
    values = form.values()
    queryset = services.dead_letters_filter(
        workspace=workspace, status="" if values["status"] == "all" else values["status"],
        kind=values["kind"], channel=values["channel"], error_contains=values["error"],
        flow_id=values["flow"])
    return form, queryset.order_by("-created_at", "-id")


@require_GET
@dashboard_page
def dead_letters(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """List dead letters with filters, retry/discard buttons and export links."""
    form, queryset = _dead_letters(request, workspace)
    page = _page_of(request, queryset)
    rows = [(letter, dead_letter_link(letter)) for letter in page]
    return _render(request, "dashboard/dead_letters.html", workspace,
                   {"form": form, "page": page, "rows": rows}, section="dead-letters")


@require_GET
@dashboard_page
def dead_letters_export(request: HttpRequest, workspace: Workspace) -> HttpResponseBase:
    """Download the filtered dead letters as CSV or JSON (streamed)."""
    fmt = request.GET.get("format", "csv")
    if fmt not in ("csv", "json"):
        return HttpResponseBadRequest("format must be csv or json")
    _, queryset = _dead_letters(request, workspace)
    response = StreamingHttpResponse(
        services.dead_letters_export(queryset=queryset, fmt=fmt),
        content_type="text/csv" if fmt == "csv" else "application/json")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = (
        f'attachment; filename="dead-letters-{workspace.slug}-{stamp}.{fmt}"')
    return response


@require_POST
@member_required
def dead_letter_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Replay one dead letter: its message or step runs again, at most once."""
    letter = _target(request, DeadLetter.objects.all(), pk, roles.REPLAY)
    _report(request, actions.dead_letter_retry(letter=letter, actor=_actor(request)))
    return _back(request, _with_workspace(reverse("dashboard:dead-letters"),
                                          letter.workspace_id))


@require_POST
@workspace_action(roles.REPLAY)
def dead_letters_retry(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """Replay every open dead letter matching the page's filters."""
    _, queryset = _dead_letters(request, workspace)
    _report(request, actions.dead_letters_retry(queryset=queryset, actor=_actor(request)))
    return _back(request, _with_workspace(reverse("dashboard:dead-letters"), workspace.pk))


@require_POST
@member_required
def dead_letter_discard(request: HttpRequest, pk: int) -> HttpResponse:
    """Discard one dead letter (it stays listed under "discarded")."""
    letter = _target(request, DeadLetter.objects.all(), pk, roles.DISCARD)
    _report(request, actions.dead_letter_discard(letter=letter, actor=_actor(request)))
    return _back(request, _with_workspace(reverse("dashboard:dead-letters"),
                                          letter.workspace_id))


def _actor(request: HttpRequest) -> Actor:
    return actor_of(request, "dashboard")


# --- queues ------------------------------------------------------------------------------------

@require_GET
@dashboard_page
def queues(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """Show each channel queue: paused or not (for this workspace or for all, since when, by
    whom, why), the messages it holds, its jobs per state, and pause/resume buttons."""
    context = {"rows": queue_rows(workspace),
               "can_act": can_act(request.user, workspace),
               "can_act_globally": can_act_globally(request.user)}
    return _render(request, "dashboard/queues.html", workspace, context, section="queues")


@require_POST
@dashboard_page
def queue_pause(request: HttpRequest, workspace: Workspace, queue: str) -> HttpResponse:
    """Pause (or, with resume=1, resume) a queue for the workspace, or with scope=global for
    every workspace."""
    if not request.POST.get("workspace"):
        return HttpResponseBadRequest("workspace is required")  # never "the first one"
    target = None if request.POST.get("scope") == "global" else workspace
    resume = request.POST.get("resume") == "1"
    _allow(request, target, roles.RESUME if resume else roles.PAUSE)
    if resume:
        outcome = actions.queue_resume(queue=queue, workspace=target, actor=_actor(request))
    else:
        outcome = actions.queue_pause(queue=queue, workspace=target, actor=_actor(request),
                                      reason=request.POST.get("reason", "")[:500])
    _report(request, outcome)
    return _back(request, _with_workspace(reverse("dashboard:queues"), workspace.pk))


# Ages offered by the queue pages' "clean completed older than" button.
CLEAN_AGES = ("1h", "1d", "7d", "30d")


@require_GET
@dashboard_page
def queue_detail(request: HttpRequest, workspace: Workspace, queue: str) -> HttpResponse:
    """Show one queue's messages in each state (waiting, active, scheduled, failed) with
    their counts, and its retry and clean buttons."""
    if queue not in QUEUE_CHANNELS:
        raise Http404("No such queue.")
    detail = monitoring_selectors.queue_detail(queue=queue, workspace=workspace)
    states = [(state, detail["counts"][state], detail["messages"][state])
              for state in monitoring_selectors.QUEUE_LISTED_STATES]
    return _render(request, "dashboard/queue_detail.html", workspace,
                   {"detail": detail, "states": states, "clean_ages": CLEAN_AGES},
                   section="queues")


@require_POST
@dashboard_page
def queue_action(request: HttpRequest, workspace: Workspace, queue: str) -> HttpResponse:
    """Retry the queue's failed messages (action=retry) or delete its completed ones older
    than `older_than` (action=clean), for the workspace."""
    if queue not in QUEUE_CHANNELS:
        raise Http404("No such queue.")
    if request.POST.get("action") == "retry":
        _allow(request, workspace, roles.REPLAY)
        outcome = actions.queue_retry_failed(queue=queue, workspace=workspace,
                                             actor=_actor(request))
    elif request.POST.get("action") == "clean":
        _allow(request, workspace, roles.DISCARD)
        outcome = actions.queue_clean(queue=queue, workspace=workspace,
                                      older_than=request.POST.get("older_than", ""),
                                      actor=_actor(request))
    else:
        return HttpResponseBadRequest("action must be retry or clean")
    _report(request, outcome)
    return _back(request, _with_workspace(reverse("dashboard:queue-detail", args=[queue]),
                                          workspace.pk))


# --- audit log ---------------------------------------------------------------------------------

@require_GET
@dashboard_page
def audit_log(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """List the workspace's audit entries, newest first, filterable by action."""
    form = AuditFilterForm(request.GET, actions=monitoring_selectors.audit_actions(workspace))
    queryset = monitoring_selectors.audit_entries(workspace=workspace,
                                                  action=form.values()["action"])
    return _render(request, "dashboard/audit_log.html", workspace,
                   {"form": form, "page": _page_of(request, queryset)}, section="audit-log")


# --- schedules, alerts, rate limits -----------------------------------------------------------

@require_GET
@dashboard_page
def broadcasts(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """List the workspace's broadcasts with a progress bar and their stats."""
    page = _page_of(request, broadcasts_page_rows(workspace))
    return _render(request, "dashboard/broadcasts.html", workspace,
                   {"page": page, "items": broadcast_rows(page)},
                   section="broadcasts")


@require_GET
@dashboard_page
def schedules(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """List the workspace's flow schedules with next runs, counters, success rate and last
    runs; ?refresh= reloads the page on its own."""
    refresh = REFRESH_CHOICES.get(request.GET.get("refresh", ""), REFRESH_CHOICES["off"])[1]
    context = {"rows": schedule_rows(workspace),
               "runs": schedule_runs(workspace), "refresh_seconds": refresh,
               "refresh_choices": [(key, label) for key, (label, _) in REFRESH_CHOICES.items()],
               "refresh": request.GET.get("refresh", "off")}
    return _render(request, "dashboard/schedules.html", workspace, context,
                   section="schedules")


def _schedule_form_page(request: HttpRequest, workspace: Workspace, form: ScheduleForm,
                        schedule: FlowSchedule | None, *, status: int = 200) -> HttpResponse:
    """Render the schedule form with the preview of the cron it holds."""
    cron_text = form["cron"].value() or ""
    zone = form["timezone"].value() or workspace.timezone
    context = {"form": form, "schedule": schedule,
               "preview": cron_preview(str(cron_text), str(zone)) if cron_text else None}
    response = _render(request, "dashboard/schedule_form.html", workspace, context,
                       section="schedules")
    response.status_code = status
    return response


def _schedule_saved(request: HttpRequest, workspace: Workspace, form: ScheduleForm,
                    schedule: FlowSchedule | None) -> HttpResponse:
    """Preview (the form again, with the cron's next runs) or save, then go to the list."""
    if "preview" in request.POST or not form.is_valid():
        status = 400 if form.is_bound and "preview" not in request.POST else 200
        return _schedule_form_page(request, workspace, form, schedule, status=status)
    outcome = actions.schedule_save(schedule=schedule, workspace=workspace,
                                    values=form.cleaned_data)
    _report(request, outcome)
    if not outcome.ok:
        return _schedule_form_page(request, workspace, form, schedule, status=400)
    return HttpResponseRedirect(_with_workspace(reverse("dashboard:schedules"), workspace.pk))


@require_http_methods(["GET", "POST"])
@dashboard_page
def schedule_create(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """Create a schedule: cron (previewed before saving), time zone, flow, audience."""
    _allow(request, workspace, roles.EDIT)
    form = ScheduleForm(request.POST or None, workspace=workspace)
    if request.method == "GET":
        return _schedule_form_page(request, workspace, form, None)
    return _schedule_saved(request, workspace, form, None)


@require_http_methods(["GET", "POST"])
@member_required
def schedule_edit(request: HttpRequest, pk: str) -> HttpResponse:
    """Change a schedule; beat follows without a restart."""
    schedule = _target(request, FlowSchedule.objects.all(), pk, roles.EDIT)
    initial = {"flow": schedule.flow_id, "cron": schedule.cron, "timezone": schedule.timezone,
               "audience": schedule.audience, "trigger_data": schedule.data,
               "catch_up": schedule.catch_up, "enabled": schedule.enabled}
    form = ScheduleForm(request.POST or None, initial=initial, workspace=schedule.workspace)
    if request.method == "GET":
        return _schedule_form_page(request, schedule.workspace, form, schedule)
    return _schedule_saved(request, schedule.workspace, form, schedule)


@require_POST
@member_required
def schedule_delete(request: HttpRequest, pk: str) -> HttpResponse:
    """Delete a schedule, its beat task and its runs."""
    schedule = _target(request, FlowSchedule.objects.all(), pk, roles.EDIT)
    workspace_id = schedule.workspace_id
    _report(request, actions.schedule_delete(schedule=schedule))
    return HttpResponseRedirect(_with_workspace(reverse("dashboard:schedules"), workspace_id))


@require_POST
@member_required
def schedule_toggle(request: HttpRequest, pk: str) -> HttpResponse:
    """Enable or disable a schedule."""
    schedule = _target(request, FlowSchedule.objects.all(), pk, roles.EDIT)
    enabled = request.POST.get("enabled") == "1"
    _report(request, actions.schedule_toggle(schedule=schedule, enabled=enabled))
    return _back(request, _with_workspace(reverse("dashboard:schedules"),
                                          schedule.workspace_id))


@require_GET
@dashboard_page
def alerts(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """List the workspace's alert rules and recent alert events, with a form for a new rule."""
    return _alerts_page(request, workspace, AlertRuleForm(workspace=workspace))


def _alerts_page(request: HttpRequest, workspace: Workspace, form: AlertRuleForm, *,
                 status: int = 200) -> HttpResponse:
    context = {**alerts_context(workspace), "form": form, "mute_choices": MUTE_CHOICES}
    response = _render(request, "dashboard/alerts.html", workspace, context, section="alerts")
    response.status_code = status
    return response


@require_POST
@workspace_action(roles.EDIT)
def alert_rule_create(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """Create an alert rule; the page again with the form's errors (400) when invalid."""
    form = AlertRuleForm(request.POST, workspace=workspace)
    if not form.is_valid():
        return _alerts_page(request, workspace, form, status=400)
    rule = form.save()
    flash.success(request, f"Alert rule {rule.name} created.")
    return HttpResponseRedirect(_with_workspace(reverse("dashboard:alerts"), workspace.pk))


@require_http_methods(["GET", "POST"])
@member_required
def alert_rule_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit an alert rule (admins and owners); invalid input shows the errors with a 400."""
    rule = _target(request, AlertRule.objects.all(), pk, roles.EDIT)
    workspace = rule.workspace
    form = AlertRuleForm(request.POST or None, instance=rule, workspace=workspace)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            form.save()
            flash.success(request, f"Alert rule {rule.name} saved.")
            return HttpResponseRedirect(_with_workspace(reverse("dashboard:alerts"),
                                                        workspace.pk))
        status = 400
    response = _render(request, "dashboard/alert_rule_form.html", workspace,
                       {"form": form, "rule": rule}, section="alerts")
    response.status_code = status
    return response


@require_POST
@member_required
def alert_rule_mute(request: HttpRequest, pk: int) -> HttpResponse:
    """Mute a rule's notifications for some hours, or unmute it (hours=0)."""
    rule = _target(request, AlertRule.objects.all(), pk, roles.EDIT)
    form = MuteForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("hours must be one of 0, 1, 8, 24, 168")
    _report(request, actions.alert_rule_mute(rule=rule, hours=form.cleaned_data["hours"]))
    return _back(request, _with_workspace(reverse("dashboard:alerts"), rule.workspace_id))


@require_POST
@member_required
def alert_rule_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Send a test notification to the rule's recipients."""
    rule = _target(request, AlertRule.objects.all(), pk, roles.EDIT)
    _report(request, actions.alert_rule_test(rule=rule))
    return _back(request, _with_workspace(reverse("dashboard:alerts"), rule.workspace_id))


@require_GET
@dashboard_page
def endpoints(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """List the workspace's webhook endpoints; with ?endpoint=, its deliveries (?status=)."""
    rows = WebhookEndpoint.objects.filter(workspace=workspace).annotate(
        failed=Count("deliveries", filter=Q(deliveries__status=MessageStatus.FAILED)),
        total=Count("deliveries"))
    wanted = as_uuid(request.GET.get("endpoint", ""))
    chosen = rows.filter(pk=wanted).first() if wanted else None
    status = request.GET.get("status", "")
    deliveries = None
    if chosen is not None:
        queryset = chosen.deliveries.order_by("-created_at")
        if status in MessageStatus.values:
            queryset = queryset.filter(status=status)
        deliveries = _page_of(request, queryset)
    return _render(request, "dashboard/endpoints.html", workspace, {
        "rows": rows, "chosen": chosen, "deliveries": deliveries, "status": status,
        "statuses": MessageStatus.values}, section="endpoints")


@require_POST
@member_required
def delivery_replay(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Send a delivery's event again (a new delivery with the same event id)."""
    delivery = _target(request, Message.objects.select_related("webhook_endpoint")
                       .filter(webhook_endpoint__isnull=False), pk, roles.REPLAY)
    endpoint = delivery.webhook_endpoint
    if endpoint is None or not endpoint.enabled:
        flash.error(request, "The endpoint is disabled; enable it to replay.")
    else:
        copy = event_endpoints.delivery_replay(delivery=delivery)
        flash.success(request, f"Replayed as delivery {copy.pk}.")
    return _back(request, _with_workspace(reverse("dashboard:endpoints"),
                                          delivery.workspace_id)
                 + f"&endpoint={delivery.webhook_endpoint_id}")


@require_GET
@dashboard_page
def rate_limits(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """Show the workspace's rate-limit deferrals per channel and recent events."""
    context: dict[str, Any] = {"limits": _configured_limits(workspace), "error": ""}
    try:
        counts = ratelimit.deferral_counts(str(workspace.pk))
        events = ratelimit.deferral_events(str(workspace.pk), limit=RATE_LIMIT_EVENTS)
    except redis.RedisError as exc:
        counts, events, context["error"] = {}, [], str(exc)
    context.update(rate_limit_panels(counts, events))
    return _render(request, "dashboard/rate_limits.html", workspace, context,
                   section="rate-limits")


@require_GET
@dashboard_page
def providers(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """Show each provider of the workspace in failover order: its circuit breaker's state,
    the workspace's sent and failed calls through it and their latency percentiles (what
    GET /api/v1/providers/health answers)."""
    context: dict[str, Any] = {"error": ""}
    try:
        context["providers"] = provider_health(workspace=workspace)
    except redis.RedisError as exc:
        context["providers"], context["error"] = [], str(exc)
    return _render(request, "dashboard/providers.html", workspace, context,
                   section="providers")


def _configured_limits(workspace: Workspace) -> list[tuple[str, str, str]]:
    """Return (channel queue, rate in force, "workspace" override or "default")."""
    rates = monitoring_selectors.configured_rates(workspace)
    overrides = (workspace.settings or {}).get("rate_limits") or {}
    return [(queue, rates.get(queue, "unlimited"),
             "workspace" if overrides.get(queue) else "default")
            for queue in settings.RATE_LIMITS]


@require_POST
@member_required
def rate_limits_reset(request: HttpRequest) -> HttpResponse:
    """Reset the workspace's rate-limit counters, events and reservations (staff only)."""
    workspace = _requested_workspace(request)
    if workspace is None:
        raise Http404("No such workspace.")
    _allow(request, workspace, roles.RESET_RATE_LIMITS)
    _report(request, actions.rate_limits_reset(workspace=workspace))
    return _back(request, _with_workspace(reverse("dashboard:rate-limits"), workspace.pk))

