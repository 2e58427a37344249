"""Preprocess: turn a predict request into the exact records the model will score.

Validates every instance against the spec (all problems at once), redacts PII before the
request travels on, fetches stored features in one batched read, and mints a prediction_id
per instance. The raw body is not passed on: the state after this step holds no PII. A
refused request is counted in the refusal log by field and problem (inferline.refusals).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from inferline.boundary import BadRequest, require_json
from inferline.features import get_features
from inferline.redaction import redact
from inferline.refusals import count_problems, refusal_record
from inferline.spec import ModelSpec, UnknownModel, available_models
from inferline.validation import InvalidRequest, parse_instances, validate_instances
from inferline.workflow import MAX_BODY_BYTES, error_response, response


def preprocess(
    model: str,
    body: str | None,
    request_id: str,
    features_table,
    load_spec: Callable[[str], ModelSpec],
    log_refusal: Callable[[dict[str, Any]], None] | None = None,
    headers: dict[str, Any] | None = None,
    client: str | None = None,
) -> dict[str, Any]:
    """The Preprocess step's output: {"valid": true, "endpoint_body", "context"} or
    {"valid": false, "response"} with a 4xx that names every problem (and, for a model that
    exists, the refusal given to `log_refusal`)."""
    started = time.time()
    try:
        require_json(headers)  # before the model: API Gateway answers 415 before any route's logic
    except BadRequest as exc:
        return invalid(error_response(exc.status, exc.error, exc.message))

    def refuse(status: int, error: str, problems: list[tuple[str | None, str]], reply: dict) -> dict:
        if log_refusal is not None:
            log_refusal(
                refusal_record(
                    spec=spec, source="online", request_id=request_id,
                    created_at=datetime.fromtimestamp(started, UTC), status=status, error=error,
                    refused=1, problems=count_problems(spec, problems),
                )  # fmt: skip
            )
        return invalid(reply)

    try:
        spec = load_spec(model)
    except UnknownModel:
        return invalid(
            error_response(
                404, "unknown_model", f"no model named '{model}'", models=available_models()
            )
        )
    if body is not None and len(body.encode()) > MAX_BODY_BYTES:
        message = f"request body is over {MAX_BODY_BYTES} bytes"
        return refuse(413, "payload_too_large", [(None, message)],
                      error_response(413, "payload_too_large", message))  # fmt: skip
    try:
        instances = validate_instances(spec, parse_instances(body, spec))
    except InvalidRequest as exc:
        return refuse(
            exc.status,
            exc.error,
            [(p.field, p.problem) for p in exc.problems],
            response(
                exc.status,
                {
                    "error": exc.error,
                    "message": f"{len(exc.problems)} problem(s) in the request",
                    "details": [p.as_dict() for p in exc.problems],
                },
            ),
        )

    key = spec.entity.key
    stored = get_features(features_table, spec, (i[key] for i in instances))
    records, known = [], []
    for instance in instances:
        entity = stored[instance[key]]
        merged = instance | entity.values
        records.append({name: merged.get(name) for name in spec.model_inputs})
        known.append(entity.known)
    return {
        "valid": True,
        "model": spec.name,
        "endpoint_body": json.dumps({"instances": records}, separators=(",", ":")),
        "context": {
            "request_id": request_id,
            "model": spec.name,
            "client": client,
            "received_at": datetime.fromtimestamp(started, UTC).isoformat(),
            "prediction_ids": [str(uuid.uuid4()) for _ in instances],
            "requests": redact(spec, instances),
            "features": records,
            "entity_known": known,
        },
    }


def invalid(reply: dict[str, Any]) -> dict[str, Any]:
    return {"valid": False, "response": reply}
