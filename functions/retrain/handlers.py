"""The retraining workflow's Lambdas: one handler per state (inferline.workflow.RETRAIN_LAMBDAS),
each the state's function in steps.py. Step Functions passes the whole workflow state in and
puts the return value under the state's result path."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from inferline import aws
from retrain import steps
from retrain.settings import RetrainSettings

logger = Logger()
tracer = Tracer()
settings = RetrainSettings.from_env()


@cache
def services() -> steps.Services:
    return steps.Services.from_settings(settings, aws.client)


def _step(function):
    @tracer.capture_lambda_handler(capture_response=False)
    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        logger.append_keys(model=event.get("model"), run_id=(event.get("dataset") or {}).get("run_id"))
        result = function(event, services())
        logger.info("step done", step=function.__name__)
        return result

    return handler


build_dataset = _step(steps.build_dataset)
gate = _step(steps.run_gate)
register = _step(steps.register)
deploy = _step(steps.start_deployment)
check_endpoint = _step(steps.check_endpoint)
verify_deployment = _step(steps.verify_deployment)
notify = _step(steps.notify)
