"""Ending a job: failing it with a reason, or linking its outputs; either way, one email.

The email address is read from the job item only to send the mail; it is never logged.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from batch.services import Services
from inferline import jobs
from inferline.batch_email import failed_mail, send, succeeded_mail
from inferline.resources import batch_output_key

logger = Logger(child=True)
metrics = Metrics()  # shares the handler's metric set; flushed by its log_metrics


def fail_job(services: Services, job_id: str, reason: str) -> bool:
    """Mark the job failed with the reason and email it; False when the job was already
    finished or does not exist (nothing changes then). Safe to call again."""
    changed = jobs.mark_failed(services.jobs, job_id, reason)
    if changed:
        metrics.add_metric("JobsFailed", MetricUnit.Count, 1)  # the batch-jobs-failed alarm
    job = jobs.get_job(services.jobs, job_id)
    if job is None:
        logger.warning("job to fail does not exist", job_id=job_id, reason=reason)
        return False
    if job["status"] == jobs.FAILED:
        logger.info("job failed", job_id=job_id, reason=job.get("failure_reason"))
        notify(services, job)
    return changed


def notify(services: Services, job: dict[str, Any]) -> bool:
    """Send the finished job's email unless it went out already; False when nobody to tell."""
    if job.get("notified_at"):
        return False
    if not job.get("email"):
        logger.warning(
            "job finished with no email address to tell",
            job_id=job["job_id"],
            status=job["status"],
            reason=job.get("failure_reason"),
        )
        return False
    if job["status"] == jobs.SUCCEEDED:
        links = result_links(services, job)
        mail = succeeded_mail(job, links, services.link_expiry_seconds)
    else:
        mail = failed_mail(job, job.get("failure_reason") or "unknown reason")
    # Workers finishing a job, dead-letter deliveries failing it, redeliveries: several may get
    # here at once, and one sends.
    if not jobs.claim_notification(services.jobs, job["job_id"]):
        return False
    try:
        send(services.ses, services.email_sender, mail, services.outbox_dir)
    except BaseException:
        jobs.release_notification(services.jobs, job["job_id"])  # the retry sends it
        raise
    jobs.mark_notified(services.jobs, job["job_id"])
    logger.info("job email sent", job_id=job["job_id"], status=job["status"])
    return True


def result_links(services: Services, job: dict[str, Any]) -> dict[str, str]:
    """Presigned GET links to results.csv and errors.csv, downloaded under readable names."""
    links = {}
    for kind in ("results", "errors"):
        key = batch_output_key(job["model"], job["job_id"], kind)
        links[kind] = services.s3.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": services.bucket,
                "Key": key,
                "ResponseContentDisposition": f'attachment; filename="{job["job_id"]}-{kind}.csv"',
            },
            ExpiresIn=services.link_expiry_seconds,
        )
    return links
