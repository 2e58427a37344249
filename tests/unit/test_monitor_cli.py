"""`inferline monitor --aws` against a deployed stack's workflow (Step Functions stubbed with
botocore's Stubber, S3 and STS on moto), and the local runtime's monitoring schedule."""

from __future__ import annotations

import json
import threading

import boto3
import pytest
from botocore.stub import Stubber

from local_runtime import monitor as local_monitor
from local_runtime.config import REPO_ROOT, LocalConfig
from local_runtime.monitor_aws import run_on_aws

MODEL = "purchase-propensity"


class Console:
    def status(self, *_):
        import contextlib

        return contextlib.nullcontext()


def test_monitor_aws_starts_the_stacks_workflow_and_reads_its_result(aws, monkeypatch):
    bucket = aws.data_bucket
    result = {"run_id": "r1", "model": MODEL, "summary": {"status": "healthy"}}
    aws.s3.put_object(Bucket=bucket, Key=f"monitoring/{MODEL}/runs/r1/result.json", Body=json.dumps(result))
    account = boto3.client("sts").get_caller_identity()["Account"]
    machine = f"arn:aws:states:us-east-1:{account}:stateMachine:test-monitor"
    execution = f"arn:aws:states:us-east-1:{account}:execution:test-monitor:x"
    run_uri = f"s3://{bucket}/monitoring/{MODEL}/runs/r1/"
    output = {"run": {"result_uri": run_uri + "result.json", "report_uri": run_uri + "report.html"}}

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    stub = Stubber(sfn)
    stub.add_response("start_execution", {"executionArn": execution, "startDate": "2026-12-08"}, {
        "stateMachineArn": machine,
        "input": json.dumps(
            {"model": MODEL, "since": "2026-12-07T00:00:00Z", "until": None, "trigger": "cli"}
        ),
    })  # fmt: skip
    described = {"executionArn": execution, "stateMachineArn": machine, "startDate": "2026-12-08"}
    stub.add_response("describe_execution", described | {"status": "RUNNING"}, {"executionArn": execution})
    stub.add_response("describe_execution", described | {"status": "SUCCEEDED", "output": json.dumps(output)},
                      {"executionArn": execution})  # fmt: skip
    real_client = boto3.session.Session.client

    def client(self, name, *args, **kwargs):
        return sfn if name == "stepfunctions" else real_client(self, name, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", client)
    monkeypatch.setattr("local_runtime.monitor_aws.time.sleep", lambda _: None)
    with stub:
        got, report = run_on_aws("test", MODEL, "2026-12-07T00:00:00Z", None, 60, Console())
    assert got == result
    assert report.startswith(run_uri + "report.html (https://") and "X-Amz-Signature" in report


def test_monitor_aws_says_why_a_run_failed(aws, monkeypatch):
    account = boto3.client("sts").get_caller_identity()["Account"]
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    stub = Stubber(sfn)
    execution = f"arn:aws:states:us-east-1:{account}:execution:test-monitor:x"
    stub.add_response("start_execution", {"executionArn": execution, "startDate": "2026-12-08"})
    stub.add_response("describe_execution", {
        "executionArn": execution, "stateMachineArn": "arn:aws:states:us-east-1:1:stateMachine:m",
        "startDate": "2026-12-08", "status": "FAILED", "error": "MonitoringInputError",
        "cause": "the window is empty",
    })  # fmt: skip
    real_client = boto3.session.Session.client
    monkeypatch.setattr(
        boto3.session.Session,
        "client",
        lambda self, name, *a, **k: sfn if name == "stepfunctions" else real_client(self, name, *a, **k),
    )
    with stub, pytest.raises(RuntimeError, match="failed: MonitoringInputError: the window is empty"):
        run_on_aws("test", MODEL, None, None, 60, Console())


@pytest.mark.parametrize(
    ("value", "seconds"), [("hourly", 3600), ("daily", 86400), ("", None), ("off", None), ("2", 2)]
)
def test_the_local_schedule_reads_monitor_schedule(monkeypatch, value, seconds):
    monkeypatch.setenv("INFERLINE_MONITOR_SCHEDULE", value)
    assert local_monitor.schedule_seconds(LocalConfig()) == seconds


def test_the_local_schedule_defaults_to_cdk_json_and_refuses_what_the_stack_would(monkeypatch):
    monkeypatch.delenv("INFERLINE_MONITOR_SCHEDULE", raising=False)
    cdk = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["monitorSchedule"]
    assert local_monitor.schedule_seconds(LocalConfig()) == local_monitor.MONITOR_SCHEDULES[cdk]
    monkeypatch.setenv("INFERLINE_MONITOR_SCHEDULE", "weekly")
    with pytest.raises(ValueError, match="monitorSchedule must be one of hourly, daily"):
        local_monitor.schedule_seconds(LocalConfig())


def test_the_local_schedule_runs_every_model_each_period_and_survives_a_failed_run(monkeypatch):
    monkeypatch.setenv("INFERLINE_MONITOR_SCHEDULE", "1")
    runs, done = [], threading.Event()

    def fake_run(config, model, trigger):
        runs.append((model, trigger))
        if len(runs) >= 4:
            done.set()
        if model == "a":
            raise RuntimeError("the embedded AWS went away")  # logged; the schedule goes on
        return type("Run", (), {"result": {"summary": {"status": "healthy"}}, "report": "r.html"})()

    monkeypatch.setattr(local_monitor, "run_monitoring", fake_run)
    stop = local_monitor.start_schedule(LocalConfig(), ["a", "b"])
    try:
        assert done.wait(10)
    finally:
        stop.set()
    assert runs[:4] == [("a", "schedule"), ("b", "schedule")] * 2
