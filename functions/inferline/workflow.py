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


# -- the retraining workflow ----------------------------------------------------------------
#
# In AWS a Step Functions STANDARD workflow per stack ("<prefix>-retrain"), started by
# EventBridge Scheduler (monthly), the CLI or a drift alarm with {"model": "<name>"}; on one
# machine local_runtime.retrain runs the same plain functions (functions/retrain/) in the
# same order. Each step writes its result under its own key of the state:
#
#   input            {"model", "trigger"?, "params"?: {hyperparameter overrides}}
#   BuildDataset     $.dataset  {"status": "ready"|"skipped", "reason", "run_id",
#                    "contender_version", "champion": {"version", "model_data_url", "image",
#                    "model_name", "endpoint_config"}, "train_uri", "holdout_uri",
#                    "manifest_uri", "output_uri", "evaluation_uri", "training_job_name",
#                    "evaluation_job_name", "hyperparameters": {str: str}, "rows": {...}}
#   HasEnoughData    Choice on $.dataset.status: "skipped" goes to Notify (a reported skip)
#   Train            SageMaker training job (.sync) on the serving image's `train` program:
#                    channel "train" = $.dataset.train_uri, output $.dataset.output_uri
#                    -> $.training {"model_data_url"}
#   Evaluate         SageMaker processing job (.sync) running model_artifacts.evaluate on
#                    the holdout with contender and champion -> evaluation.json + .md under
#                    $.dataset.evaluation_uri
#   Gate             $.gate {"decision": "promote"|"reject", "reasons": [...],
#                    "contender": {metric: value}, "champion": {metric: value}}
#   Register         $.registry {"model_package_arn", "package_version", "approval"}
#   IsPromoted       Choice on $.gate.decision: "reject" goes to Notify
#   Deploy           $.deployment {"endpoint", "endpoint_config", "previous_endpoint_config",
#                    "model_name"}  (CreateModel, CreateEndpointConfig, UpdateEndpoint with
#                    blue/green canary and auto-rollback alarms)
#   WaitForEndpoint  Wait, then CheckEndpoint: $.endpoint_status {"status"}; EndpointSettled
#                    loops back while the endpoint is Updating
#   VerifyDeployment reads back the endpoint's EndpointConfigName: anything but the new one
#                    (SageMaker rolled back) fails the promotion
#   Notify           the outcome (promoted, rejected, skipped) with the metrics side by side
#   a failed step    is caught into $.error {"Error", "Cause"} -> NotifyFailure -> RetrainingFailed

BUILD_DATASET = "BuildDataset"
HAS_ENOUGH_DATA = "HasEnoughData"
TRAIN = "Train"
EVALUATE = "Evaluate"
GATE = "Gate"
REGISTER = "Register"
IS_PROMOTED = "IsPromoted"
DEPLOY = "Deploy"
WAIT_FOR_ENDPOINT = "WaitForEndpoint"
CHECK_ENDPOINT = "CheckEndpoint"
ENDPOINT_SETTLED = "EndpointSettled"
VERIFY_DEPLOYMENT = "VerifyDeployment"
NOTIFY = "Notify"
DONE = "Done"
NOTIFY_FAILURE = "NotifyFailure"
RETRAINING_FAILED = "RetrainingFailed"

