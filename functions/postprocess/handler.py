"""Postprocess Lambda: the last step of the online workflow (see inferline.workflow)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from inferline import aws
from inferline.events import PostprocessEvent
from inferline.settings import PredictionLogSettings
from inferline.spec import load_spec
from postprocess.logic import postprocess

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = PredictionLogSettings.from_env()


@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
@event_parser(model=PostprocessEvent)
def handler(event: PostprocessEvent, context: LambdaContext) -> dict:
    logger.append_keys(model=event.model, request_id=event.context.get("request_id"))
    result = postprocess(
        event.model,
        event.context,
        event.endpoint.Body,
        aws.table(settings.predictions_table),
        aws.client("s3"),
        settings.data_bucket,
        load_spec,
    )
    status = result["response"]["statusCode"]
    if status == 200:
        metrics.add_metric("Predictions", MetricUnit.Count, len(event.context["prediction_ids"]))
    else:
        logger.error("endpoint answer refused", status=status, body=result["response"]["body"])
        metrics.add_metric("BadModelOutputs", MetricUnit.Count, 1)
    return result
