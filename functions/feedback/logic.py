"""Feedback: ground truth for earlier predictions, joined to them by prediction_id."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from inferline.boundary import BadRequest, parse_json, require_json
from inferline.contract import FeedbackRequest
from inferline.ground_truth import record_feedback
from inferline.spec import ModelSpec
from inferline.workflow import error_response, response


def feedback(
    body: str | None,
    predictions_table,
    s3,
    bucket: str,
    load_spec: Callable[[str], ModelSpec],
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """200 with one result per item (recorded, updated, unchanged, unknown_prediction_id,
    invalid_actual), 400 naming each malformed item and field, or 415 for a body that is not JSON."""
    try:
        require_json(headers)
    except BadRequest as exc:
        return error_response(exc.status, exc.error, exc.message)
    if not body or not body.strip():
        return error_response(400, "invalid_request", 'expected {"feedback": [{"prediction_id", "actual"}]}')
    try:
        request = FeedbackRequest.model_validate(parse_json(body))
    except BadRequest as exc:
        return response(exc.status, {"error": exc.error, "message": exc.message, "details": exc.details()})
    except ValidationError as exc:
        details = []
        for err in exc.errors():
            loc = list(err["loc"])
            index = loc[1] if len(loc) > 1 and loc[0] == "feedback" and isinstance(loc[1], int) else None
            field = str(loc[2]) if index is not None and len(loc) > 2 else ".".join(map(str, loc))
            details.append({"instance": index, "field": field or None, "problem": err["msg"]})
        return response(
            400, {"error": "invalid_request", "message": "malformed feedback", "details": details}
        )
    results = record_feedback(
        predictions_table, s3, bucket, [i.model_dump() for i in request.feedback], load_spec
    )
    return response(200, {"results": results, "summary": dict(Counter(r["status"] for r in results))})
