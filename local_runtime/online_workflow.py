"""The online workflow on one machine: the same handlers, in the same order, with the same
state between them as the Step Functions EXPRESS workflow (inferline.workflow).

The InvokeEndpoint step is boto3's sagemaker-runtime InvokeEndpoint pointed at the local
model server, which answers SageMaker's /endpoints/{name}/invocations route.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from inferline.resources import endpoint_name
from inferline.workflow import (
    ENDPOINT_UNAVAILABLE,
    ENDPOINT_UNAVAILABLE_RESPONSE,
    INVOKE_ENDPOINT,
    IS_VALID,
    POSTPROCESS,
    PREPROCESS,
    RESPOND,
)

# One quick retry, then 503: a dead local model server should answer fast, not hang.
ENDPOINT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=1, read_timeout=30)


@dataclass
class LambdaContext:
    """What the Powertools decorators read from a Lambda context."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"


def context_for(function_name: str) -> LambdaContext:
    return LambdaContext(function_name=function_name, aws_request_id=str(uuid.uuid4()))


class LocalOnlineWorkflow:
    def __init__(
        self,
        prefix: str,
        serving_urls: dict[str, str],
        preprocess: Callable[[dict, Any], dict],
        postprocess: Callable[[dict, Any], dict],
        region: str = "us-east-1",
    ):
        self.prefix = prefix
        self.preprocess = preprocess
        self.postprocess = postprocess
        self.endpoints = {
            model: boto3.client(
                "sagemaker-runtime",
                endpoint_url=url,
                region_name=region,
                aws_access_key_id="local",
                aws_secret_access_key="local",
                config=ENDPOINT_CONFIG,
            )
            for model, url in serving_urls.items()
        }

    def run(self, event: dict) -> tuple[dict, list[str]]:
        """The HTTP response the workflow produces, and the names of the steps it ran."""
        steps = [PREPROCESS]
        state = self.preprocess(event, context_for("preprocess"))
        steps.append(IS_VALID)
        if not state["valid"]:
            return state["response"], steps + [RESPOND]
        steps.append(INVOKE_ENDPOINT)
        try:
            state["endpoint"] = self._invoke(state["model"], state["endpoint_body"])
        except (BotoCoreError, ClientError, KeyError):
            return ENDPOINT_UNAVAILABLE_RESPONSE, steps + [ENDPOINT_UNAVAILABLE, RESPOND]
        steps.append(POSTPROCESS)
        state = self.postprocess(state, context_for("postprocess"))
        return state["response"], steps + [RESPOND]

    def _invoke(self, model: str, body: str) -> dict:
        reply = self.endpoints[model].invoke_endpoint(
            EndpointName=endpoint_name(self.prefix, model),
            ContentType="application/json",
            Accept="application/json",
            Body=body.encode(),
        )
        return {"Body": reply["Body"].read().decode()}
