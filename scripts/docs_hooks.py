"""MkDocs hooks of the documentation site (mkdocs.yml: `hooks`).

The API reference is generated at build time from the schema the service itself serves:
`manage.py spectacular` writes the OpenAPI document, and this hook turns it into one
Markdown page per resource (operations, parameters, request and answer bodies) plus one
page of the schema's components, so the reference needs no JavaScript viewer and no
network. The schema file itself is published beside the pages (`openapi.json`).

The diagrams' script (mermaid) is a package of the npm registry, pinned in package.json and
package-lock.json and installed by `npm ci` (make install, make docs): this hook copies its
bundle and licence from node_modules into the site, where mkdocs.yml's `extra_javascript`
loads it. Without node_modules the site still builds; its diagrams stay as source text.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from mkdocs.utils import log

ROOT = Path(__file__).resolve().parent.parent
API_DIR = "reference/api"
METHODS = ("get", "post", "put", "patch", "delete")

# Pages in this order first; any resource not named here follows, sorted.
RESOURCE_TITLES = {
    "compatible": "Compatible endpoints (older clients)",
    "workspace": "Workspace",
    "contacts": "Contacts",
    "messages": "Messages",
    "suppressions": "Suppressions",
    "inbound": "Inbound",
    "providers": "Providers",
    "events": "Events",
    "webhook-endpoints": "Webhook endpoints",
    "flows": "Flows",
    "executions": "Executions",
    "schedules": "Schedules",
    "utils": "Utilities",
    "dead-letters": "Dead letters",
    "alerts": "Alerts",
    "queues": "Queues",
    "rate-limits": "Rate limits",
    "audit-log": "Audit log",
}


def load_schema() -> dict[str, Any]:
    """The OpenAPI document, from `manage.py spectacular` (or OPENAPI_SCHEMA_FILE)."""
    given = os.environ.get("OPENAPI_SCHEMA_FILE")
    if given:
        return json.loads(Path(given).read_text())
    env = {**os.environ}
    env.setdefault("SECRET_KEY", "docs-build-only-secret")
    out = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--format", "openapi-json",
         "--fail-on-warn"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


def resource_of(path: str) -> str:
    match = re.match(r"^/api/v1/([^/{]+)", path)
    return match.group(1) if match else "compatible"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cell(text: Any) -> str:
    """Text safe inside one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](schemas.md#{slug(name)})"
    for combo in ("allOf", "oneOf", "anyOf"):
        if combo in schema:
            joiner = " and " if combo == "allOf" else " or "
            return joiner.join(type_of(part) for part in schema[combo])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array":
        return f"array of {type_of(schema.get('items', {}))}"
    text = str(kind)
    if "format" in schema:
        text += f" ({schema['format']})"
    if "enum" in schema:
        text += ": " + ", ".join(f"`{value}`" for value in schema["enum"] if value is not None)
    if schema.get("nullable"):
        text += ", nullable"
    return text


def body_type(content: dict[str, Any]) -> str:
    parts = []
    for media, spec in content.items():
        parts.append(f"`{media}`: {type_of(spec.get('schema', {}))}")
    return "; ".join(parts)


def operation_md(path: str, method: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", ""]
    if op.get("summary"):
        lines += [op["summary"], ""]
    if op.get("description"):
        lines += [op["description"], ""]
    lines += [f"Operation id: `{op.get('operationId', '')}`", ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for param in params:
            lines.append(
                f"| `{param['name']}` | {param['in']} | {cell(type_of(param.get('schema', {})))}"
                f" | {'yes' if param.get('required') else 'no'}"
                f" | {cell(param.get('description', ''))} |"
            )
        lines.append("")
    if "requestBody" in op:
        lines += [f"Request body: {body_type(op['requestBody'].get('content', {}))}", ""]
    lines += ["| answer | description | body |", "|---|---|---|"]
    for code, answer in op.get("responses", {}).items():
        lines.append(
            f"| {code} | {cell(answer.get('description', ''))}"
            f" | {cell(body_type(answer.get('content', {})))} |"
        )
    lines.append("")
    return lines


def schemas_md(schema: dict[str, Any]) -> str:
    lines = ["# Schemas", "", "Every body the API takes or answers, from its OpenAPI schema.", ""]
    for name, spec in sorted(schema.get("components", {}).get("schemas", {}).items()):
        lines += [f"## {name}", ""]
        if spec.get("description"):
            lines += [spec["description"], ""]
        props = spec.get("properties")
        if props:
            required = set(spec.get("required", []))
            lines += ["| field | type | required | description |", "|---|---|---|---|"]
            for field, fspec in props.items():
                flags = []
                if fspec.get("readOnly"):
                    flags.append("read-only")
                if fspec.get("writeOnly"):
                    flags.append("write-only")
                described = fspec.get("description", "")
                if flags:
                    described = f"({', '.join(flags)}) {described}"
                lines.append(
                    f"| `{field}` | {cell(type_of(fspec))}"
                    f" | {'yes' if field in required else 'no'} | {cell(described)} |"
                )
        else:
            lines.append(cell(type_of(spec)))
        lines.append("")
    return "\n".join(lines)


def pages(schema: dict[str, Any]) -> dict[str, str]:
    """Markdown by file name under reference/api/."""
    grouped: dict[str, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                grouped[resource_of(path)].append((path, method, item[method]))
    order = [name for name in RESOURCE_TITLES if name in grouped]
    order += sorted(name for name in grouped if name not in RESOURCE_TITLES)
    info = schema.get("info", {})
    index = [
        f"# API reference: {info.get('title', 'API')} {info.get('version', '')}".rstrip(),
        "",
        info.get("description", ""),
        "",
        "Generated from the OpenAPI schema the service serves (`/api/schema/`) when the site "
        "is built. The schema itself: [openapi.json](openapi.json). A running service also "
        "serves it as Swagger UI under `/api/docs/`.",
        "",
        "Authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`. Every error "
        "has one shape: [Error](schemas.md#error).",
        "",
        "| resource | operations |",
        "|---|---|",
    ]
    out: dict[str, str] = {}
    for name in order:
        title = RESOURCE_TITLES.get(name, name.replace("-", " ").capitalize())
        ops = grouped[name]
        index.append(f"| [{title}]({name}.md) | {len(ops)} |")
        body = [f"# {title}", ""]
        for path, method, op in ops:
            body += operation_md(path, method, op)
        out[f"{name}.md"] = "\n".join(body)
    index += ["", "[Schemas](schemas.md): every request and answer body.", ""]
    out["index.md"] = "\n".join(index)
    out["schemas.md"] = schemas_md(schema)
    return out


# Files of npm packages the site serves: node_modules path -> path in the site.
NPM_ASSETS = {
    "mermaid/dist/mermaid.min.js": "assets/javascripts/mermaid.min.js",
    "mermaid/LICENSE": "assets/javascripts/mermaid.LICENSE",
}


def npm_assets(files: Files, config: Any) -> None:
    """Add NPM_ASSETS to the site, or say why the diagrams will not be drawn."""
    modules = ROOT / "node_modules"
    for source, target in NPM_ASSETS.items():
        path = modules / source
        if not path.is_file():
            log.info("docs: %s is missing (run `npm ci`); diagrams stay as text", path)
            continue
        files.append(File.generated(config, target, abs_src_path=str(path)))


def on_files(files: Files, config: Any) -> Files:
    npm_assets(files, config)
    schema = load_schema()
    for name, content in pages(schema).items():
        files.append(File.generated(config, f"{API_DIR}/{name}", content=content))
    files.append(
        File.generated(config, f"{API_DIR}/openapi.json", content=json.dumps(schema, indent=2))
    )
    return files
