"""Batch job state: one DynamoDB item per job, changed only by conditional, atomic updates.

Item (key job_id): model, email (needed to send the mail; never logged), source_key,
status (awaiting_upload | splitting | running | succeeded | failed), total_chunks, columns
(the uploaded header, for the results file), started_at (when it started running: the time
its batch predictions are logged at, the same for every chunk and every retry),
chunks_done, done_chunks (number set of chunk indexes), rows_ok, rows_failed,
failure_reason, outputs (kind -> key), created_at, updated_at, finished_at, notified_at,
expires_at (TTL).

Every transition names the states it may start from, so a redelivered message or a second
worker racing the first can never move a job backwards, count a chunk twice, or finish a
job twice. The API creates and reads jobs with create_job / get_job; the workers use the rest.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

AWAITING_UPLOAD = "awaiting_upload"
SPLITTING = "splitting"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
FINAL = (SUCCEEDED, FAILED)

# How long a job item (and the TTL on it) outlives its creation.
JOB_TTL_DAYS = 30

# Direct uploads (no job created by the API) get a job id derived from the object, so a
# redelivered S3 event finds the job the first delivery made instead of starting another.
_UPLOAD_NAMESPACE = uuid.UUID("5b0e0f4e-6a0e-4d8e-9a57-2f0b6c8d1a11")


def _now(now: datetime | None = None) -> datetime:
    return now or datetime.now(UTC)


def upload_job_id(key: str, etag: str) -> str:
    """The job id of a file uploaded without a job: the same for the same object version."""
    return str(uuid.uuid5(_UPLOAD_NAMESPACE, f"{key}\n{etag.strip(chr(34))}"))


def create_job(
    table,
    model: str,
    email: str | None,
    job_id: str | None = None,
    *,
    source_key: str | None = None,
    file_name: str | None = None,
    client: str | None = None,
    status: str = AWAITING_UPLOAD,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A new job item (status awaiting_upload unless told otherwise); written only if no job
    with that id exists, else FileExistsError. Returns the item as stored."""
    at = _now(now)
    item: dict[str, Any] = {
        "job_id": job_id or str(uuid.uuid4()),
        "model": model,
        "status": status,
        "chunks_done": 0,
        "rows_ok": 0,
        "rows_failed": 0,
        "created_at": at.isoformat(),
        "updated_at": at.isoformat(),
        "expires_at": int((at + timedelta(days=JOB_TTL_DAYS)).timestamp()),
    }
    if email:
        item["email"] = email
    if source_key:
        item["source_key"] = source_key
    if client:  # the API client that submitted it (a direct upload to S3 has none)
        item["client"] = client
    if file_name:  # the name the user knows the file by (the upload key is the job id)
        item["file_name"] = file_name
    try:
        table.put_item(Item=item, ConditionExpression="attribute_not_exists(job_id)")
    except ClientError as exc:
        if _conditional(exc):
            raise FileExistsError(item["job_id"]) from None
        raise
    return item


def get_job(table, job_id: str) -> dict[str, Any] | None:
    """The job item with numbers as ints (done_chunks as a sorted list), or None."""
    item = table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
    return _plain(item) if item else None


def start_splitting(table, job_id: str, source_key: str, now: datetime | None = None) -> bool:
    """awaiting_upload (or splitting, after a crashed split) -> splitting; False when the job
    is already past splitting, so a redelivered upload event is not split again."""
    return _update(
        table,
        job_id,
        "SET #s = :splitting, source_key = :key, updated_at = :now",
        "#s IN (:awaiting, :splitting)",
        {
            ":splitting": SPLITTING,
            ":awaiting": AWAITING_UPLOAD,
            ":key": source_key,
            ":now": _now(now).isoformat(),
        },
    )


def start_running(
    table,
    job_id: str,
    total_chunks: int,
    columns: list[str],
    source_etag: str = "",
    now: datetime | None = None,
) -> bool:
    """splitting -> running with total_chunks, the file's columns (for the results header) and
    the ETag of the object version planned (every chunk reads that version or fails the job)
    set in one update; False if the job is not splitting."""
    return _update(
        table,
        job_id,
        "SET #s = :running, total_chunks = :total, #c = :columns, source_etag = :etag, "
        "updated_at = :now, started_at = :now",
        "#s = :splitting",
        {
            ":running": RUNNING,
            ":splitting": SPLITTING,
            ":total": total_chunks,
            ":columns": columns,
            ":etag": source_etag,
            ":now": _now(now).isoformat(),
        },
    )


