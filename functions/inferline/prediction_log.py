"""The prediction log: every prediction as one DynamoDB item (with a TTL, for lookups and the
feedback join) and as one line of a JSON Lines object in S3 (partitioned by model and date,
for retraining and monitoring to read in bulk). PII never reaches either: preprocess redacts
it before the request travels on.

Batch predictions are logged per chunk instead: one JSON Lines object (the same layout and
record fields) and one index item in the predictions table, keyed batch_index_key(job, chunk),
saying which rows of the chunk were predicted, by which model version, when. A batch
prediction id names its (job, chunk, row), so feedback finds it through that item.
"""

from __future__ import annotations

import json
import re
import zlib
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
    client: str | None = None,
) -> dict[str, Any]:
    return {
        "prediction_id": prediction_id,
        "request_id": request_id,
        "model": model,
        "model_version": model_version,
        "source": source,
        "client": client,  # the API client that asked (None: not through the API)
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

    Both stores or neither: S3 is written first, and if the DynamoDB write then fails the S3
    object is deleted before the error goes on (the request fails, and nothing of it is
    logged). A retry rewrites the same key and the same items, so repeating the call never
    duplicates a prediction.
    """
    first = records[0]
    key = prediction_log_key(first["model"], datetime.fromisoformat(first["created_at"]), first["request_id"])
    body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/x-ndjson")
    try:
        with table.batch_writer(overwrite_by_pkeys=["prediction_id"]) as batch:
            for record in records:
                batch.put_item(Item=to_dynamo(record))
    except Exception:
        s3.delete_object(Bucket=bucket, Key=key)  # items it did write are not predictions anyone got
        _delete_items(table, [r["prediction_id"] for r in records])
        raise
    return key


def _delete_items(table, ids: list[str]) -> None:
    """Take back what a failed batch write may have written (best effort: it may fail too)."""
    try:
        with table.batch_writer() as batch:
            for pid in ids:
                batch.delete_item(Key={"prediction_id": pid})
    except Exception:  # the original error is the one to report
        pass


def to_dynamo(value: Any) -> Any:
    """DynamoDB wants Decimal, not float; a float nearer zero than DynamoDB can hold (1e-130, a
    model's score can be) is stored as 0."""
    return json.loads(json.dumps(value), parse_float=_stored_decimal)


_SMALLEST = Decimal("1e-130")


def _stored_decimal(text: str) -> Decimal:
    number = Decimal(text)
    return Decimal(0) if number and abs(number) < _SMALLEST else number


def from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


# -- batch predictions --------------------------------------------------------------------------

BATCH_INDEX_TYPE = "batch_chunk"
_BATCH_ID = re.compile(r"^batch-(.+)-(\d{1,9})-(\d{1,12})$")


def batch_prediction_id(job_id: str, chunk: int, row: int) -> str:
    """The id of row `row` of a batch job (in chunk `chunk`): the same on every retry."""
    return f"batch-{job_id}-{chunk}-{row}"


def parse_batch_prediction_id(prediction_id: str) -> tuple[str, int, int] | None:
    """(job_id, chunk, row) of a batch prediction id; None for any other id."""
    match = _BATCH_ID.match(prediction_id)
    return (match.group(1), int(match.group(2)), int(match.group(3))) if match else None


def batch_index_key(job_id: str, chunk: int) -> str:
    """The predictions-table key of a chunk's index item ('#' is never in a prediction id)."""
    return f"batch-chunk#{job_id}#{chunk}"


def batch_index_item(
    *,
    job_id: str,
    chunk: int,
    model: str,
    created_at: datetime,
    ttl_days: int,
    log_key: str,
    first_row: int,
    rows_by_version: dict[str, list[int]],
) -> dict[str, Any]:
    """The index item of one chunk: which rows were predicted (a compressed bitmap from
    first_row, per model version), when, and where their log lines are. It expires with them."""
    versions = {}
    for version, rows in rows_by_version.items():
        bits = bytearray((max(rows) - first_row) // 8 + 1)
        for row in rows:
            offset = row - first_row
            bits[offset >> 3] |= 1 << (offset & 7)
        versions[version] = zlib.compress(bytes(bits))
    return {
        "prediction_id": batch_index_key(job_id, chunk),
        "record_type": BATCH_INDEX_TYPE,
        "job_id": job_id,
        "chunk": chunk,
        "model": model,
        "created_at": created_at.isoformat(),
        "expires_at": int((created_at + timedelta(days=ttl_days)).timestamp()),
        "log_key": log_key,
        "first_row": first_row,
        "versions": versions,
    }


def batch_prediction(index: dict[str, Any], prediction_id: str) -> dict[str, Any] | None:
    """The batch prediction `prediction_id` as its chunk's index item records it (model, model
    version, created_at, expires_at), or None when that row was not predicted."""
    parsed = parse_batch_prediction_id(prediction_id)
    if parsed is None or index.get("record_type") != BATCH_INDEX_TYPE:
        return None
    job_id, chunk, row = parsed
    if index.get("job_id") != job_id or int(index.get("chunk", -1)) != chunk:
        return None
    offset = row - int(index["first_row"])
    if offset < 0:
        return None
    for version, packed in (index.get("versions") or {}).items():
        bits = zlib.decompress(bytes(getattr(packed, "value", packed)))
        if offset >> 3 < len(bits) and bits[offset >> 3] >> (offset & 7) & 1:
            return {
                "prediction_id": prediction_id,
                "model": index["model"],
                "model_version": version,
                "created_at": index["created_at"],
                "expires_at": int(index["expires_at"]),
                "source": "batch",
            }
    return None
