"""OpenAPI description of the API key authentication and of the one error shape."""
from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from core.api import CODES
from core.api_parsers import MAX_JSON_DEPTH


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "core.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer",
                "description": "Workspace API key, as `Authorization: Bearer <key>` "
                               "or `X-API-Key: <key>`."}


ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The one error shape of the whole API (core.api.error_body).",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "Machine-readable, e.g. "
                     + ", ".join(f"`{code}`" for code in sorted(set(CODES.values())))},
            "message": {"type": "string", "description": "One human-readable sentence."},
            # A dict of field -> messages; for a batch, item index -> its field errors.
            "fields": {"description": "The fields at fault and what is wrong with each."},
        },
    }},
}
DESCRIPTIONS = {
    400: "Invalid input: `fields` names each field at fault, by its dotted path in the body "
         "(`attributes.x`) or its query parameter. This includes text the database cannot "
         "store (a NUL character or a lone surrogate, in any key or string) and JSON nested "
         f"deeper than {MAX_JSON_DEPTH} levels of objects and arrays.",
    401: "No API key, or an invalid or revoked one.",
    403: "The key may not do this (e.g. a workspace id of another workspace).",
    404: "No such object in the key's workspace (or no such page of a list).",
    409: "The object's state does not allow this now, or a request with this "
         "Idempotency-Key is still running.",
    422: "This Idempotency-Key was used with a different request body.",
    429: "Too many requests for this API key; see `Retry-After`.",
    503: "The database is unavailable (a restart or a failover): nothing was done; send the "
         "same request again after `Retry-After` seconds (code `database_unavailable`).",
}
# The answers that carry Retry-After, and what it means in each.
RETRY_AFTER = {
    429: "Seconds until the key may send again.",
    503: "Seconds to wait before sending the request again.",
}
WRITE_METHODS = {"post", "put", "patch", "delete"}


def _error_statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    """Return the error statuses an operation can answer, by the rules every view shares.

    Every request can be malformed (400) or meet an unavailable database (503). An
    operation that requires a key answers 401 without one, 403 when the key may not act,
    429 over the key's rate limit. A path with an
    id answers 404, and so does a list asked for a page past its end. Keyed writes may meet
    a state that refuses them (409), and keyed POSTs honour Idempotency-Key (409 while the
    first request runs, 422 for another body).
    """
    security = operation.get("security") or []
    needs_key = bool(security) and {} not in security
    statuses = [400, 503]
    if needs_key:
        statuses += [401, 403, 429]
    pages = any(parameter.get("name") == "page" for parameter in operation.get("parameters", []))
    if "{" in path or pages:
        statuses.append(404)
    if needs_key and method in WRITE_METHODS:
        statuses.append(409)
    if needs_key and method == "post":
        statuses.append(422)
    return sorted(statuses)


def postprocess_error_responses(result: dict[str, Any], generator: Any, request: Any,
                                public: bool) -> dict[str, Any]:
    """Document the error answers of every operation with the shared error schema.

    Registered once in SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"], so a new endpoint is
    documented without an annotation. An answer a view documents itself is kept; an error
    it documents without a body (`responses={404: None}`) gets the error schema.
    """
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = \
        ERROR_SCHEMA
    reference = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status in _error_statuses(path, method, operation):
                responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400 and not response.get("content"):
                    if response.get("description") in (None, "", "No response body"):
                        response["description"] = DESCRIPTIONS.get(int(status), "Error.")
                    response["content"] = {"application/json": {"schema": reference}}
                own = response.get("content", {}).get("application/json", {}).get("schema")
                if status.isdigit() and int(status) in RETRY_AFTER and own == reference:
                    response.setdefault("headers", {}).setdefault("Retry-After", {
                        "schema": {"type": "integer", "minimum": 0},
                        "description": RETRY_AFTER[int(status)]})
    return result
