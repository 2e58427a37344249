"""Request validation against a model spec: every problem in every instance, reported at once.

The online path (preprocess) and the batch path validate with the same functions, so a row
that the API refuses is refused by batch for the same reason, in the same words.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from inferline.boundary import BadRequest, parse_json
from inferline.spec import FieldSpec, ModelSpec, StoredFeatureSpec


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: which instance, which field, and what was expected."""

    instance: int | None
    field: str | None
    problem: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class InvalidRequest(ValueError):
    """The request cannot be scored; `problems` says why, `status` is the HTTP status to use."""

    def __init__(self, problems: list[Problem], status: int = 400, error: str = "invalid_request"):
        super().__init__("; ".join(p.problem for p in problems))
        self.problems = problems
        self.status = status
        self.error = error


# What the prediction log's DynamoDB items can hold: numbers of at most 38 digits, of magnitude
# 1e-130 to just under 1e126. A larger value is refused; a float nearer zero than 1e-130 is 0.
MAX_STORED_INT = 10**38 - 1
MAX_STORED_FLOAT = 1e125
MIN_STORED_FLOAT = 1e-130


def parse_instances(body: str | bytes | None, spec: ModelSpec) -> list[dict[str, Any]]:
    """The list of raw instances in a predict request body `{"instances": [...]}`: JSON every
    store accepts (inferline.boundary), in that shape."""
    if body is None or (isinstance(body, (str, bytes)) and not body.strip()):
        raise InvalidRequest([Problem(None, None, 'request body is empty; expected {"instances": [{...}]}')])
    try:
        payload = parse_json(body)
    except BadRequest as exc:
        found = [Problem(d["instance"], d["field"], d["problem"]) for d in exc.details()]
        raise InvalidRequest(found or [Problem(None, None, exc.message)]) from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidRequest(
            [Problem(None, "instances", 'expected a JSON object {"instances": [{...}, ...]}')]
        )
    extra = sorted(set(payload) - {"instances"})
    if extra:
        raise InvalidRequest([Problem(None, k, "unknown top-level field") for k in extra])
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidRequest([Problem(None, "instances", "must be a non-empty list of objects")])
    limit = spec.request.max_instances
    if len(instances) > limit:
        raise InvalidRequest(
            [Problem(None, "instances", f"has {len(instances)} items; at most {limit} per request")],
            status=413,
            error="too_many_instances",
        )
    return instances


def validate_instance(
    spec: ModelSpec, raw: Any, index: int | None = None
) -> tuple[dict[str, Any], list[Problem]]:
    """A clean copy of one instance (numbers normalised) and the problems found in it."""
    if not isinstance(raw, dict):
        return {}, [Problem(index, None, "must be a JSON object of field values")]
    fields = spec.request.fields
    clean: dict[str, Any] = {}
    problems = [Problem(index, name, "unknown field") for name in raw if name not in fields]
    for name, field in fields.items():
        value = raw.get(name)
        if value is None:
            if field.required:
                problems.append(Problem(index, name, "is required"))
            continue
        value, problem = check_value(field, value)
        if problem:
            problems.append(Problem(index, name, problem))
        else:
            clean[name] = value
    return clean, problems


def validate_instances(spec: ModelSpec, instances: list[Any]) -> list[dict[str, Any]]:
    """Clean instances, or InvalidRequest listing the problems of all of them."""
    cleaned, problems = [], []
    for i, raw in enumerate(instances):
        clean, found = validate_instance(spec, raw, i)
        cleaned.append(clean)
        problems.extend(found)
    if problems:
        raise InvalidRequest(problems)
    return cleaned


def check_value(field: FieldSpec | StoredFeatureSpec, value: Any) -> tuple[Any, str | None]:
    """The value normalised to the field's type, or a problem saying what was expected."""
    kind = field.type
    max_length = getattr(field, "max_length", None)
    allowed = getattr(field, "allowed", None)
    if kind == "string":
        if not isinstance(value, str):
            return value, f"must be a string, got {_json_type(value)}"
        if max_length is not None and len(value) > max_length:
            return value, f"must be at most {max_length} characters"
    elif kind == "bool":
        if not isinstance(value, bool):
            return value, f"must be true or false, got {_json_type(value)}"
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return (
                value,
                f"must be {'an integer' if kind == 'int' else 'a number'}, got {_json_type(value)}",
            )
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for any float: it was a crash
            finite = False
        if not finite:
            return value, "must be a finite number"
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                return value, f"must be an integer, got {value}"
            value = int(value)
            if abs(value) > MAX_STORED_INT:
                return value, "must have at most 38 digits"
        else:
            value = float(value)
            if abs(value) > MAX_STORED_FLOAT:
                return value, f"must be at most {MAX_STORED_FLOAT:g} in magnitude"
            if abs(value) < MIN_STORED_FLOAT:
                value = 0.0  # below what any store holds, and any feature's scale
        if field.min is not None and value < field.min:
            return value, f"must be >= {_num(field.min)}"
        if field.max is not None and value > field.max:
            return value, f"must be <= {_num(field.max)}"
    if allowed is not None and value not in allowed:
        return value, f"must be one of {', '.join(map(str, allowed))}; got {value!r}"
    return value, None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )
