"""Preprocess Lambda: the first step of the online workflow (see inferline.workflow)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from inferline import aws
from inferline.clients import client_for
from inferline.events import PredictEvent
from inferline.refusals import write_refusal
from inferline.settings import PreprocessSettings
from inferline.spec import load_spec
from preprocess.logic import preprocess

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = PreprocessSettings.from_env()


@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # responses carry request data
@logger.inject_lambda_context
@event_parser(model=PredictEvent)
def handler(event: PredictEvent, context: LambdaContext) -> dict:
    model = event.pathParameters.model
    logger.append_keys(model=model, request_id=event.requestContext.requestId)
    result = preprocess(
        model,
        event.body,
        event.requestContext.requestId,
        aws.table(settings.features_table),
        load_spec,
        log_refusal,
        event.headers,
        client=client.name if (client := client_for(event.requestContext.api_key_id)) else None,
    )
    if result["valid"]:
        metrics.add_metric("Instances", MetricUnit.Count, len(result["context"]["prediction_ids"]))
        unknown = result["context"]["entity_known"].count(False)
        metrics.add_metric("UnknownEntities", MetricUnit.Count, unknown)
    else:
        logger.info("request refused", status=result["response"]["statusCode"])
        metrics.add_metric("InvalidRequests", MetricUnit.Count, 1)
    return result


def log_refusal(record: dict) -> None:
    """A refusal is logged for monitoring; failing to log it never turns the 4xx into a 5xx."""
    try:
        write_refusal(aws.client("s3"), settings.data_bucket, record)
    except Exception:  # any failure: the caller still gets its 4xx
        logger.exception("refusal not logged")
        metrics.add_metric("RefusalsNotLogged", MetricUnit.Count, 1)
