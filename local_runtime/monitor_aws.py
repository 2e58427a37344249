"""`inferline monitor --aws`: the deployed stack's monitoring workflow, started and followed with
the caller's AWS credentials, and its result read back (the same result.json a local run writes)."""

from __future__ import annotations

import json
import time
from typing import Any

from inferline.aws import S3_CONFIG
from inferline.resources import monitor_state_machine_name, split_s3_uri

REPORT_LINK_SECONDS = 3600


def run_on_aws(
    prefix: str, model: str, since: str | None, until: str | None, timeout: float, console
) -> tuple[dict[str, Any], str]:
    """(result, "s3://... report (a link valid for an hour)") of one run of `model`."""
    import boto3

    session = boto3.session.Session()
    account = session.client("sts").get_caller_identity()["Account"]
    arn = f"arn:aws:states:{session.region_name}:{account}:stateMachine:{monitor_state_machine_name(prefix)}"
    sfn = session.client("stepfunctions")
    run_input = {"model": model, "since": since, "until": until, "trigger": "cli"}
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(run_input))["executionArn"]
    deadline = time.monotonic() + timeout
    with console.status(f"[bold]Monitoring {model} on AWS ({execution.rsplit(':', 1)[-1]})..."):
        while True:
            described = sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the monitoring run was still running after {timeout:.0f} s: {execution}")
            time.sleep(10)
    if described["status"] != "SUCCEEDED":
        raise RuntimeError(
            f"the monitoring run {described['status'].lower()}: {described.get('error')}: "
            f"{described.get('cause')} ({execution})"
        )
    state = json.loads(described["output"])
    s3 = session.client("s3", config=S3_CONFIG)  # the report link signed with SigV4
    bucket, key = split_s3_uri(state["run"]["result_uri"])
    result = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    report_bucket, report_key = split_s3_uri(state["run"]["report_uri"])
    link = s3.generate_presigned_url(
        "get_object", Params={"Bucket": report_bucket, "Key": report_key}, ExpiresIn=REPORT_LINK_SECONDS
    )
    return result, f"{state['run']['report_uri']} ({link})"
