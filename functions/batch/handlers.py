"""The batch Lambdas, all SQS consumers reporting partial batch failures:

  batch.handlers.split        batch-uploads queue: S3 upload events -> chunk messages
  batch.handlers.chunk        batch-chunks queue: one chunk of rows -> parts (the last: outputs)
  batch.handlers.dead_letter  both dead-letter queues: the job is failed, with an email

A record that raises fails alone: SQS redelivers it and, after the queue's maxReceiveCount,
moves it to the dead-letter queue. Each handler's settings are checked at cold start (the
one named by Lambda's _HANDLER variable) or at its first invocation.
"""

from __future__ import annotations

import json
import os
from functools import cache

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from batch.chunk import JobFeatures, process_chunk
from batch.dead_letter import handle_dead_letter
from batch.services import Services
from batch.settings import ChunkSettings, DeadLetterSettings, MailSettings, SplitSettings
from batch.split import split_upload, upload_events
from inferline import aws

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def _mail_services(settings: MailSettings, **extra) -> Services:
    return Services(
        s3=aws.client("s3"),
        bucket=settings.data_bucket,
        jobs=aws.table(settings.jobs_table),
        ses=aws.client("ses"),
        email_sender=settings.email_sender,
        outbox_dir=settings.outbox_dir,
        **extra,
    )


@cache
def split_services() -> Services:
    settings = SplitSettings.from_env()
    return _mail_services(
        settings,
        sqs=aws.client("sqs"),
        chunks_queue_url=settings.chunks_queue_url,
        chunk_max_rows=settings.chunk_max_rows,
        chunk_max_bytes=settings.chunk_max_bytes,
    )


@cache
def chunk_services() -> Services:
    settings = ChunkSettings.from_env()
    return _mail_services(
        settings,
        features=aws.table(settings.features_table),
        predictions=aws.table(settings.predictions_table),
        runtime=aws.client("sagemaker-runtime"),
        resource_prefix=settings.resource_prefix,
        link_expiry_seconds=settings.result_link_expiry_seconds,
        endpoint_max_rows=settings.endpoint_max_rows,
        endpoint_concurrency=settings.endpoint_concurrency,
        feature_cache=JobFeatures(),  # kept while the Lambda is warm: one fetch per entity per job
    )


@cache
def dead_letter_services() -> Services:
    return _mail_services(DeadLetterSettings.from_env())


_SERVICES = {"split": split_services, "chunk": chunk_services, "dead_letter": dead_letter_services}
_cold_start_handler = os.environ.get("_HANDLER", "").rpartition(".")[2]
if os.environ.get("_HANDLER", "").startswith("batch.handlers.") and _cold_start_handler in _SERVICES:
    _SERVICES[_cold_start_handler]()  # fail the cold start naming what is missing


def reset() -> None:
    """Forget the services built from the environment (tests, the local runtime)."""
    for build in _SERVICES.values():
        build.cache_clear()


def _split_record(record: SQSRecord) -> None:
    body = json.loads(record.body)
    for _bucket, key in upload_events(body):
        result = split_upload(split_services(), key)
        metrics.add_metric(f"Uploads_{result['action']}", MetricUnit.Count, 1)


def _chunk_record(record: SQSRecord) -> None:
    result = process_chunk(chunk_services(), record.body)
    if result["action"] == "processed":
        metrics.add_metric("RowsPredicted", MetricUnit.Count, result["rows_ok"])
        metrics.add_metric("RowsFailed", MetricUnit.Count, result["rows_failed"])


def _dead_letter_record(record: SQSRecord) -> None:
    failed = handle_dead_letter(dead_letter_services(), record.body)
    metrics.add_metric("JobsFailedByDeadLetter", MetricUnit.Count, failed)


def _consume(event: dict, context: LambdaContext, handle) -> dict:
    def logged(record: SQSRecord) -> None:
        try:
            handle(record)
        except Exception:
            # the record alone fails: SQS retries it, then dead-letters it
            logger.exception("record failed", message_id=record.message_id)
            raise

    # A processor per call: it holds the call's successes and failures, and the local runtime
    # runs these handlers in threads of one process (a shared one mixed their failures up).
    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=event, record_handler=logged, processor=processor, context=context)


@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def split(event: dict, context: LambdaContext) -> dict:
    return _consume(event, context, _split_record)


@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def chunk(event: dict, context: LambdaContext) -> dict:
    return _consume(event, context, _chunk_record)


@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def dead_letter(event: dict, context: LambdaContext) -> dict:
    return _consume(event, context, _dead_letter_record)
