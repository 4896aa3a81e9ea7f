"""Segments: named audiences in the flows' condition language (flows.rules).

A segment's rules may name another segment of the workspace as an item of a group,
`{"segment": "<id>"}`: it stands for that segment's rules, expanded when they are checked
and used (a broadcast or a bulk start copies the expanded rules), so a segment changed
later changes the segments built on it. Saving refuses an unknown id and a cycle.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from django.db import IntegrityError, transaction

from audiences.models import Segment
from core.audit import Actor, audit
from core.models import Contact, Workspace
from flows.rules import AUDIENCE_ROOTS, MAX_DEPTH, unknown_roots, validate_rules
from flows.rules_sql import rules_filter
from flows.services import audience, audience_batch

PREVIEW_SIZE = 20
# Contacts read per query while counting a segment whose rules the database cannot decide
# alone (flows.rules_sql): they are evaluated per contact.
SCAN_BATCH = 2000


class SegmentInvalid(ValueError):
    """The segment cannot be saved; `fields` maps each refused input to its reasons."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__("; ".join(f"{key}: {value}" for key, value in fields.items()))
        self.fields = fields


class SegmentInUse(Exception):
    """Another segment names this one in its rules."""


def _is_reference(item: Any) -> bool:
    return isinstance(item, dict) and set(item) == {"segment"}


def _expand(workspace: Workspace, group: Any, path: str, seen: tuple[str, ...],
            errors: list[str], depth: int = 1) -> Any:
    """Return the group with every segment reference replaced by that segment's rules,
    appending to `errors` for an unknown id or a cycle."""
    if depth > MAX_DEPTH or not isinstance(group, dict) or len(group) != 1:
        return group
    key, items = next(iter(group.items()))
    if not isinstance(items, list):
        return group
    expanded = []
    for index, item in enumerate(items):
        item_path = f"{path}.{key}[{index}]"
        if _is_reference(item):
            target = str(item["segment"])
            segment = _segment_of(workspace, target)
            if segment is None:
                errors.append(f"{item_path}.segment: no segment '{target}' in this workspace")
                continue
            if target in seen:
                errors.append(f"{item_path}.segment: '{segment.name}' includes this segment "
                              "(segments may not include each other in a cycle)")
                continue
            expanded.append(_expand(workspace, segment.rules, item_path, (*seen, target),
                                    errors, depth + 1))
        elif isinstance(item, dict) and "field" not in item and "op" not in item:
            expanded.append(_expand(workspace, item, item_path, seen, errors, depth + 1))
        else:
            expanded.append(item)
    return {key: expanded}


def _segment_of(workspace: Workspace, segment_id: str) -> Segment | None:
    """Return the workspace's segment with this id (None: no such segment, or no uuid)."""
    try:
        pk = uuid.UUID(segment_id)
    except ValueError:
        return None
    return Segment.objects.filter(workspace=workspace, pk=pk).first()


def rules_expand(*, workspace: Workspace, rules: Any, segment_id: str | None = None,
                 path: str = "rules") -> dict:
    """Return the rules with other segments expanded; raise SegmentInvalid naming `path`
    for bad rules, an unknown segment or a cycle through `segment_id`."""
    errors: list[str] = []
    seen = (str(segment_id),) if segment_id else ()
    expanded = _expand(workspace, rules, path, seen, errors)
    if not errors:
        errors = validate_rules(expanded, path) or unknown_roots(
            expanded, AUDIENCE_ROOTS, "an audience", path)
    if errors:
        raise SegmentInvalid({path: errors})
    return expanded


def segment_rules(segment: Segment) -> dict:
    """Return the segment's rules with the segments it names expanded (as used)."""
    return rules_expand(workspace=segment.workspace, rules=segment.rules,
                        segment_id=str(segment.pk))


def _check_includers(segment: Segment) -> None:
    """Raise SegmentInvalid on `rules` when a segment that includes this one (saved in the
    current transaction) no longer expands: nested deeper than the rules allow."""
    for other in Segment.objects.filter(workspace=segment.workspace).exclude(pk=segment.pk):
        if not any(True for _ in _names(other.rules)):
            continue
        try:
            segment_rules(other)
        except SegmentInvalid as exc:
            raise SegmentInvalid({"rules": [
                f"segment '{other.name}' includes this one and would no longer be valid: "
                f"{problem}" for problem in exc.fields["rules"]]}) from exc


