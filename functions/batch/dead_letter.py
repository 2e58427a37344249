"""The dead-letter path: a message that failed every retry ends its job as failed, with an
email saying which part of the file could not be processed.

The dead-letter queues hold the two kinds of message the batch queues carry: S3 upload
events (the split kept failing) and chunk messages (a chunk kept failing). Anything else is
logged and dropped: there is no job to tell.
"""

from __future__ import annotations

import json

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from batch.notify import fail_job, notify
from batch.services import Services
from batch.split import model_and_name, upload_events
from inferline import jobs

logger = Logger(child=True)


def handle_dead_letter(services: Services, body: str) -> int:
    """Fail the job(s) a dead-lettered message belongs to; returns how many were failed."""
    try:
        message = json.loads(body)
    except ValueError:
        logger.error("dead letter is not JSON; dropped", length=len(body))
        return 0
    if not isinstance(message, dict):
        logger.error("dead letter is not a JSON object; dropped")
        return 0
    if "job_id" in message:
        job_id, chunk = str(message["job_id"]), message.get("chunk")
        job = jobs.get_job(services.jobs, job_id) or {}
        if chunk is not None and chunk in job.get("done_chunks", []):
            return _counted_chunk(services, job)
        where = f"chunk {chunk}" if chunk is not None else "a chunk"
        if "first_row" in message:
            where += f" (from row {message['first_row']})"
        reason = (
            f"{where} of the file could not be processed after several attempts; "
            "the job was stopped and no results file was produced"
        )
        return int(fail_job(services, job_id, reason))
    failed = 0
    for _bucket, key in upload_events(message):
        job_id = _job_of_upload(services, key)
        if job_id is None:
            logger.error("dead-lettered upload has no job", key=key)
            continue
        reason = "the file could not be read and split into chunks after several attempts"
        failed += int(fail_job(services, job_id, reason))
    if not failed and "Records" not in message:
        logger.error("dead letter is neither a chunk message nor an S3 event; dropped")
    return failed


def _counted_chunk(services: Services, job: dict) -> int:
    """A chunk that was predicted and counted, then kept failing after that: in finishing the
    job (putting the results together, sending the email) or merely before it could return."""
    if job["status"] == jobs.RUNNING and not jobs.is_complete(job):
        logger.info("dead-lettered chunk was counted; the job's other chunks finish it", job_id=job["job_id"])
        return 0
    if job["status"] == jobs.RUNNING:  # every chunk counted: the results could not be assembled
        reason = (
            "every row was predicted, but the results file could not be put together "
            "after several attempts; the job was stopped"
        )
        return int(fail_job(services, job["job_id"], reason))
    notify(services, job)  # finished: its email may be what kept failing (raises: retried)
    return 0


def _job_of_upload(services: Services, key: str) -> str | None:
    """The job an upload belongs to: named by the file, or derived from the object; a job is
    created (to be failed, so its owner hears of it) when the split never got that far."""
    try:
        model, stem = model_and_name(key)
    except ValueError:
        return None
    if jobs.get_job(services.jobs, stem) is not None:
        return stem
    try:
        head = services.s3.head_object(Bucket=services.bucket, Key=key)
    except ClientError:
        return None  # the object is gone: no job id, no address
    job_id = jobs.upload_job_id(key, head.get("ETag", ""))
    if jobs.get_job(services.jobs, job_id) is None:
        email = (head.get("Metadata") or {}).get("email")
        try:
            jobs.create_job(services.jobs, model, email, job_id, source_key=key, status=jobs.SPLITTING)
        except FileExistsError:
            pass
    return job_id
