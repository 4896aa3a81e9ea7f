"""Request input the database can store: one JSON parser and one middleware refuse, with 400
naming the field, text PostgreSQL cannot keep and JSON nested too deeply to handle safely.

PostgreSQL refuses a NUL character in `text` and `jsonb` (and `\\u0000` inside `jsonb`), and
a lone surrogate (`\\ud800` with no partner) is not Unicode at all: Python's json module
decodes both, so a free-form JSON field (attributes, data, payload, settings, flow graphs)
would reach the database with them and fail there as a 500. A document nested thousands of
levels deep makes the decoder raise RecursionError (another 500) and every later recursive
step (serializers, templating, the engine) slow or fragile. Checking once, where every body
and query string comes in, covers every endpoint, including those added later.
"""
from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser

# Deepest nesting of objects and arrays a JSON body may have (the body itself is level 1).
# Flow graphs, the deepest documents the API takes, need about 26 (rule groups nest 10
# deep, flows.rules.MAX_DEPTH); Python's decoder gives up near 1,000.
MAX_JSON_DEPTH = 64

NUL = "Text may not contain NUL characters (U+0000)."
SURROGATE = "Text may not contain lone surrogates (U+D800 to U+DFFF); send valid Unicode."
TOO_DEEP = f"Nested deeper than {MAX_JSON_DEPTH} levels of objects and arrays."

Path = tuple[str | int, ...]

# A JSON string literal, or one of the punctuation marks that shape the document.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.DOTALL)


def text_fault(text: str) -> str | None:
    """Return why the database cannot store this text, or None when it can."""
    if "\x00" in text:
        return NUL
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE
    return None


def first_unstorable(data: Any, *, max_depth: int = MAX_JSON_DEPTH) -> tuple[Path, str] | None:
    """Return the path and the fault of the first key or text the database cannot store, or
    of the first object or array nested deeper than max_depth; None when there is none.

    Walks with a stack rather than recursion, so a deep document cannot exhaust Python's.
    """
    if isinstance(data, str):
        fault = text_fault(data)
        return ((), fault) if fault is not None else None
    stack: list[tuple[Path, Any, int]] = [((), data, 1)]
    while stack:
        path, value, depth = stack.pop()
        if not isinstance(value, dict | list):
            continue
        if depth > max_depth:
            return path, TOO_DEEP
        items = value.items() if isinstance(value, dict) else enumerate(value)
        containers = []
        for key, item in items:
            # Texts are checked here and only containers stacked: most of a body is texts.
            if isinstance(key, str) and (fault := text_fault(key)) is not None:
                return (*path, key), fault
            if isinstance(item, str):
                if (fault := text_fault(item)) is not None:
                    return (*path, key), fault
            elif isinstance(item, dict | list):
                containers.append(((*path, key), item, depth + 1))
        stack.extend(reversed(containers))  # in document order
    return None


def deep_path(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> Path:
    """Return the path of the first object or array nested deeper than max_depth in a JSON
    text, read token by token (for a text too deep for the decoder to return at all)."""
    frames: list[list[Any]] = []  # per open container: [current key or index, is object]
    last_string = ""
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            if len(frames) >= max_depth:
                return tuple(frame[0] for frame in frames)
            frames.append(["" if token == "{" else 0, token == "{"])
        elif token in ("]", "}"):
            if frames:
                frames.pop()
        elif token == ",":
            if frames and not frames[-1][1]:
                frames[-1][0] += 1
        elif token == ":":
            if frames:
                frames[-1][0] = _key_of(last_string)
        else:
            last_string = token
    return ()


def _key_of(literal: str) -> str:
    """Return the text of a JSON string literal (its raw text when it is malformed: the
    decoder stopped before reaching it)."""
    try:
        return str(json.loads(literal))
    except ValueError:
        return literal[1:-1]


def printable(part: str | int) -> str:
    """Return a path part as text any JSON encoder can write (a lone surrogate or a NUL as
    its escape, `\\ud800`), so naming the faulty key cannot fail in turn."""
    return str(part).encode("utf-8", "backslashreplace").decode("utf-8").replace(
        "\x00", "\\u0000")


def refusal(path: Path, fault: str) -> ValidationError:
    """Return the 400 naming the field at `path` by its dotted path (`attributes.a.0`), as
    core.api.exception_handler answers every validation error."""
    if not path:
        return ValidationError({"non_field_errors": [fault]})
    return ValidationError({".".join(printable(part) for part in path): [fault]})


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, refusing bodies the database could not store or that are nested
    deeper than MAX_JSON_DEPTH (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"])."""

    def parse(self, stream: Any, media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        """Return the parsed body; raise a 400 naming the field at fault."""
        raw = stream.read()
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            # The charset passed DRF's check before the decoder ran.
            encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
            text = raw.decode(encoding, errors="replace")
            raise refusal(deep_path(text), TOO_DEEP) from None
        found = first_unstorable(data)
        if found is not None:
            raise refusal(*found)
        return data


def parameter_fault(params: QueryDict) -> tuple[str, str] | None:
    """Return the name and the fault of the first parameter whose name or value the
    database cannot store; None when there is none."""
    for name, values in params.lists():
        for text in (name, *values):
            fault = text_fault(text)
            if fault is not None:
                return printable(name), fault
    return None


def _form_of(request: HttpRequest) -> QueryDict | None:
    """Return the form fields of a url-encoded POST (Twilio's webhooks, dashboard forms)."""
    if request.method != "POST" or request.content_type != "application/x-www-form-urlencoded":
        return None
    try:
        return request.POST
    except (SuspiciousOperation, OSError):
        return None  # too large or unreadable: the view that reads it answers that


class UnstorableParametersMiddleware:
    """Answer 400 in the API's error shape, naming the parameter, to a query string or a
    url-encoded form holding text the database cannot store (JSON bodies: SafeJSONParser).

    Django decodes both with errors="replace", so in practice this is the NUL character.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Imported here: core.api imports DRF's views, which import this module's parser.
        from core.api import error_body

        sources: Iterable[QueryDict | None] = (request.GET, _form_of(request))
        for params in sources:
            found = parameter_fault(params) if params is not None else None
            if found is not None:
                name, fault = found
                return JsonResponse(error_body(400, "Invalid input.", fields={name: [fault]}),
                                    status=400)
        return self.get_response(request)
