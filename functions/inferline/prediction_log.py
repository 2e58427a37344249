"""The prediction log: every prediction as one DynamoDB item (with a TTL, for lookups and the
feedback join) and as one line of a JSON Lines object in S3 (partitioned by model and date,
for retraining and monitoring to read in bulk). PII never reaches either: preprocess redacts
it before the request travels on."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from inferline.resources import prediction_log_key


def prediction_record(
    *,
    prediction_id: str,
    request_id: str,
    model: str,
    model_version: str,
    created_at: datetime,
    ttl_days: int,
    request: dict[str, Any],
    features: dict[str, Any],
    entity_known: bool,
    output: dict[str, Any],
    latency_ms: float,
    source: str = "online",
) -> dict[str, Any]:
    return {
        "prediction_id": prediction_id,
        "request_id": request_id,
        "model": model,
        "model_version": model_version,
        "source": source,
        "created_at": created_at.isoformat(),
        "expires_at": int((created_at + timedelta(days=ttl_days)).timestamp()),
        "request": request,
        "features": features,
        "entity_known": entity_known,
        "output": output,
        "latency_ms": round(latency_ms, 3),
    }


def write_prediction_log(table, s3, bucket: str, records: list[dict[str, Any]]) -> str:
    """Write the records of one request to S3 (one object) and DynamoDB; returns the S3 key.

    S3 is written first: a retry after a partial failure rewrites the same key and the same
    items, so repeating the call never duplicates a prediction.
    """
    first = records[0]
    key = prediction_log_key(
        first["model"], datetime.fromisoformat(first["created_at"]), first["request_id"]
    )
    body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/x-ndjson")
    with table.batch_writer(overwrite_by_pkeys=["prediction_id"]) as batch:
        for record in records:
            batch.put_item(Item=to_dynamo(record))
    return key


def to_dynamo(value: Any) -> Any:
    """DynamoDB wants Decimal, not float."""
    return json.loads(json.dumps(value), parse_float=Decimal)


def from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value
