"""The local runtime runs the workflow's steps in ONLINE_STEPS order, and its failure branches
end where the state machine's do (tests/infra compares ONLINE_STEPS with the template)."""

import json

from botocore.exceptions import EndpointConnectionError

from inferline.workflow import (
    ENDPOINT_UNAVAILABLE,
    ENDPOINT_UNAVAILABLE_RESPONSE,
    IS_VALID,
    ONLINE_STEPS,
    PREPROCESS,
    RESPOND,
    response,
)
from local_runtime.online_workflow import LocalOnlineWorkflow

OK = response(200, {"ok": True})


def workflow(valid=True, invoke=None):
    seen = {}

    def preprocess(event, context):
        seen["preprocess"] = event
        if not valid:
            return {"valid": False, "response": response(400, {"error": "invalid_request"})}
        return {"valid": True, "model": "m", "endpoint_body": "{}", "context": {}}

    def postprocess(state, context):
        seen["postprocess"] = state
        return {"response": OK}

    flow = LocalOnlineWorkflow("p", {"m": "http://127.0.0.1:9"}, preprocess, postprocess)
    flow._invoke = invoke or (lambda model, body: {"Body": json.dumps({"scores": []})})
    return flow, seen


def test_the_happy_path_runs_the_online_steps_in_order():
    flow, seen = workflow()
    reply, steps = flow.run({"body": "{}"})
    assert tuple(steps) == ONLINE_STEPS
    assert reply == OK
    assert seen["postprocess"]["endpoint"] == {"Body": '{"scores": []}'}


def test_an_invalid_request_skips_straight_to_respond():
    flow, seen = workflow(valid=False)
    reply, steps = flow.run({})
    assert steps == [PREPROCESS, IS_VALID, RESPOND]
    assert reply["statusCode"] == 400 and "postprocess" not in seen


def test_an_endpoint_failure_is_the_fixed_503():
    def fail(model, body):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    flow, seen = workflow(invoke=fail)
    reply, steps = flow.run({})
    assert steps[-2:] == [ENDPOINT_UNAVAILABLE, RESPOND]
    assert reply == ENDPOINT_UNAVAILABLE_RESPONSE and reply["statusCode"] == 503
    assert "postprocess" not in seen


def test_a_dead_model_server_is_reported_as_unavailable_quickly():
    flow, _ = workflow(invoke=None)
    del flow._invoke  # the real InvokeEndpoint, against a port nothing listens on
    reply, steps = flow.run({})
    assert reply["statusCode"] == 503 and ENDPOINT_UNAVAILABLE in steps
