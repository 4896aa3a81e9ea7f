"""A small, safe template renderer for message content: `{{ contact.first_name }}`.

It also renders a message's content with its context, apart from the delivery pipeline, so
a flow dry run renders exactly what a delivery would without loading the pipeline.

Only dotted lookups into plain data are supported (no tags, filters or attribute access on
Python objects), so user templates cannot reach anything but the context they are given.
A missing variable renders as an empty string when a message is sent; a saved template is
checked first (`template_problems`), so a misspelt variable or a filter is refused then.
"""
from __future__ import annotations

import html
import json
import re
from typing import TYPE_CHECKING, Any

from messaging.recipients.preferences import preferences_url
from messaging.recipients.unsubscribe import unsubscribe_url

if TYPE_CHECKING:
    from messaging.models import Message

VARIABLE = re.compile(r"{{\s*([A-Za-z_][\w]*(?:\.[\w-]+)*)\s*}}")
_MISSING = object()


# The contact's text columns, shown as they are (its id and external_id are shown as strings,
# its attributes as an object): what templates, conditions and audience rules compiled to
# SQL (flows.rules_sql) read of its columns.
CONTACT_COLUMNS = ("first_name", "last_name", "phone", "email", "timezone", "locale")


def contact_context(contact: Any) -> dict[str, Any]:
    """Return what templates and flow conditions see of a contact."""
    return {"id": str(contact.id), "external_id": contact.external_id or "",
            **{name: getattr(contact, name) for name in CONTACT_COLUMNS},
            "attributes": contact.attributes or {}}


def lookup(context: dict[str, Any], path: str) -> Any:
    """Return the value at a dotted path (dict keys or list indexes), or a sentinel."""
    value: Any = context
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


# Every {{ ... }} written, well-formed or not, and every {% ... %} tag (none is supported).
_PLACEHOLDER = re.compile(r"{{(.*?)}}|{%(.*?)%}", re.DOTALL)
# What a template may name: the contact's fields (CONTACT_FIELDS; any attribute under
# contact.attributes), any metadata key, a flow send's trigger and steps, and the links.
CONTACT_FIELDS = ("id", "external_id", *CONTACT_COLUMNS, "attributes")
OPEN_ROOTS = ("metadata", "trigger", "steps")
LEAF_ROOTS = ("unsubscribe_url", "preferences_url")


def template_problems(template: str) -> list[str]:
    """Return why a template could not render as written: each filter, tag or variable
    it names that the renderer does not know (an empty list when it is sound)."""
    problems = []
    for match in _PLACEHOLDER.finditer(template):
        inner = (match.group(1) if match.group(1) is not None else "").strip()
        if match.group(2) is not None:
            problems.append(f"Unknown tag '{{% {match.group(2).strip()} %}}': templates "
                            "take only {{ variables }}.")
        elif "|" in inner:
            name = inner.split("|", 1)[1].split(":", 1)[0].strip()
            problems.append(f"Unknown filter '{name}' in '{{{{ {inner} }}}}': templates "
                            "take no filters.")
        elif not VARIABLE.fullmatch(match.group(0)) or not _known(inner):
            problems.append(f"Unknown variable '{inner}'.")
    return problems


def _known(path: str) -> bool:
    """Tell whether a dotted path names something a message's context can hold."""
    root, _, rest = path.partition(".")
    if root == "contact":
        return not rest or rest.split(".", 1)[0] in CONTACT_FIELDS
    return root in OPEN_ROOTS or (root in LEAF_ROOTS and not rest)


def locale_chain(locale: str) -> list[str]:
    """Return the locales to try for a contact's, most specific first, lower-case:
    "de-AT" -> ["de-at", "de"] (the template's default comes after them)."""
    parts = locale.lower().split("-") if locale else []
    return ["-".join(parts[:size]) for size in range(len(parts), 0, -1)]


def variant_pick(variants: dict[str, Any], default_locale: str,
                 locale: str) -> tuple[str, Any]:
    """Return the locale and content of the variant a contact of `locale` gets: the first
    of its locale_chain the variants have, else the default."""
    by_lower = {key.lower(): key for key in variants}
    for candidate in locale_chain(locale):
        if candidate in by_lower:
            return by_lower[candidate], variants[by_lower[candidate]]
    return default_locale, variants[default_locale]


def _to_text(value: Any) -> str:
    if value is _MISSING or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def render(template: str, context: dict[str, Any], *, escape_html: bool = False) -> str:
    """Replace each {{ path }} with its value from the context (HTML-escaped if asked)."""
    if "{{" not in template:
        return template

    def replace(match: re.Match) -> str:
        text = _to_text(lookup(context, match.group(1)))
        return html.escape(text) if escape_html else text

    return VARIABLE.sub(replace, template)


def render_data(value: Any, context: dict[str, Any]) -> Any:
    """Render every string inside a JSON value (for webhook payloads and headers)."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, list):
        return [render_data(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render_data(item, context) for key, item in value.items()}
    return value


def render_context(message: Message) -> dict[str, Any]:
    """Return what templates may use: contact fields and attributes, metadata, a flow
    send's trigger and steps, and for an email with a recipient its `unsubscribe_url` (and,
    with a contact, its `preferences_url`)."""
    contact = message.contact
    context: dict[str, Any] = {"metadata": message.metadata or {}}
    if contact is not None:
        context["contact"] = contact_context(contact)
    url = unsubscribe_url(message)
    if url:
        context["unsubscribe_url"] = url
    url = preferences_url(message)
    if url:
        context["preferences_url"] = url
    # A row written by a process still on the code before flow_context (a rolling deploy)
    # keeps its flow data in metadata["_context"], which the API no longer accepts.
    context.update(message.flow_context or (message.metadata or {}).get("_context") or {})
    return context


def render_content(message: Message) -> dict[str, Any]:
    """Return the message's content rendered with its context.

    Jobs of the older API carry opaque data: their payload is delivered verbatim.
    """
    return render_fields(message.content, render_context(message),
                         payload=message.source != "compat")


def render_fields(content: dict[str, Any], context: dict[str, Any], *,
                  payload: bool = True) -> dict[str, Any]:
    """Return the content with every template rendered (HTML escaped in email HTML)."""
    content = dict(content)
    for key in ("body", "subject", "text", "prompt", "system"):
        if isinstance(content.get(key), str):
            content[key] = render(content[key], context)
    if isinstance(content.get("html"), str):
        content["html"] = render(content["html"], context, escape_html=True)
    if payload and "payload" in content:
        content["payload"] = render_data(content["payload"], context)
    return content
