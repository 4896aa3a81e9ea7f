"""Replay dead letters matching filters, with a progress bar and a summary."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.models import DeadLetter, Workspace
from messaging.models import Channel
from monitoring import selectors, services

BAR_WIDTH = 30


def parse_when(value: str) -> datetime:
    """Parse an ISO time (UTC when no offset is given) or an age such as 2h or 7d ago."""
    try:
        return timezone.now() - services.parse_age(value)
    except ValueError:
        pass
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"expected an ISO time or an age such as 2h or 7d, got {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def find_workspace(value: str) -> Workspace:
    """Return the workspace with this id or slug."""
    workspace = selectors.workspace_find(value)
    if workspace is None:
        raise CommandError(f"no workspace with id or slug {value!r}")
    return workspace


class Command(BaseCommand):
    help = ("Replay open dead letters: failed messages are queued again (same id, same "
            "idempotency key), failed flow steps are retried. Each entry replays at most once.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", help="workspace id or slug")
        parser.add_argument("--kind", choices=DeadLetter.Kind.values)
        parser.add_argument("--channel", choices=Channel.values)
        parser.add_argument("--since", help="filed at or after: ISO time or age (2h, 7d)")
        parser.add_argument("--until", help="filed before: ISO time or age (2h, 7d)")
        parser.add_argument("--error-contains", default="", help="text in the error")
        parser.add_argument("--flow", default="", help="flow id")
        parser.add_argument("--id", type=int, action="append", dest="ids", default=[],
                            help="replay this entry (repeatable); not-open entries are "
                                 "refused with the reason")
        parser.add_argument("--limit", type=int, help="replay at most this many")
        parser.add_argument("--dry-run", action="store_true",
                            help="list what would be replayed; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        queryset = self._selected(options)
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        if options["dry_run"]:
            self._dry_run(queryset, options["limit"])
            return
        report = services.dead_letters_replay(queryset=queryset, actor="command",
                                              limit=options["limit"],
                                              on_progress=self._progress)
        self.stdout.write("")
        for refusal in report.refusals:
            self.stdout.write(f"  refused #{refusal['id']}: {refusal['reason']}")
        self.stdout.write(self.style.SUCCESS(
            f"matched {report.matched}, replayed {report.replayed}, refused {report.refused}, "
            f"left for a later run {report.remaining}"))

    def _selected(self, options: dict[str, Any]) -> Any:
        """Return the entries named by --id, else the open entries matching the filters."""
        queryset = services.dead_letters_filter(
            workspace=find_workspace(options["workspace"]) if options["workspace"] else None,
            kind=options["kind"] or "", channel=options["channel"] or "",
            error_contains=options["error_contains"],
            since=parse_when(options["since"]) if options["since"] else None,
            until=parse_when(options["until"]) if options["until"] else None,
            status="" if options["ids"] else DeadLetter.Status.OPEN, flow_id=options["flow"])
        return queryset.filter(pk__in=options["ids"]) if options["ids"] else queryset

    def _progress(self, done: int, total: int, outcome: services.ReplayOutcome) -> None:
        filled = BAR_WIDTH * done // max(total, 1)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        verdict = "replayed" if outcome.replayed else "refused"
        # One line per entry (not \r): logs and CI output keep the whole history.
        self.stdout.write(f"[{bar}] {done}/{total} #{outcome.letter_id} {verdict}")

    def _dry_run(self, queryset: Any, limit: int | None) -> None:
        letters = list(queryset.order_by("created_at", "id")[:limit] if limit else
                       queryset.order_by("created_at", "id"))
        for letter in letters:
            self.stdout.write(f"would replay #{letter.pk} {letter.kind} {letter.source_id} "
                              f"{letter.channel or '-'} {letter.error[:80]}")
        self.stdout.write(self.style.SUCCESS(f"dry run: {len(letters)} would be replayed"))