class _Undo(Exception):
    """Rolls back a trial change (segment_change_check)."""


def segment_change_check(*, segment: Segment, rules: Any) -> None:
    """Raise SegmentInvalid if the saved segment's rules changed to `rules` would break a
    segment that includes it; writes nothing (the trial change is rolled back)."""
    try:
        with transaction.atomic():
            Segment.objects.filter(pk=segment.pk).update(rules=rules)
            _check_includers(segment)
            raise _Undo
    except _Undo:
        pass


def _save(segment: Segment, actor: Actor | None, action: str) -> Segment:
    try:
        with transaction.atomic():
            segment.save()
            if action == "segment.update":
                _check_includers(segment)
            if actor is not None:
                audit(actor=actor, action=action, workspace=segment.workspace,
                      target_type="segment", target_id=segment.pk,
                      detail={"name": segment.name})
    except IntegrityError as exc:
        raise SegmentInvalid({"name": ["A segment with this name already exists."]}) from exc
    return segment


def segment_create(*, workspace: Workspace, name: str, rules: Any,
                   actor: Actor | None = None) -> Segment:
    """Record a segment; raise SegmentInvalid, having written nothing, for bad rules or a
    name taken."""
    rules_expand(workspace=workspace, rules=rules)
    return _save(Segment(workspace=workspace, name=name, rules=rules), actor,
                 "segment.create")


def segment_update(*, segment: Segment, name: str | None = None, rules: Any = None,
                   actor: Actor | None = None) -> Segment:
    """Change a segment's name or rules (None: unchanged); raise SegmentInvalid as
    segment_create does, and for rules that would include the segment in itself."""
    if rules is not None:
        rules_expand(workspace=segment.workspace, rules=rules, segment_id=str(segment.pk))
        segment.rules = rules
    if name is not None:
        segment.name = name
    return _save(segment, actor, "segment.update")


def _names(group: Any, depth: int = 1) -> Iterator[str]:
    """Yield the segment ids a group names (not expanded)."""
    if depth > MAX_DEPTH or not isinstance(group, dict) or len(group) != 1:
        return
    items = next(iter(group.values()))
    for item in items if isinstance(items, list) else []:
        if _is_reference(item):
            yield str(item["segment"])
        elif isinstance(item, dict):
            yield from _names(item, depth + 1)


def segment_delete(*, segment: Segment, actor: Actor | None = None) -> None:
    """Delete a segment; raise SegmentInUse while another segment names it."""
    users = [other.name for other in Segment.objects.filter(workspace=segment.workspace)
             .exclude(pk=segment.pk).only("name", "rules")
             if str(segment.pk) in _names(other.rules)]
    if users:
        raise SegmentInUse(f"Segments {', '.join(sorted(users))} include this segment.")
    with transaction.atomic():
        if actor is not None:
            audit(actor=actor, action="segment.delete", workspace=segment.workspace,
                  target_type="segment", target_id=segment.pk, detail={"name": segment.name})
        segment.delete()


def segment_preview(*, segment: Segment) -> tuple[int, list[Contact]]:
    """Return the segment's live count and its first PREVIEW_SIZE contacts (in id order).

    The database counts them when it can decide the rules alone (flows.rules_sql); else
    the contacts it narrows to are evaluated SCAN_BATCH at a time.
    """
    rules = segment_rules(segment)
    contacts = audience(workspace=segment.workspace, contact_ids=None)
    where, exact = rules_filter(rules)
    if exact:
        members = contacts.filter(where)
        return members.count(), list(members[:PREVIEW_SIZE])
    first: list[Contact] = []
    count, cursor, read = 0, None, SCAN_BATCH
    while read == SCAN_BATCH:
        cursor, read, matched = audience_batch(contacts=contacts.filter(where), rules=rules,
                                               cursor=cursor, size=SCAN_BATCH)
        first.extend(matched[:PREVIEW_SIZE - len(first)])
        count += len(matched)
    return count, first


def segment_rules_for(workspace: Workspace, segment_id: str) -> dict | None:
    """Return the expanded rules of the workspace's segment `segment_id` (None when the
    workspace has no such segment): what a flow's bulk start with segment_id uses."""
    segment = _segment_of(workspace, str(segment_id))
    return segment_rules(segment) if segment is not None else None
