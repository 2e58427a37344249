"""The online prediction workflow: its steps, their order, and the state passed between them.

In AWS this is a Step Functions EXPRESS workflow per model (built in infra/ from ONLINE_STEPS);
on one machine the local gateway runs the same handlers in the same order. Both read this
module, and tests compare the synthesized state machine with it.

State, step by step:
  input        an API Gateway proxy-shaped event: {"body", "pathParameters": {"model"},
               "requestContext": {"requestId"}, ...}
  Preprocess   adds {"valid": true, "endpoint_body": "<JSON for the model>", "context": {...}}
               or    {"valid": false, "response": {...400/404/413...}}
  IsValid      Choice on $.valid: false goes straight to Respond
  InvokeEndpoint  SageMaker InvokeEndpoint(EndpointName, Body=$.endpoint_body) -> $.endpoint
               {"Body": "<JSON from the model>"}; any failure -> EndpointUnavailable (503)
  Postprocess  adds {"response": {"statusCode": 200, "headers", "body"}}
  Respond      the workflow's output is $.response, which API Gateway maps to the HTTP reply
"""

from __future__ import annotations

import json

PREPROCESS = "Preprocess"
IS_VALID = "IsValid"
INVOKE_ENDPOINT = "InvokeEndpoint"
ENDPOINT_UNAVAILABLE = "EndpointUnavailable"
POSTPROCESS = "Postprocess"
RESPOND = "Respond"

# The happy path, in order; IsValid branches to Respond and InvokeEndpoint's catch to
# EndpointUnavailable, which also ends at Respond.
ONLINE_STEPS: tuple[str, ...] = (PREPROCESS, IS_VALID, INVOKE_ENDPOINT, POSTPROCESS, RESPOND)

# API Gateway and Step Functions both cap payloads (10 MB, 256 KB); a prediction request is
# far smaller, so anything over this is refused with 413 before any work is done.
MAX_BODY_BYTES = 64 * 1024

# How long a client should wait before retrying when the model endpoint fails.
RETRY_AFTER_SECONDS = 5

JSON_HEADERS = {"Content-Type": "application/json"}


def response(status: int, body: dict, headers: dict | None = None) -> dict:
    """An API Gateway proxy response with a JSON body."""
    return {
        "statusCode": status,
        "headers": JSON_HEADERS | (headers or {}),
        "body": json.dumps(body, separators=(",", ":")),
    }


def error_response(status: int, error: str, message: str, **extra) -> dict:
    return response(status, {"error": error, "message": message, **extra})


# The response of the EndpointUnavailable step: a fixed value, so the state machine can
# return it from a Pass state and the local runtime from the same constant.
ENDPOINT_UNAVAILABLE_RESPONSE = response(
    503,
    {
        "error": "model_unavailable",
        "message": "The model endpoint did not answer; retry shortly.",
        "retry_after_seconds": RETRY_AFTER_SECONDS,
    },
    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
)
