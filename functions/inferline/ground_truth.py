"""Ground truth: the actual outcome of a prediction, stored beside its log record.

The join is by prediction_id: the actual is written onto the prediction's DynamoDB item and
as a line of one JSON Lines object per request and model under ground-truth/ (partitioned by
the date it arrived), so monitoring and retraining read a window of ground truth in a few
large reads. Each item of a feedback request gets its own status; one unknown id never fails
the others, and repeating a request changes nothing (an unchanged actual is not written).
A correction is a newer line for the same id: readers keep each id's newest recorded_at
(latest_actuals).

Batch predictions have no item of their own: their id names (job, chunk, row), and the
chunk's index item says whether that row was predicted, by which version, when. Their first
feedback creates the item (the prediction's model, version, times and the actual), so later
feedback on the same id reads like feedback on an online prediction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from inferline.prediction_log import (
    batch_index_key,
    batch_prediction,
    from_dynamo,
    parse_batch_prediction_id,
    to_dynamo,
)
from inferline.resources import ground_truth_key
from inferline.spec import ModelSpec, UnknownModel

BATCH_GET_LIMIT = 100
MAX_UNPROCESSED_RETRIES = 5
PROJECTION = ("prediction_id", "model", "model_version", "created_at", "actual", "record_type")
INDEX_PROJECTION = ("prediction_id", "record_type", "job_id", "chunk", "model", "created_at", "expires_at",
                    "first_row", "versions")  # fmt: skip
_FROM_INDEX = "from_chunk_index"  # a batch prediction found through its chunk's index item

RECORDED = "recorded"  # first ground truth for this prediction
UPDATED = "updated"  # a different actual replaced an earlier one
UNCHANGED = "unchanged"  # the same actual was already recorded: nothing written
UNKNOWN = "unknown_prediction_id"
INVALID = "invalid_actual"


def record_feedback(
    table,
    s3,
    bucket: str,
    items: list[dict[str, Any]],
    load_spec: Callable[[str], ModelSpec],
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Record each {"prediction_id", "actual"}; returns one result per item, in order."""
    now = now or datetime.now(UTC)
    predictions = _get_predictions(table, [i["prediction_id"] for i in items])
    results = []
    changed: list[tuple[dict, Any]] = []  # (prediction, actual), in request order
    for item in items:
        pid, actual = item["prediction_id"], item["actual"]
        prediction = predictions.get(pid)
        if prediction is None:
            results.append({"prediction_id": pid, "status": UNKNOWN})
            continue
        try:
            spec = load_spec(prediction["model"])
        except UnknownModel:
            spec = None
        value = spec.class_for(actual) if spec else None
        if value is None:
            classes = spec.target.classes if spec else []
            labels = [spec.label_for(c) for c in classes] if spec else []
            problem = f"actual must be one of the classes {classes} or labels {labels}"
            results.append({"prediction_id": pid, "status": INVALID, "problem": problem})
            continue
        previous = prediction.get("actual")
        if previous is not None and str(previous) == str(value):
            results.append({"prediction_id": pid, "status": UNCHANGED, "actual": value})
            continue
        changed.append((dict(prediction), value))
        status = RECORDED if previous is None else UPDATED
        prediction["actual"] = value  # a later item with the same id sees this one
        results.append({"prediction_id": pid, "status": status, "actual": value})
    _store(table, s3, bucket, changed, now)
    return results


def ground_truth_line(prediction: dict, actual: Any, now: datetime) -> dict[str, Any]:
    return {
        "prediction_id": prediction["prediction_id"],
        "model": prediction["model"],
        "model_version": prediction.get("model_version"),
        "predicted_at": prediction["created_at"],
        "actual": actual,
        "recorded_at": now.isoformat(),
    }


