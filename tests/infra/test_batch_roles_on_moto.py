"""The batch Lambdas' S3 permissions, as synthesized, against what the Lambdas really do.

moto does not check IAM unless told to, so a missing grant passes every other test and fails
every job on AWS (it happened: assembly lists the job's parts and the role could not list the
bucket). Here a role's S3 statements from the template become an IAM user's policy in moto,
IAM checking is switched on, and the role's work runs with that user's keys: the split, every
chunk (the last one assembling the outputs and sending the email), a dead letter. Only S3 is
checked: moto matches the resources of S3 statements only (a DynamoDB statement naming its
table is refused whatever it grants), so other services are allowed here.
"""

from __future__ import annotations

import io
import json

import boto3
import pytest
from infra_helpers import iam_user_keys, s3_policy
from moto.core.authorization import enable_iam_authentication

from batch.chunk import process_chunk
from batch.dead_letter import handle_dead_letter
from batch.services import Services
from batch.split import split_upload
from inferline import jobs
from inferline.resources import table_name, upload_key

MODEL = "purchase-propensity"
SENDER = "batch@example.com"
CSV = (
    "user_id,price,category,device,country,session_pages,hour_of_day,discount_pct,email\n"
    + "".join(f"u{i},{i}.5,books,mobile,US,3,4,5,a{i}@example.com\n" for i in range(30))
)


class Endpoint:
    """sagemaker-runtime's invoke_endpoint: one score per CSV row (IAM for it is not tested here)."""

    def invoke_endpoint(self, EndpointName, ContentType, Accept, Body):
        rows = Body.decode().count("\n") - 1
        body = {"model": MODEL, "model_version": "1", "classes": [0, 1], "scores": [0.5] * rows}
        return {"Body": io.BytesIO(json.dumps(body).encode())}


def role_policy(synth, role, bucket: str, without: str | None = None) -> dict:
    data = f"<{synth.logical_id(synth.stack.storage.data)}.Arn>"
    return s3_policy(synth.template, synth.logical_id(role), {data: bucket}, without)


def services_as(aws, policy: dict, tmp_path, **extra) -> Services:
    """Batch Services whose every call is signed with a user holding `policy`."""
    session = boto3.Session(**iam_user_keys(policy), region_name="us-east-1")
    return Services(
        s3=session.client("s3"),
        bucket=aws.data_bucket,
        jobs=session.resource("dynamodb").Table(table_name(aws.prefix, "jobs")),
        ses=session.client("ses"),
        sqs=session.client("sqs"),
        email_sender=SENDER,
        outbox_dir=str(tmp_path / "outbox"),
        features=session.resource("dynamodb").Table(table_name(aws.prefix, "features")),
        predictions=session.resource("dynamodb").Table(table_name(aws.prefix, "predictions")),
        runtime=Endpoint(),
        resource_prefix=aws.prefix,
        link_expiry_seconds=3600,
        **extra,
    )


def uploaded_job(aws, data: bytes = CSV.encode()) -> tuple[str, str, str]:
    """A job and its upload, put with the test's own (unchecked) keys: (job id, key, queue)."""
    boto3.client("ses").verify_email_identity(EmailAddress=SENDER)
    queue = boto3.client("sqs").create_queue(QueueName="chunks")["QueueUrl"]
    table = boto3.resource("dynamodb").Table(table_name(aws.prefix, "jobs"))
    job = jobs.create_job(table, MODEL, "o@example.com")
    key = upload_key(MODEL, job["job_id"])
    aws.s3.put_object(Bucket=aws.data_bucket, Key=key, Body=data)
    return job["job_id"], key, queue


def split_as(synth, aws, tmp_path, key: str, queue: str) -> list[str]:
    """The upload split with the split role's S3 grants; its chunk messages."""
    policy = role_policy(synth, synth.stack.batch.split.role, aws.data_bucket)
    splitter = services_as(aws, policy, tmp_path, chunks_queue_url=queue, chunk_max_rows=10)
    with enable_iam_authentication():
        split_upload(splitter, key)
    sqs = boto3.client("sqs")
    return [m["Body"] for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]]


def test_the_split_and_chunk_roles_may_do_all_a_job_needs(synth, aws, tmp_path):
    job_id, key, queue = uploaded_job(aws)
    bodies = split_as(synth, aws, tmp_path, key, queue)
    services = services_as(aws, role_policy(synth, synth.stack.batch.chunk.role, aws.data_bucket), tmp_path)
    with enable_iam_authentication():
        for body in bodies:
            process_chunk(services, body)
    job = jobs.get_job(services.jobs, job_id)
    assert (job["status"], job["rows_ok"], len(bodies)) == (jobs.SUCCEEDED, 30, 3)


def test_without_listing_the_bucket_the_last_chunk_cannot_assemble(synth, aws, tmp_path):
    """The test sees a missing grant: the one a review found missing, taken out again."""
    job_id, key, queue = uploaded_job(aws)
    bodies = split_as(synth, aws, tmp_path, key, queue)
    policy = role_policy(synth, synth.stack.batch.chunk.role, aws.data_bucket, without="s3:ListBucket")
    services = services_as(aws, policy, tmp_path)
    with enable_iam_authentication(), pytest.raises(Exception, match="AccessDenied"):
        for body in bodies:
            process_chunk(services, body)
    assert jobs.get_job(services.jobs, job_id)["status"] == jobs.RUNNING


def test_the_dead_letter_role_may_fail_a_direct_upload_it_never_split(synth, aws, tmp_path):
    """A direct upload whose split kept failing: the dead-letter Lambda reads the object's
    metadata for the address, creates the job and fails it, with an email."""
    boto3.client("ses").verify_email_identity(EmailAddress=SENDER)
    key = f"uploads/{MODEL}/direct.csv"
    aws.s3.put_object(Bucket=aws.data_bucket, Key=key, Body=b"x", Metadata={"email": "o@example.com"})
    event = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": aws.data_bucket},
                                                                   "object": {"key": key}}}]}  # fmt: skip
    policy = role_policy(synth, synth.stack.batch.dead_letter.role, aws.data_bucket)
    services = services_as(aws, policy, tmp_path)
    with enable_iam_authentication():
        assert handle_dead_letter(services, json.dumps(event)) == 1
