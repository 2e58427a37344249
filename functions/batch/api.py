"""The batch jobs API: submit a job (an upload URL back), and follow it (counts, then links).

  POST /v1/models/{model}/batch-jobs {"email"}  -> 201 {"job_id", "upload_url", "upload_headers",
                                                   "expires_at"}
  GET  /v1/batch-jobs/{job_id}                  -> 200 {"job_id", "model", "status", counts...,
                                                   "results_url", "errors_url" once done}
The email address is stored on the job to send the results to; it is never echoed back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from inferline.jobs import SUCCEEDED, create_job, get_job
from inferline.resources import batch_output_key, upload_key
from inferline.spec import ModelSpec, UnknownModel, available_models
from inferline.workflow import error_response, response

FIELDS = {"email", "file_name"}
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
PUBLIC_FIELDS = ("job_id", "model", "status", "total_chunks", "chunks_done", "rows_ok", "rows_failed",
                 "failure_reason", "created_at", "updated_at", "finished_at")  # fmt: skip


def submit_job(
    model: str,
    body: str | None,
    jobs_table,
    s3,
    bucket: str,
    load_spec: Callable[[str], ModelSpec],
    upload_expiry_seconds: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    try:
        spec = load_spec(model)
    except UnknownModel:
        return error_response(404, "unknown_model", f"no model named '{model}'", models=available_models())
    try:
        payload = json.loads(body or "")
    except ValueError:
        payload = None
    email = payload.get("email") if isinstance(payload, dict) else None
    file_name = payload.get("file_name") if isinstance(payload, dict) else None
    valid_name = file_name is None or (isinstance(file_name, str) and 0 < len(file_name) <= 255)
    if not isinstance(email, str) or not EMAIL.match(email) or not valid_name or set(payload) - FIELDS:
        expected = 'expected {"email": "you@example.com", "file_name": "optional.csv"}'
        detail = {"instance": None, "field": "email", "problem": expected}
        return response(
            400, {"error": "invalid_request", "message": "malformed batch job request", "details": [detail]}
        )
    job = create_job(jobs_table, spec.name, email, file_name=file_name)
    headers = {"Content-Type": "text/csv"}
    url = s3.generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": upload_key(spec.name, job["job_id"]), "ContentType": "text/csv"},
        ExpiresIn=upload_expiry_seconds,
    )
    expires = (now or datetime.now(UTC)) + timedelta(seconds=upload_expiry_seconds)
    return response(201, {
        "job_id": job["job_id"],
        "model": spec.name,
        "status": job["status"],
        "upload_url": url,
        "upload_method": "PUT",
        "upload_headers": headers,
        "expires_at": expires.isoformat(),
        "columns": {"required": [n for n, f in spec.request.fields.items() if f.required],
                    "optional": [n for n, f in spec.request.fields.items() if not f.required]},
    })  # fmt: skip


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