def _store(table, s3, bucket: str, changed: list[tuple[dict, Any]], now: datetime) -> None:
    """S3 first, one object per model: if a DynamoDB update then fails, a retry finds no new
    actual on that item and writes its line again (readers keep one line per id), so nothing
    is lost."""
    by_model: dict[str, list[str]] = {}
    for prediction, actual in changed:
        line = json.dumps(ground_truth_line(prediction, actual, now), separators=(",", ":"))
        by_model.setdefault(prediction["model"], []).append(line + "\n")
    for model, lines in by_model.items():
        s3.put_object(
            Bucket=bucket,
            Key=ground_truth_key(model, now, uuid.uuid4().hex),
            Body="".join(lines).encode(),
            ContentType="application/x-ndjson",
        )
    for prediction, actual in changed:
        _update_item(table, prediction, actual, now)


def _update_item(table, prediction: dict, actual: Any, now: datetime) -> None:
    if prediction.get(_FROM_INDEX):
        # a batch prediction's first feedback: its item is created, expiring with its log
        table.update_item(
            Key={"prediction_id": prediction["prediction_id"]},
            UpdateExpression=(
                "SET model = :m, model_version = :v, created_at = :c, expires_at = :e, #s = :s, "
                "actual = :a, actual_recorded_at = :t"
            ),
            ExpressionAttributeNames={"#s": "source"},
            ExpressionAttributeValues={
                ":m": prediction["model"],
                ":v": prediction["model_version"],
                ":c": prediction["created_at"],
                ":e": prediction["expires_at"],
                ":s": prediction["source"],
                ":a": to_dynamo(actual),
                ":t": now.isoformat(),
            },
        )
        return
    try:
        table.update_item(
            Key={"prediction_id": prediction["prediction_id"]},
            UpdateExpression="SET actual = :a, actual_recorded_at = :t",
            ConditionExpression="attribute_exists(prediction_id)",
            ExpressionAttributeValues={":a": to_dynamo(actual), ":t": now.isoformat()},
        )
    except ClientError as exc:  # the item expired between the read and the write
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


def _get_predictions(table, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each id's prediction: its item, or for a batch id without one, its chunk's index."""
    found = {
        key: item
        for key, item in _batch_get(table, list(dict.fromkeys(ids)), PROJECTION).items()
        if not item.get("record_type")  # a chunk's index item is not a prediction
    }
    batch_ids = {i: parse_batch_prediction_id(i) for i in ids if i not in found}
    chunks = {i: batch_index_key(p[0], p[1]) for i, p in batch_ids.items() if p is not None}
    if chunks:
        indexes = _batch_get(table, list(dict.fromkeys(chunks.values())), INDEX_PROJECTION)
        for pid, key in chunks.items():
            prediction = batch_prediction(indexes[key], pid) if key in indexes else None
            if prediction is not None:
                found[pid] = prediction | {_FROM_INDEX: True}
    return found


def _batch_get(table, keys: list[str], projection: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    client = table.meta.client
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        request = {
            table.name: {
                "Keys": [{"prediction_id": k} for k in keys[start : start + BATCH_GET_LIMIT]],
                "ProjectionExpression": ", ".join(f"#{a}" for a in projection),
                "ExpressionAttributeNames": {f"#{a}": a for a in projection},
            }
        }
        for _ in range(MAX_UNPROCESSED_RETRIES):
            reply = client.batch_get_item(RequestItems=request)
            for item in reply["Responses"].get(table.name, []):
                found[item["prediction_id"]] = from_dynamo(item)
            request = reply.get("UnprocessedKeys") or {}
            if not request:
                break
        else:
            raise RuntimeError("DynamoDB left keys unprocessed after retries")
    return found


def latest_actuals(lines: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each prediction's newest ground-truth line (by recorded_at; a tie keeps the later line)."""
    latest: dict[str, dict[str, Any]] = {}
    for line in lines:
        pid = line.get("prediction_id")
        seen = latest.get(pid)
        if seen is None or str(line.get("recorded_at", "")) >= str(seen.get("recorded_at", "")):
            latest[pid] = line
    return latest
