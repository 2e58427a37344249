"""Feedback Lambda: POST /v1/feedback, behind API Gateway."""

from __future__ import annotations

import json

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from feedback.logic import feedback
from inferline import aws
from inferline.events import FeedbackEvent
from inferline.settings import PredictionLogSettings
from inferline.spec import load_spec

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = PredictionLogSettings.from_env()


@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
@event_parser(model=FeedbackEvent)
def handler(event: FeedbackEvent, context: LambdaContext) -> dict:
    logger.append_keys(request_id=event.requestContext.requestId)
    reply = feedback(
        event.body,
        aws.table(settings.predictions_table),
        aws.client("s3"),
        settings.data_bucket,
        load_spec,
        event.headers,
    )
    if reply["statusCode"] == 200:
        for status, count in json.loads(reply["body"])["summary"].items():
            metrics.add_metric(f"Feedback_{status}", MetricUnit.Count, count)
    return reply
