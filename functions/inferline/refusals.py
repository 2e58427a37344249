"""The refusal log: requests (and batch rows) refused for invalid input, counted by field and
problem, for monitoring's data quality ("which field do callers get wrong, and how often").

One JSON Lines object per refused online request, and one per batch chunk with refused rows,
under refusals/model=<m>/dt=<date>/ in the data bucket. A record names fields and problems,
never a value: a refused value may be anything a caller sent, PII included. A field name the
spec does not know is user input too, so it is recorded as UNKNOWN_FIELD, not by its name.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from inferline.resources import refusal_log_key
from inferline.spec import ModelSpec

UNKNOWN_FIELD = "(unknown field)"
# The JSON types validation names ("must be a string, got a number"): not values.
_TYPE_WORDS = {"an object", "a list", "a string", "a boolean", "null", "a number"}
_GOT = re.compile(r"[,;] got (.*)$", re.S)


def problem_text(problem: str) -> str:
    """A validation problem without the value it quotes: "must be one of a, b; got 'x'" ->
    "must be one of a, b"; "must be an integer, got 2.5" -> "must be an integer"; a body that
    is not JSON -> "request body is not valid JSON" (the parser's message quotes the body)."""
    if problem.startswith("request body is not valid JSON"):
        return "request body is not valid JSON"
    match = _GOT.search(problem)
    if match and match.group(1) not in _TYPE_WORDS:
        return problem[: match.start()]
    return problem


def field_name(spec: ModelSpec, field: str | None) -> str | None:
    if field is None or field in spec.request.fields or field == "instances":
        return field
    return UNKNOWN_FIELD


def count_problems(spec: ModelSpec, problems: Iterable[tuple[str | None, str]]) -> Counter:
    """(field, problem) pairs with field names checked and values taken out, counted."""
    return Counter((field_name(spec, field), problem_text(problem)) for field, problem in problems)


def refusal_record(
    *,
    spec: ModelSpec,
    source: str,
    request_id: str,
    created_at: datetime,
    status: int,
    error: str,
    refused: int,
    problems: Counter,
) -> dict[str, Any]:
    """One refused request (online: refused=1) or a chunk's refused rows (batch: refused=rows)."""
    return {
        "model": spec.name,
        "source": source,
        "request_id": request_id,
        "created_at": created_at.isoformat(),
        "status": status,
        "error": error,
        "refused": refused,
        "problems": [
            {"field": field, "problem": problem, "count": count}
            for (field, problem), count in sorted(problems.items(), key=lambda kv: (-kv[1], str(kv[0])))
        ],
    }


def write_refusal(s3, bucket: str, record: dict[str, Any]) -> str:
    """The record as its own object (a retry rewrites the same key); returns the key."""
    key = refusal_log_key(record["model"], datetime.fromisoformat(record["created_at"]), record["request_id"])
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=(json.dumps(record, separators=(",", ":")) + "\n").encode(),
        ContentType="application/x-ndjson",
    )
    return key
