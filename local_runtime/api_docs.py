"""The API contract as documents people and tools read: docs/openapi.json (the OpenAPI 3.1
document for the models cdk.json serves) and docs/api.md (the same, as a page).

    inferline api-docs            rewrite both (make api-docs)
    inferline api-docs --check    exit 1 if either differs from the contract (a test does this)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inferline import contract
from inferline.spec import load_spec
from local_runtime.config import REPO_ROOT, stack_settings

DOCS = REPO_ROOT / "docs"
OPENAPI_FILE = DOCS / "openapi.json"
PAGE_FILE = DOCS / "api.md"


def documents() -> dict[Path, str]:
    document = contract.openapi([load_spec(m) for m in stack_settings().models])
    return {OPENAPI_FILE: contract.dumps(document), PAGE_FILE: page(document)}


def write(check: bool = False) -> list[Path]:
    """The files that differ from the contract (rewritten unless `check`)."""
    stale = []
    for path, text in documents().items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
            if not check:
                path.write_text(text, encoding="utf-8")
    return stale


def page(document: dict[str, Any]) -> str:
    """A Markdown page: each route with its body fields and answers, then the error shape."""
    schemas = document["components"]["schemas"]
    lines = [
        "# The inferline API",
        "",
        "Generated from the API contract (`functions/inferline/contract.py`) by `make api-docs`; "
        "do not edit. The machine-readable form is [openapi.json](openapi.json), also served at "
        f"`GET {contract.OPENAPI_PATH}`.",
        "",
        document["info"]["description"],
        "",
        "| Method | Path | What it does | Answers |",
        "|---|---|---|---|",
    ]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            answers = ", ".join(operation["responses"])
            lines.append(f"| {method.upper()} | `{path}` | {operation['summary']} | {answers} |")
    for path, item in document["paths"].items():
        for method, operation in item.items():
            lines += ["", f"## {method.upper()} `{path}`", "", operation["summary"] + "."]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref")
            if ref:
                lines += ["", "Request body:", "", *_fields(_deref(ref, schemas), schemas)]
            success = [(s, r) for s, r in operation["responses"].items() if s < "300"]
            for status, reply in success:
                ref = reply["content"]["application/json"]["schema"].get("$ref")
                if ref:
                    lines += ["", f"{status}:", "", *_fields(_deref(ref, schemas), schemas)]
    lines += ["", "## Errors", "", "Every 4xx and 5xx has this body:", "",
              *_fields(schemas["Error"], schemas), "", "| Status | Meaning |", "|---|---|"]  # fmt: skip
    for status, reply in document["components"]["responses"].items():
        lines.append(f"| {status} | {reply['description']} |")
    return "\n".join(lines) + "\n"


def _deref(ref: str, schemas: dict[str, Any]) -> dict[str, Any]:
    return schemas[ref.rsplit("/", 1)[1]]


def _fields(schema: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    """A field table; an object holding one list of objects (instances, feedback) shows the
    list's item fields too."""
    rows = ["| Field | Type | Required | Notes |", "|---|---|---|---|"]
    required = set(schema.get("required", []))
    nested = []
    for name, field in schema.get("properties", {}).items():
        rows.append(f"| `{name}` | {_type(field, schemas)} | {'yes' if name in required else ''} | "
                    f"{_notes(field)} |")  # fmt: skip
        items = field.get("items", {})
        if "$ref" in items:
            items = _deref(items["$ref"], schemas)
        if items.get("properties"):
            nested.append((name, items))
    out = rows
    for name, items in nested:
        out += ["", f"Each item of `{name}`:", "", *_fields(items, schemas)]
    return out


def _type(field: dict[str, Any], schemas: dict[str, Any]) -> str:
    if "$ref" in field:
        return field["$ref"].rsplit("/", 1)[1]
    if "anyOf" in field:
        return " or ".join(_type(f, schemas) for f in field["anyOf"])
    kind = field.get("type", "any")
    if kind == "array":
        return f"list of {_type(field.get('items', {}), schemas)}"
    return kind


def _notes(field: dict[str, Any]) -> str:
    if "anyOf" in field:
        field = {k: v for f in field["anyOf"] for k, v in f.items()} | field
    notes = []
    if "enum" in field:
        notes.append("one of " + ", ".join(f"`{v}`" for v in field["enum"]))
    words = (("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"), ("maxLength", "length ≤"),
             ("minItems", "items ≥"), ("maxItems", "items ≤"))  # fmt: skip
    for key, word in words:
        if key in field:
            notes.append(f"{word} {field[key]}")
    if field.get("description"):
        notes.append(field["description"])
    return "; ".join(notes).replace("|", "\\|")