def mark_chunk_done(
    table, job_id: str, chunk: int, rows_ok: int, rows_failed: int, now: datetime | None = None
) -> dict[str, Any] | None:
    """Count a chunk once: adds its index to done_chunks and its row counts, atomically, only
    if the index is not there yet and the job is running. Returns the job after the update,
    or None when the chunk was already counted (or the job is not running)."""
    try:
        reply = table.update_item(
            Key={"job_id": job_id},
            UpdateExpression=(
                "ADD done_chunks :chunk_set, chunks_done :one, rows_ok :ok, rows_failed :failed "
                "SET updated_at = :now"
            ),
            ConditionExpression="#s = :running AND NOT contains(done_chunks, :chunk)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":chunk_set": {chunk},
                ":chunk": chunk,
                ":one": 1,
                ":ok": rows_ok,
                ":failed": rows_failed,
                ":running": RUNNING,
                ":now": _now(now).isoformat(),
            },
            ReturnValues="ALL_NEW",
        )
    except ClientError as exc:
        if _conditional(exc):
            return None
        raise
    return _plain(reply["Attributes"])


def is_complete(job: dict[str, Any]) -> bool:
    """Every chunk counted (a job with zero chunks is never running)."""
    total = job.get("total_chunks")
    return total is not None and job.get("chunks_done", 0) >= total


def mark_succeeded(table, job_id: str, outputs: dict[str, str], now: datetime | None = None) -> bool:
    """running -> succeeded once every chunk is counted; only one caller gets True."""
    at = _now(now).isoformat()
    return _update(
        table,
        job_id,
        "SET #s = :succeeded, finished_at = :now, updated_at = :now, outputs = :outputs",
        "#s = :running AND chunks_done >= total_chunks",
        {":succeeded": SUCCEEDED, ":running": RUNNING, ":now": at, ":outputs": outputs},
    )


def mark_failed(table, job_id: str, reason: str, now: datetime | None = None) -> bool:
    """Any unfinished state -> failed with the reason; False when already finished."""
    at = _now(now).isoformat()
    return _update(
        table,
        job_id,
        "SET #s = :failed, failure_reason = :reason, finished_at = :now, updated_at = :now",
        "attribute_exists(job_id) AND NOT #s IN (:succeeded, :failed)",
        {":failed": FAILED, ":succeeded": SUCCEEDED, ":reason": reason, ":now": at},
    )


# A claim to send a job's email that is older than this was left by a sender that crashed.
NOTIFY_CLAIM_SECONDS = 300


def claim_notification(table, job_id: str, now: datetime | None = None) -> bool:
    """The right to send the job's email, taken by one caller at a time: False when it went
    out already or another caller is sending it now (its claim is younger than
    NOTIFY_CLAIM_SECONDS). A caller whose send fails gives it back (release_notification)."""
    at = _now(now)
    return _update(
        table,
        job_id,
        "SET notify_claimed_at = :now",
        "attribute_not_exists(notified_at) AND "
        "(attribute_not_exists(notify_claimed_at) OR notify_claimed_at < :stale)",
        {":now": at.isoformat(), ":stale": (at - timedelta(seconds=NOTIFY_CLAIM_SECONDS)).isoformat()},
        names=False,
    )


def release_notification(table, job_id: str) -> None:
    table.update_item(Key={"job_id": job_id}, UpdateExpression="REMOVE notify_claimed_at")


def mark_notified(table, job_id: str, now: datetime | None = None) -> bool:
    """Record that the job's email went out; False if it already had (a retry after a crash)."""
    return _update(
        table,
        job_id,
        "SET notified_at = :now",
        "attribute_not_exists(notified_at)",
        {":now": _now(now).isoformat()},
        names=False,
    )


def _update(table, job_id, expression, condition, values, names: bool = True) -> bool:
    """One conditional UpdateItem; False when the condition does not hold."""
    kwargs: dict[str, Any] = {
        "Key": {"job_id": job_id},
        "UpdateExpression": expression,
        "ConditionExpression": condition,
        "ExpressionAttributeValues": values,
    }
    if names:
        kwargs["ExpressionAttributeNames"] = {"#s": "status"}
        if "#c" in expression:
            kwargs["ExpressionAttributeNames"]["#c"] = "columns"
    try:
        table.update_item(**kwargs)
    except ClientError as exc:
        if _conditional(exc):
            return False
        raise
    return True


def _conditional(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def started_at(job: dict[str, Any]) -> datetime:
    """When the job started running (its creation, for a job from before started_at existed)."""
    return datetime.fromisoformat(job.get("started_at") or job["created_at"])
