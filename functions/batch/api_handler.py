"""Batch jobs API Lambdas, behind API Gateway (proxy integration)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from batch.api import job_status, submit_job
from inferline import aws
from inferline.clients import client_for
from inferline.events import PredictEvent, RequestContext
from inferline.settings import EnvSettings
from inferline.spec import load_spec

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class JobsApiSettings(EnvSettings):
    data_bucket: str = Field(validation_alias="DATA_BUCKET", min_length=3)
    jobs_table: str = Field(validation_alias="JOBS_TABLE", min_length=3)
    upload_url_expiry_seconds: int = Field(
        default=3600, ge=60, le=7 * 24 * 3600, validation_alias="UPLOAD_URL_EXPIRY_SECONDS"
    )
    result_link_expiry_seconds: int = Field(
        default=3600, ge=60, le=7 * 24 * 3600, validation_alias="RESULT_LINK_EXPIRY_SECONDS"
    )


class JobPath(BaseModel):
    model_config = ConfigDict(extra="ignore")
    job_id: str


class JobStatusEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    pathParameters: JobPath
    requestContext: RequestContext


settings = JobsApiSettings.from_env()


@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
@event_parser(model=PredictEvent)
def submit(event: PredictEvent, context: LambdaContext) -> dict:
    reply = submit_job(
        event.pathParameters.model,
        event.body,
        aws.table(settings.jobs_table),
        aws.client("s3"),
        settings.data_bucket,
        load_spec,
        settings.upload_url_expiry_seconds,
        headers=event.headers,
        client=client_for(event.requestContext.api_key_id),
    )
    if reply["statusCode"] == 201:
        metrics.add_metric("JobsSubmitted", MetricUnit.Count, 1)
    return reply


@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
@event_parser(model=JobStatusEvent)
def status(event: JobStatusEvent, context: LambdaContext) -> dict:
    return job_status(
        event.pathParameters.job_id,
        aws.table(settings.jobs_table),
        aws.client("s3"),
        settings.data_bucket,
        settings.result_link_expiry_seconds,
    )
