"""The monitoring Lambdas: Prepare and Publish (states of the monitoring workflow,
inferline.workflow.MONITOR_LAMBDAS) and on_alarm (EventBridge: a monitoring alarm changed
state), each the function of the same name in steps.py."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from inferline import aws
from monitor import steps
from monitor.settings import MonitorSettings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = MonitorSettings.from_env()


@cache
def services() -> steps.Services:
    return steps.Services.from_settings(settings, aws.client)


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def prepare(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(model=event.get("model"))
    return steps.prepare(event, services())


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def publish(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(model=event.get("model"), run_id=(event.get("run") or {}).get("run_id"))

    def emit(model: str, version: str, figures: dict[str, float]) -> None:
        steps.add_figures(metrics, model, version, figures, metrics.flush_metrics)

    published = steps.publish(event, services(), emit)
    logger.info("monitoring run published", status=published["status"], in_alarm=published["in_alarm"])
    return published


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def on_alarm(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcome = steps.on_alarm(event, services())
    logger.info("monitoring alarm", alarm=(event.get("detail") or {}).get("alarmName"), **outcome)
    return outcome
