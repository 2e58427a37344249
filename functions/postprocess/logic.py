"""Postprocess: model scores to answers, and the prediction log written before answering."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from inferline.outputs import BadModelOutput, map_scores
from inferline.prediction_log import prediction_record, write_prediction_log
from inferline.spec import ModelSpec
from inferline.workflow import error_response, response


def postprocess(
    model: str,
    context: dict[str, Any],
    endpoint_body: str | bytes | dict,
    predictions_table,
    s3,
    bucket: str,
    load_spec: Callable[[str], ModelSpec],
    now: datetime | None = None,
) -> dict[str, Any]:
    """The Postprocess step's output: {"response": 200 with predictions} once logged, or a
    502 when the endpoint's answer does not fit the request."""
    spec = load_spec(model)
    ids = context["prediction_ids"]
    try:
        reply = endpoint_body if isinstance(endpoint_body, dict) else json.loads(endpoint_body)
        outputs = map_scores(spec, reply["classes"], reply["scores"], expected=len(ids))
        version = str(reply["model_version"])
    except (BadModelOutput, ValueError, KeyError, TypeError) as exc:
        return {"response": error_response(502, "bad_model_output", str(exc))}

    now = now or datetime.now(UTC)
    received = datetime.fromisoformat(context["received_at"])
    latency_ms = (now - received).total_seconds() * 1000
    records = [
        prediction_record(
            prediction_id=pid,
            request_id=context["request_id"],
            model=spec.name,
            model_version=version,
            created_at=now,
            ttl_days=spec.logging.prediction_ttl_days,
            request=request,
            features=features,
            entity_known=known,
            output=output,
            latency_ms=latency_ms,
            client=context.get("client"),
        )
        for pid, request, features, known, output in zip(
            ids,
            context["requests"],
            context["features"],
            context["entity_known"],
            outputs,
            strict=True,
        )
    ]
    write_prediction_log(predictions_table, s3, bucket, records)
    body = {
        "model": spec.name,
        "model_version": version,
        "predictions": [
            {"prediction_id": pid, **out} for pid, out in zip(ids, outputs, strict=True)
        ],
    }
    return {"response": response(200, body)}
