"""The API's request boundary, shared by every handler: a JSON body (415 for any other media
type), parsed into values every store accepts (valid Unicode text, bounded nesting), or a 400
that names where it went wrong.

Python's json module accepts what no store does: a lone UTF-16 surrogate ("\\ud800") is a str
that DynamoDB, S3 metadata and SES refuse, and deep nesting ends in RecursionError. Both are
refused here, before anything is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 16  # the deepest body the API takes is 4 levels; this leaves room for mistakes
_SURROGATE = re.compile("[\ud800-\udfff]")
NOT_TEXT = "must be valid Unicode text (it holds a lone surrogate)"
SHOWN_PATHS = 10


class BadRequest(ValueError):
    """A body the API refuses: the HTTP status, an error code, a message, and the places at fault
    ([(path, problem)], a path being the keys and indexes from the top of the body)."""

    def __init__(self, status: int, error: str, message: str, places: list[tuple[tuple, str]] | None = None):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.places = places or []

    def details(self) -> list[dict[str, Any]]:
        """As the API's 400s list problems: {"instance", "field", "problem"}."""
        out = []
        for path, problem in self.places:
            instance = next((p for p in path if isinstance(p, int)), None)
            names = [str(p) for p in path if not isinstance(p, int)]
            out.append({"instance": instance, "field": names[-1] if names else None, "problem": problem})
        return out


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """A request header's value, whatever the case of its name."""
    wanted = name.lower()
    for key, value in (headers or {}).items():
        if str(key).lower() == wanted:
            return None if value is None else str(value)
    return None


def require_json(headers: Mapping[str, Any] | None) -> None:
    """415 unless the body is declared JSON (application/json or a +json type, any charset
    parameter). No Content-Type at all counts as JSON, as API Gateway treats it."""
    declared = header(headers, "Content-Type")
    if not declared or not declared.strip():
        return
    media = declared.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    message = f"the body must be JSON (Content-Type: application/json), not {media!r}"
    raise BadRequest(415, "unsupported_media_type", message)


def parse_json(body: str | bytes | None) -> Any:
    """The body's JSON value, or BadRequest (400) saying what is wrong with it."""
    if body is None or not (body.strip() if isinstance(body, (str, bytes)) else body):
        raise BadRequest(400, "invalid_request", "request body is empty; it must be a JSON object")
    try:
        value = json.loads(body, parse_constant=_not_a_number)
    except RecursionError:
        raise BadRequest(400, "invalid_request", f"the body nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, "invalid_request", f"request body is not valid JSON: {exc}") from None
    check_value(value)
    return value


def check_value(value: Any) -> None:
    """BadRequest unless every string (key or value) is valid Unicode text and the value nests at
    most MAX_DEPTH levels. Iterative: a deep value cannot exhaust the stack here."""
    places: list[tuple[tuple, str]] = []
    stack: list[tuple[tuple, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, (dict, list)) and len(path) >= MAX_DEPTH:  # this one is level len + 1
            raise BadRequest(400, "invalid_request", f"the body nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            if not _valid_text(item):
                places.append((path, NOT_TEXT))
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not _valid_text(key):
                    places.append(((*path, "(a key)"), NOT_TEXT))
                    key = key.encode("utf-8", "backslashreplace").decode()
                stack.append(((*path, key), inner))
        elif isinstance(item, list):
            stack.extend(((*path, i), inner) for i, inner in enumerate(item))
    if places:
        places.sort(key=lambda place: [str(p) for p in place[0]])
        raise BadRequest(400, "invalid_request", f"{len(places)} string(s) are not valid Unicode text",
                         places[:SHOWN_PATHS])  # fmt: skip


def _valid_text(text: str) -> bool:
    return text.isascii() or not _SURROGATE.search(text)


def _not_a_number(name: str) -> float:
    raise ValueError(f"{name} is not a valid JSON number")
