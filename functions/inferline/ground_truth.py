"""Ground truth: the actual outcome of a prediction, stored beside its log record.

The join is by prediction_id: the actual is written onto the prediction's DynamoDB item and
as a line of one JSON Lines object per request and model under ground-truth/ (partitioned by
the date it arrived), so monitoring and retraining read a window of ground truth in a few
large reads. Each item of a feedback request gets its own status; one unknown id never fails
the others, and repeating a request changes nothing.

Both stores agree, however many callers send feedback for one prediction at once. Every
write carries a sequence (its time, then the request and the item: later writes sort later),
and the order of writes is:
  1. DynamoDB decides, in one conditional update: the actual is set (with its sequence, and an
     `actual_unlogged` marker naming it) only if it differs from the item's and its sequence
     is newer than the item's. Otherwise nothing is written: the same actual is "unchanged",
     an older sequence "superseded" (a newer actual won).
  2. S3 logs exactly the writes DynamoDB accepted, each with its sequence; readers keep each
     id's line with the greatest sequence (latest_actuals), which is DynamoDB's actual.
  3. The marker is removed, if it still names this write.
If the S3 write fails, each accepted write is taken back (the item restored, if no newer write
came since) and the request fails: both stores or neither. A writer killed between 1 and 2
(a Lambda timeout) leaves its marker: feedback for that prediction after MARKER_GRACE (longer
than any writer lives) logs the missing line. So a repeat is a no-op, concurrent repeats write
once, and concurrent different actuals end as the newest in both stores.

Batch predictions have no item of their own: their id names (job, chunk, row), and the
chunk's index item says whether that row was predicted, by which version, when. Their first
feedback creates the item (the prediction's model, version, times and the actual), so later
feedback on the same id reads like feedback on an online prediction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
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
MARKER = "actual_unlogged"  # names the sequence of an accepted actual not yet logged to S3
# A marker this old belongs to a writer that is gone (the feedback Lambda times out in 20 s).
MARKER_GRACE = timedelta(seconds=60)
INDEX_PROJECTION = ("prediction_id", "record_type", "job_id", "chunk", "model", "created_at", "expires_at",
                    "first_row", "versions")  # fmt: skip
_FROM_INDEX = "from_chunk_index"  # a batch prediction found through its chunk's index item

RECORDED = "recorded"  # first ground truth for this prediction
UPDATED = "updated"  # a different actual replaced an earlier one
UNCHANGED = "unchanged"  # the same actual was already recorded: nothing written
SUPERSEDED = "superseded"  # a newer actual for this prediction won (sent at the same time)
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
    request = uuid.uuid4().hex
    predictions = _get_predictions(table, [i["prediction_id"] for i in items])
    results = []
    to_log: list[tuple[dict, Any, str, str]] = []  # (prediction, actual, sequence, recorded_at)
    taken: list[tuple[dict, str, dict]] = []  # (prediction, sequence, the item before): to take back
    for index, item in enumerate(items):
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
        sequence = f"{now.isoformat(timespec='microseconds')}#{request}#{index:05d}"
        outcome, item_now = _claim(table, prediction, value, sequence, now)
        if outcome == CLAIMED:
            to_log.append((prediction, value, sequence, now.isoformat()))
            taken.append((dict(prediction), sequence, item_now))
            status = RECORDED if item_now.get("actual") is None else UPDATED
            results.append({"prediction_id": pid, "status": status, "actual": value})
            prediction.pop(_FROM_INDEX, None)  # the item exists now: a later item of this request updates it
            continue
        if outcome == GONE:
            results.append({"prediction_id": pid, "status": UNKNOWN})
            continue
        if _abandoned(item_now, now):
            # an earlier writer's accepted actual that never reached S3 (it was killed): log it
            to_log.append((prediction, item_now["actual"], item_now[MARKER],
                           item_now.get("actual_recorded_at") or now.isoformat()))  # fmt: skip
        status = UNCHANGED if outcome == SAME else SUPERSEDED
        results.append({"prediction_id": pid, "status": status, "actual": item_now.get("actual")})
    try:
        _log(s3, bucket, to_log, request, now)
    except Exception:
        for prediction, sequence, before in taken:
            _take_back(table, prediction, sequence, before)
        raise
    for prediction, _, sequence, _ in to_log:
        _clear_marker(table, prediction["prediction_id"], sequence)
    return results


def _abandoned(item: dict, now: datetime) -> bool:
    """The item's actual was accepted long enough ago that its writer must be gone, and it never
    reached S3."""
    marker = item.get(MARKER)
    if not marker or marker != item.get("actual_seq"):
        return False
    try:
        accepted = datetime.fromisoformat(str(marker).split("#", 1)[0])
    except ValueError:
        return True
    return now - accepted > MARKER_GRACE


def ground_truth_line(prediction: dict, actual: Any, sequence: str, recorded_at: str) -> dict[str, Any]:
    return {
        "prediction_id": prediction["prediction_id"],
        "model": prediction["model"],
        "model_version": prediction.get("model_version"),
        "predicted_at": prediction["created_at"],
        "actual": actual,
        "recorded_at": recorded_at,
        "seq": sequence,
    }


CLAIMED, SAME, NEWER, GONE = "claimed", "same", "newer", "gone"
# The item takes the actual only if it changes it and is the newest write.
_CHANGES = (
    "(attribute_not_exists(actual) OR actual <> :a) AND (attribute_not_exists(actual_seq) OR actual_seq < :q)"
)


def _claim(table, prediction: dict, actual: Any, sequence: str, now: datetime) -> tuple[str, dict]:
    """Step 1: (CLAIMED, the item before), or why not (SAME, NEWER: the item as it is; GONE)."""
    values = {":a": to_dynamo(actual), ":q": sequence, ":t": now.isoformat()}
    update = f"SET actual = :a, actual_seq = :q, actual_recorded_at = :t, {MARKER} = :q"
    names: dict[str, str] = {}
    if prediction.get(_FROM_INDEX):  # a batch prediction's first feedback creates its item
        update += ", model = :m, model_version = :v, created_at = :c, expires_at = :e, #s = :s"
        names = {"#s": "source"}
        values |= {
            ":m": prediction["model"], ":v": prediction["model_version"], ":c": prediction["created_at"],
            ":e": prediction["expires_at"], ":s": prediction["source"],
        }  # fmt: skip
        condition = f"attribute_not_exists(prediction_id) OR ({_CHANGES})"
    else:
        condition = f"attribute_exists(prediction_id) AND {_CHANGES}"
    try:
        reply = table.update_item(
            Key={"prediction_id": prediction["prediction_id"]},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            **({"ExpressionAttributeNames": names} if names else {}),
            ReturnValues="ALL_OLD",
        )
        return CLAIMED, from_dynamo(reply.get("Attributes") or {})
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
    key = {"prediction_id": prediction["prediction_id"]}
    current = table.get_item(Key=key, ConsistentRead=True).get("Item")
    if current is None:  # the item expired between the read and the write
        return GONE, {}
    current = from_dynamo(current)
    return (SAME if str(current.get("actual")) == str(actual) else NEWER), current


def _log(s3, bucket: str, entries: list[tuple[dict, Any, str, str]], request: str, now: datetime) -> None:
    """Step 2: the accepted writes as lines, one object per model (a failure fails the request:
    its markers stay for the retry)."""
    by_model: dict[str, list[str]] = {}
    for prediction, actual, sequence, recorded_at in entries:
        line = json.dumps(ground_truth_line(prediction, actual, sequence, recorded_at), separators=(",", ":"))
        by_model.setdefault(prediction["model"], []).append(line + "\n")
    for model, lines in by_model.items():
        s3.put_object(
            Bucket=bucket,
            Key=ground_truth_key(model, now, request),
            Body="".join(lines).encode(),
            ContentType="application/x-ndjson",
        )


def _take_back(table, prediction: dict, sequence: str, before: dict) -> None:
    """Undo an accepted write whose line could not be logged, unless a newer write came since
    (best effort: if this fails too, the marker stays for the grace-period repair)."""
    only_this = {"ConditionExpression": "actual_seq = :q", "ExpressionAttributeValues": {":q": sequence}}
    key = {"prediction_id": prediction["prediction_id"]}
    try:
        if not before:  # the write created the item (a batch prediction's first feedback)
            table.delete_item(Key=key, **only_this)
            return
        fields = ("actual", "actual_seq", "actual_recorded_at")
        restore = [n for n in fields if n in before]
        update = "REMOVE " + ", ".join([MARKER, *(n for n in fields if n not in before)])
        if restore:
            update = "SET " + ", ".join(f"{n} = :{n}" for n in restore) + " " + update
            only_this["ExpressionAttributeValues"] |= {f":{n}": to_dynamo(before[n]) for n in restore}
        table.update_item(Key=key, UpdateExpression=update, **only_this)
    except ClientError:
        pass


def _clear_marker(table, prediction_id: str, sequence: str) -> None:
    """Step 3: the write is logged; a newer write's marker is left for it to clear."""
    try:
        table.update_item(
            Key={"prediction_id": prediction_id},
            UpdateExpression=f"REMOVE {MARKER}",
            ConditionExpression=f"{MARKER} = :q",
            ExpressionAttributeValues={":q": sequence},
        )
    except ClientError as exc:
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
    """Each prediction's newest ground-truth line: the greatest sequence (lines written before
    sequences existed sort by recorded_at, which every sequence starts with); a tie keeps the
    later line."""
    latest: dict[str, dict[str, Any]] = {}
    for line in lines:
        pid = line.get("prediction_id")
        seen = latest.get(pid)
        if seen is None or line_order(line) >= line_order(seen):
            latest[pid] = line
    return latest


def line_order(line: dict[str, Any]) -> str:
    return str(line.get("seq") or line.get("recorded_at") or "")