# The promotion path, in order (with one pass through the wait loop).
RETRAIN_STEPS: tuple[str, ...] = (
    BUILD_DATASET, HAS_ENOUGH_DATA, TRAIN, EVALUATE, GATE, REGISTER, IS_PROMOTED, DEPLOY,
    WAIT_FOR_ENDPOINT, CHECK_ENDPOINT, ENDPOINT_SETTLED, VERIFY_DEPLOYMENT, NOTIFY, DONE,
)  # fmt: skip
# The other ends: a skip, a rejection, and any failure.
RETRAIN_SKIP_STEPS: tuple[str, ...] = (BUILD_DATASET, HAS_ENOUGH_DATA, NOTIFY, DONE)
RETRAIN_REJECT_STEPS: tuple[str, ...] = RETRAIN_STEPS[: RETRAIN_STEPS.index(IS_PROMOTED) + 1] + (NOTIFY, DONE)
RETRAIN_FAILURE_TAIL: tuple[str, ...] = (NOTIFY_FAILURE, RETRAINING_FAILED)
# Steps that do work (and so carry retries and a catch into NotifyFailure).
RETRAIN_TASKS: tuple[str, ...] = (
    BUILD_DATASET, TRAIN, EVALUATE, GATE, REGISTER, DEPLOY, CHECK_ENDPOINT, VERIFY_DEPLOYMENT, NOTIFY,
)  # fmt: skip
# The Lambda-backed steps and the functions/retrain/handlers.py function each runs.
RETRAIN_LAMBDAS: dict[str, str] = {
    BUILD_DATASET: "build_dataset",
    GATE: "gate",
    REGISTER: "register",
    DEPLOY: "deploy",
    CHECK_ENDPOINT: "check_endpoint",
    VERIFY_DEPLOYMENT: "verify_deployment",
    NOTIFY: "notify",
    NOTIFY_FAILURE: "notify",
}
# Where each step's result goes in the state.
RETRAIN_RESULT_PATHS: dict[str, str] = {
    BUILD_DATASET: "$.dataset",
    TRAIN: "$.training",
    EVALUATE: "$.evaluation",
    GATE: "$.gate",
    REGISTER: "$.registry",
    DEPLOY: "$.deployment",
    CHECK_ENDPOINT: "$.endpoint_status",
    VERIFY_DEPLOYMENT: "$.verification",
    NOTIFY: "$.notification",
    NOTIFY_FAILURE: "$.notification",
}
# Endpoint states that mean "still changing": the wait loop goes round again.
ENDPOINT_CHANGING = ("Creating", "Updating", "SystemUpdating", "RollingBack")
ENDPOINT_WAIT_SECONDS = 60


# -- the monitoring workflow ------------------------------------------------------------------
#
# In AWS a Step Functions STANDARD workflow per stack ("<prefix>-monitor"), started by
# EventBridge Scheduler (monitorSchedule in cdk.json) or by hand (`inferline monitor --aws`)
# with {"model", "since"?, "until"?, "trigger"?}; on one machine local_runtime.monitor runs the
# same functions (functions/monitor/steps.py, model_artifacts.monitoring) in the same order.
#
#   Prepare     $.run {"run_id", "model", "since", "until", "trigger", "champion": {"version",
#               "model_data_url", "serving_since"}, "job_name", "arguments": [...], "result_uri",
#               "report_uri"}
#   Monitor     SageMaker processing job (.sync) on the serving image running
#               `python -m model_artifacts.monitoring` with $.run.arguments: reads the window's
#               logs from S3, writes result.json, summary.json and report.html -> $.job
#   Publish     reads result.json and sends its figures to CloudWatch (EMF) -> $.published
#               {"status", "headline", "in_alarm", "report_uri", "figures"}; the alarms on those
#               metrics notify the alarm topic, and a drift or quality alarm starts retraining
#               (functions/monitor: trigger_retraining, with a cool-down)
#   a failed step ends in MonitoringFailed (the state machine's failure alarm notifies)

MONITOR_PREPARE = "Prepare"
MONITOR_JOB = "Monitor"
MONITOR_PUBLISH = "Publish"
MONITOR_FAILED = "MonitoringFailed"
MONITOR_STEPS: tuple[str, ...] = (MONITOR_PREPARE, MONITOR_JOB, MONITOR_PUBLISH)
MONITOR_LAMBDAS: dict[str, str] = {MONITOR_PREPARE: "prepare", MONITOR_PUBLISH: "publish"}
MONITOR_RESULT_PATHS: dict[str, str] = {
    MONITOR_PREPARE: "$.run",
    MONITOR_JOB: "$.job",
    MONITOR_PUBLISH: "$.published",
}
# The monitoring job's entry point in the serving image (a processing job's ContainerEntrypoint).
MONITOR_ENTRYPOINT: tuple[str, ...] = ("python", "-m", "model_artifacts.monitoring")
