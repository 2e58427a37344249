"""The synthesized EXPRESS workflow runs the steps the local runtime runs, in the same order,
with the branches inferline.workflow describes."""

from __future__ import annotations

import json

import pytest
from infra_helpers import resolve

from inferline import workflow
from inferline.resources import endpoint_name


@pytest.fixture(scope="module")
def machines(synth) -> dict[str, dict]:
    """Each model's state machine resource, with its definition parsed."""
    found = {}
    for machine in synth.resources("AWS::StepFunctions::StateMachine").values():
        props = machine["Properties"]
        if "-online-" not in props["StateMachineName"]:
            continue  # the retraining workflow: tests/infra/test_cdk_retraining.py
        props["Definition"] = json.loads(resolve(props["DefinitionString"]))
        found[props["StateMachineName"]] = props
    return found


def happy_path(definition: dict) -> list[str]:
    """States visited when the request is valid and the endpoint answers."""
    states, name, path = definition["States"], definition["StartAt"], []
    while name is not None:
        path.append(name)
        state = states[name]
        if state["Type"] == "Choice":
            (valid,) = [c for c in state["Choices"] if c.get("BooleanEquals") is True]
            name = valid["Next"]
        elif state.get("End") or state["Type"] in ("Succeed", "Fail"):
            name = None
        else:
            name = state["Next"]
    return path


def test_one_express_workflow_per_model(synth, machines):
    expected = {f"{synth.config.prefix}-online-{m}" for m in synth.config.models}
    assert set(machines) == expected
    for props in machines.values():
        assert props["StateMachineType"] == "EXPRESS"
        assert props["TracingConfiguration"] == {"Enabled": True}
        logging = props["LoggingConfiguration"]
        assert logging["Level"] == "ALL"
        assert logging["IncludeExecutionData"] is False  # requests carry PII until redacted


def test_happy_path_is_the_local_runtime_sequence(machines):
    for props in machines.values():
        assert happy_path(props["Definition"]) == list(workflow.ONLINE_STEPS)


def test_states_are_the_workflow_modules_and_nothing_else(machines):
    for props in machines.values():
        assert set(props["Definition"]["States"]) == {
            *workflow.ONLINE_STEPS, workflow.ENDPOINT_UNAVAILABLE
        }


def test_invalid_requests_skip_to_respond(machines):
    for props in machines.values():
        is_valid = props["Definition"]["States"][workflow.IS_VALID]
        assert is_valid["Type"] == "Choice"
        assert is_valid["Choices"] == [
            {"Variable": "$.valid", "BooleanEquals": True, "Next": workflow.INVOKE_ENDPOINT}
        ]
        assert is_valid["Default"] == workflow.RESPOND


def test_any_endpoint_failure_becomes_the_503_response(machines):
    for props in machines.values():
        states = props["Definition"]["States"]
        invoke = states[workflow.INVOKE_ENDPOINT]
        assert invoke["Catch"] == [{
            "ErrorEquals": ["States.ALL"], "ResultPath": None,
            "Next": workflow.ENDPOINT_UNAVAILABLE,
        }]
        assert invoke["TimeoutSeconds"] <= 10
        unavailable = states[workflow.ENDPOINT_UNAVAILABLE]
        assert unavailable["Type"] == "Pass"
        assert unavailable["Result"] == workflow.ENDPOINT_UNAVAILABLE_RESPONSE
        assert unavailable["ResultPath"] == "$.response"
        assert unavailable["Next"] == workflow.RESPOND


def test_respond_outputs_the_proxy_response(machines):
    for props in machines.values():
        respond = props["Definition"]["States"][workflow.RESPOND]
        assert respond == {"Type": "Succeed", "OutputPath": "$.response"}


def test_steps_call_the_right_lambda_and_endpoint(synth, machines):
    functions = synth.stack.online_api.functions
    for model in synth.config.models:
        props = machines[f"{synth.config.prefix}-online-{model}"]
        states = props["Definition"]["States"]
        assert states[workflow.PREPROCESS]["Resource"] == (
            f"<{synth.logical_id(functions.preprocess)}.Arn>"
        )
        assert states[workflow.POSTPROCESS]["Resource"] == (
            f"<{synth.logical_id(functions.postprocess)}.Arn>"
        )
        invoke = states[workflow.INVOKE_ENDPOINT]
        assert invoke["Resource"].endswith(":states:::aws-sdk:sagemakerruntime:invokeEndpoint")
        assert invoke["Parameters"] == {
            "EndpointName": endpoint_name(synth.config.prefix, model),
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body.$": "$.endpoint_body",
        }
        assert invoke["ResultPath"] == "$.endpoint"


def test_workflow_finishes_inside_the_api_gateway_timeout(machines):
    for props in machines.values():
        assert props["Definition"]["TimeoutSeconds"] < 29


# -- the same branches as the local runtime, step for step -----------------------------


def run_definition(definition: dict, *, valid: bool, endpoint_fails: bool) -> list[str]:
    """The states the synthesized workflow visits, for one request's outcome."""
    states, name, path = definition["States"], definition["StartAt"], []
    while name is not None:
        path.append(name)
        state = states[name]
        if state["Type"] == "Choice":
            (choice,) = state["Choices"]
            assert choice["Variable"] == "$.valid"
            name = choice["Next"] if valid == choice["BooleanEquals"] else state["Default"]
        elif state["Type"] == "Succeed" or state.get("End"):
            name = None
        elif name == workflow.INVOKE_ENDPOINT and endpoint_fails:
            (catch,) = state["Catch"]
            name = catch["Next"]
        else:
            name = state["Next"]
    return path


@pytest.mark.parametrize(
    ("valid", "endpoint_fails"), [(True, False), (False, False), (True, True)],
    ids=["predicted", "invalid-request", "endpoint-down"],
)
def test_every_branch_matches_the_local_runtime(synth, machines, valid, endpoint_fails):
    from botocore.exceptions import BotoCoreError

    from local_runtime.online_workflow import LocalOnlineWorkflow

    model = synth.config.models[0]
    reply = {"statusCode": 200, "headers": {}, "body": "{}"}

    def preprocess(event, context):
        if not valid:
            return {"valid": False, "response": reply}
        return {"valid": True, "model": model, "endpoint_body": "{}", "context": {}}

    def invoke(model_name, body):
        if endpoint_fails:
            raise BotoCoreError()
        return {"Body": "{}"}

    local = LocalOnlineWorkflow(
        synth.config.prefix, {model: "http://127.0.0.1:9"}, preprocess,
        lambda state, context: {"response": reply},
    )
    local._invoke = invoke
    _, local_steps = local.run({"body": "{}", "pathParameters": {"model": model},
                                "requestContext": {"requestId": "r1"}})
    definition = machines[f"{synth.config.prefix}-online-{model}"]["Definition"]
    assert run_definition(definition, valid=valid, endpoint_fails=endpoint_fails) == local_steps
