"""The batch jobs API: submit a job (an upload URL back), and follow it (counts, then links).

  POST /v1/models/{model}/batch-jobs {"email", "file_name"?, "size"?, "multipart"?}
      -> 201 {"job_id", "upload_method": "PUT", "upload_url", "upload_headers", "expires_at"}
      or, for a file of MULTIPART_THRESHOLD bytes or more (or "multipart": true, with "size"):
      -> 201 {"job_id", "upload_method": "multipart", "upload_id", "part_size", "parts":
              [{"part_number", "url"}], "complete_url", "complete_method": "POST", "expires_at"}
         PUT byte range [(n - 1) * part_size, n * part_size) of the file to part n's URL, keep
         each reply's ETag header, then POST <CompleteMultipartUpload> listing the parts and
         their ETags to complete_url: S3 assembles the object, and the job starts.
  GET  /v1/batch-jobs/{job_id}
      -> 200 {"job_id", "model", "status", counts..., "results_url", "errors_url" once done}
The email address is stored on the job to send the results to; it is never echoed back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from batch.recipients import check_address
from inferline.boundary import BadRequest, parse_json, require_json
from inferline.clients import Client
from inferline.jobs import SUCCEEDED, create_job, get_job
from inferline.resources import batch_output_key, upload_key
from inferline.spec import ModelSpec, UnknownModel, available_models
from inferline.workflow import error_response, response

FIELDS = {"email", "file_name", "size", "multipart"}
# Multipart uploads: files this large get one by default. S3 takes parts of 5 MiB to 5 GiB (the
# last may be smaller) and at most 10,000 of them; a reply lists at most MAX_PARTS URLs, so a
# file's part size grows with it (MAX_PARTS parts of 5 GiB: 5 TB).
MULTIPART_THRESHOLD = 64 * 1024 * 1024
MIN_PART_SIZE = 16 * 1024 * 1024
MAX_PARTS = 1_000
MAX_PART_SIZE = 5 * 1024**3
# Control characters (Unicode category Cc) and the line and paragraph separators.
_LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
PUBLIC_FIELDS = ("job_id", "model", "client", "status", "total_chunks", "chunks_done", "rows_ok",
                 "rows_failed", "failure_reason", "created_at", "updated_at", "finished_at")  # fmt: skip


def submit_job(
    model: str,
    body: str | None,
    jobs_table,
    s3,
    bucket: str,
    load_spec: Callable[[str], ModelSpec],
    upload_expiry_seconds: int,
    now: datetime | None = None,
    headers: dict[str, Any] | None = None,
    client: Client | None = None,
) -> dict[str, Any]:
    """201 with the upload instructions; the job records the client (the caller's API key's),
    whose recipients alone may get its results."""
    try:
        require_json(headers)
    except BadRequest as exc:
        return error_response(exc.status, exc.error, exc.message)
    if client is None:
        return error_response(403, "unknown_client", "this API key is not a configured client's; "
                              "batch jobs are sent only to a client's own recipients")  # fmt: skip
    try:
        spec = load_spec(model)
    except UnknownModel:
        return error_response(404, "unknown_model", f"no model named '{model}'", models=available_models())
    try:
        payload = parse_json(body)
    except BadRequest as exc:
        details = exc.details() or [{"instance": None, "field": None, "problem": exc.message}]
        return response(400, {"error": "invalid_request", "message": exc.message, "details": details})
    problem = _request_problem(payload)
    if problem:
        detail = {"instance": None, "field": problem[0], "problem": problem[1]}
        return response(
            400, {"error": "invalid_request", "message": "malformed batch job request", "details": [detail]}
        )
    size = payload.get("size")
    multipart = payload.get("multipart")
    if multipart is None:
        multipart = size is not None and size >= MULTIPART_THRESHOLD
    email, _ = check_address(payload["email"])
    if not client.may_email(email):
        allowed = ", ".join(client.recipients) or "none configured"
        message = f"client '{client.name}' may not send results to {email} (allowed: {allowed})"
        detail = {"instance": None, "field": "email", "problem": message}
        return response(400, {"error": "recipient_not_allowed", "message": message, "details": [detail]})
    job = create_job(jobs_table, spec.name, email, file_name=payload.get("file_name"), client=client.name)
    key = upload_key(spec.name, job["job_id"])
    expires = (now or datetime.now(UTC)) + timedelta(seconds=upload_expiry_seconds)
    body = {"job_id": job["job_id"], "model": spec.name, "status": job["status"]}
    if multipart:
        body |= _multipart(s3, bucket, key, size, upload_expiry_seconds)
    else:
        body |= {
            "upload_method": "PUT",
            # Single use (If-None-Match: *): a second PUT to the URL would replace the file
            # under a job that is already splitting or done; S3 refuses it with 412 instead.
            "upload_url": s3.generate_presigned_url(
                "put_object",
                Params={"Bucket": bucket, "Key": key, "ContentType": "text/csv", "IfNoneMatch": "*"},
                ExpiresIn=upload_expiry_seconds,
            ),
            "upload_headers": {"Content-Type": "text/csv", "If-None-Match": "*"},
        }
    fields = spec.request.fields
    body |= {
        "expires_at": expires.isoformat(),
        "columns": {"required": [n for n, f in fields.items() if f.required],
                    "optional": [n for n, f in fields.items() if not f.required]},
    }  # fmt: skip
    return response(201, body)


def _request_problem(payload: Any) -> tuple[str, str] | None:
    """(field, what was expected) for a malformed job request, or None."""
    expected = 'expected {"email": "you@example.com", "file_name": "optional.csv", "size": bytes}'
    if not isinstance(payload, dict):
        return "email", expected
    unknown = sorted(set(payload) - FIELDS)
    if unknown:
        return unknown[0], f"unknown field; {expected}"
    if "email" not in payload:
        return "email", f"is required; {expected}"
    _, why = check_address(payload["email"])
    if why:
        return "email", why
    file_name = payload.get("file_name")
    if file_name is not None and not (
        isinstance(file_name, str) and 0 < len(file_name) <= 255 and not _LINE_BREAKING.search(file_name)
    ):  # it goes into the email's subject: no line breaks or other control characters
        return "file_name", "a file name of 1 to 255 characters, without control characters"
    size, multipart = payload.get("size"), payload.get("multipart")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        return "size", "the file's size in bytes, a positive integer"
    if size is not None and size > MAX_PARTS * MAX_PART_SIZE:
        return "size", f"at most {MAX_PARTS * MAX_PART_SIZE} bytes"
    if multipart is not None and not isinstance(multipart, bool):
        return "multipart", "true or false"
    if multipart and size is None:
        return "size", "a multipart upload needs the file's size in bytes"
    return None


def _multipart(s3, bucket: str, key: str, size: int, expiry: int) -> dict[str, Any]:
    """A multipart upload of `size` bytes to `key`: presigned URLs for each part and to complete."""
    needed = math.ceil(size / MAX_PARTS)  # parts grow (in whole MiB) once MAX_PARTS would not do
    part_size = MIN_PART_SIZE if needed <= MIN_PART_SIZE else math.ceil(needed / 2**20) * 2**20
    count = max(1, math.ceil(size / part_size))
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="text/csv")["UploadId"]
    where = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
    return {
        "upload_method": "multipart",
        "upload_id": upload_id,
        "part_size": part_size,
        "parts": [
            {
                "part_number": n,
                "url": s3.generate_presigned_url(
                    "upload_part", Params=where | {"PartNumber": n}, ExpiresIn=expiry
                ),
            }
            for n in range(1, count + 1)
        ],
        "complete_url": s3.generate_presigned_url(
            "complete_multipart_upload", Params=where, ExpiresIn=expiry, HttpMethod="POST"
        ),
        "complete_method": "POST",
    }


def job_status(job_id: str, jobs_table, s3, bucket: str, link_expiry_seconds: int) -> dict[str, Any]:
    job = get_job(jobs_table, job_id) if job_id and len(job_id) <= 64 else None
    if job is None:
        return error_response(404, "unknown_job", f"no batch job '{job_id}'")
    body = {name: job.get(name) for name in PUBLIC_FIELDS}
    if job["status"] == SUCCEEDED:
        for kind in ("results", "errors"):
            body[f"{kind}_url"] = s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": batch_output_key(job["model"], job_id, kind)},
                ExpiresIn=link_expiry_seconds,
            )
    return response(200, body)
