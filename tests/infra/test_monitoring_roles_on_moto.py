"""The monitoring roles' S3 permissions, as synthesized, against what the monitoring code really
does: a run's Prepare, processing job and Publish in turn, each with its own role's statements
(the job with the arguments Prepare wrote), a version monitored before it had a baseline, and
the retraining trigger's cool-down claim.

As in test_batch_roles_on_moto.py, a role's S3 statements become an IAM user's policy in moto
with IAM checking on (other services are allowed: moto matches the resources of S3 statements
only). Two rules of S3 that moto does not apply are applied here, on the client:

- a ListBucket statement's `s3:prefix` condition (moto ignores StringLike): a listing of a
  prefix no statement grants is refused;
- a GetObject of a missing key answers NoSuchKey only to a principal that may list that key
  (here: an unconditioned ListBucket, or one whose `s3:prefix` patterns match the key), and
  AccessDenied to anyone else. The monitoring code treats NoSuchKey as "not there yet" (no
  baseline kept, no cool-down claim), so a role that may not list would fail on AWS alone.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from infra_helpers import iam_user_keys, s3_policy, with_parameters
from moto.core.authorization import enable_iam_authentication
from threadpoolctl import threadpool_limits

from inferline.monitoring import ALARMS_BY_KEY, alarm_name
from inferline.prediction_log import prediction_record
from inferline.refusals import refusal_record
from inferline.resources import (
    base_training_key,
    bucket_name,
    endpoint_name,
    ground_truth_key,
    model_version_prefix,
    monitoring_baseline_key,
    monitoring_latest_prefix,
    prediction_log_key,
    refusal_log_key,
)
from inferline.spec import load_spec
from infra.serving import model_data_parameter
from model_artifacts.demo_data import draw_labels, generate_requests, generate_training_frame, generate_users
from model_artifacts.monitoring.__main__ import run as run_job
from model_artifacts.monitoring.run import monitor
from model_artifacts.train import train, write_metrics
from monitor import steps

MODEL = "purchase-propensity"
SPEC = load_spec(MODEL)
NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
ROWS = 600  # above spec.monitoring.min_rows; every other one labeled: above min_labeled_rows
# The model data the stack was deployed with (the <Model>ModelDataUrl parameter): another bucket.
DEPLOYED_BUCKET, DEPLOYED_KEY = "deployed-models", "purchase-propensity/model.tar.gz"


# -- a trained version and its traffic --------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> dict:
    """A small demo model (its training data round-tripped through CSV, as the base training set
    is stored) and the users its traffic comes from."""
    users = generate_users(500, 7)
    frame = generate_training_frame(3000, 7, users=users)
    frame = pd.read_csv(io.StringIO(frame.to_csv(index=False)))
    with threadpool_limits(1):
        bundle = train(SPEC, frame, version="1")
    return {"bundle": bundle, "frame": frame, "users": users}


def archive(bundle, folder: Path) -> bytes:
    """A model.tar.gz as training writes it: model.joblib and metrics.json (the version)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(bundle.save(folder), arcname="model.joblib")
        tar.add(write_metrics(bundle, folder), arcname="metrics.json")
    return buffer.getvalue()


def log_traffic(s3, bucket: str, trained: dict) -> None:
    """ROWS online predictions of version 1 over the window, ten per request, half of them with
    ground truth an hour later, and a refused request: as the platform logs them."""
    bundle, users = trained["bundle"], trained["users"]
    stored = {u["user_id"]: u for u in users}
    defaults = {name: f.default for name, f in SPEC.stored_features.items()}
    requests = generate_requests(ROWS, 11, 0.0, users=users)
    features = [
        {n: r[n] for n in SPEC.model_inputs if n in r}
        | {k: stored.get(r["user_id"], defaults)[k] for k in defaults}
        for r in requests
    ]
    scores = bundle.predict_proba(features)[:, 1]
    actual = draw_labels([r | f for r, f in zip(requests, features, strict=True)], 11, 0.0)
    start = NOW - timedelta(hours=20)
    lines, truth = [], []
    for i, (request, feats, score) in enumerate(zip(requests, features, scores, strict=True)):
        record = prediction_record(
            prediction_id=str(uuid.UUID(int=i)), request_id=f"r-{i // 10}", model=MODEL, model_version="1",
            created_at=start + timedelta(seconds=30 * i), ttl_days=90,
            request={k: v for k, v in request.items() if k != "email"}, features=feats,
            entity_known=request["user_id"] in stored,
            output={"label": "purchase" if score >= 0.5 else "no_purchase", "score": float(score)},
            latency_ms=3.0,
        )  # fmt: skip
        lines.append(record)
        if i % 2 == 0:
            recorded = start + timedelta(seconds=30 * i, hours=1)
            truth.append({"prediction_id": record["prediction_id"], "model": MODEL, "model_version": "1",
                          "predicted_at": record["created_at"], "actual": int(actual[i]),
                          "recorded_at": recorded.isoformat()})  # fmt: skip
    for first in range(0, ROWS, 10):
        part = lines[first : first + 10]
        key = prediction_log_key(MODEL, datetime.fromisoformat(part[0]["created_at"]), part[0]["request_id"])
        s3.put_object(Bucket=bucket, Key=key, Body="".join(json.dumps(line) + "\n" for line in part).encode())
    body = "".join(json.dumps(t) + "\n" for t in truth).encode()
    s3.put_object(Bucket=bucket, Key=ground_truth_key(MODEL, start + timedelta(hours=6), "fb"), Body=body)
    refused = refusal_record(
        spec=SPEC, source="online", request_id="refused-0", created_at=start, status=422,
        error="invalid input", refused=1, problems=Counter({("price", "must be a number"): 1}),
    )  # fmt: skip
    s3.put_object(
        Bucket=bucket, Key=refusal_log_key(MODEL, start, "refused-0"), Body=json.dumps(refused).encode()
    )


def serve(aws, trained: dict, tmp_path: Path) -> None:
    """The endpoint as the stack deploys it: its Model's data is the parameter's model.tar.gz,
    whose version only metrics.json knows (a Model retraining created carries it itself)."""
    s3 = aws.s3
    s3.create_bucket(Bucket=DEPLOYED_BUCKET)
    s3.put_object(
        Bucket=DEPLOYED_BUCKET, Key=DEPLOYED_KEY, Body=archive(trained["bundle"], tmp_path / "deployed")
    )
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(
        ModelName="deployed",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/serving",
        PrimaryContainer={
            "Image": "serving:latest",
            "ModelDataUrl": f"s3://{DEPLOYED_BUCKET}/{DEPLOYED_KEY}",
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="deployed",
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "deployed", "InitialInstanceCount": 1,
                             "InstanceType": "ml.m5.large"}],
    )  # fmt: skip
    sagemaker.create_endpoint(EndpointName=endpoint_name(aws.prefix, MODEL), EndpointConfigName="deployed")


# -- the roles' policies, and S3 as S3 answers them ------------------------------------------------


def role_policy(synth, aws, role, without: str | None = None) -> dict:
    """The role's S3 statements, bound to moto's buckets, as deployed with the model data above."""
    storage = synth.stack.storage
    template = with_parameters(
        synth.template,
        {model_data_parameter(m): f"s3://{DEPLOYED_BUCKET}/{DEPLOYED_KEY}" for m in synth.config.models},
    )
    buckets = {
        f"<{synth.logical_id(storage.data)}.Arn>": aws.data_bucket,
        f"<{synth.logical_id(storage.artifacts)}.Arn>": bucket_name(aws.prefix, "artifacts"),
        f"arn:<AWS::Partition>:s3:::{DEPLOYED_BUCKET}": DEPLOYED_BUCKET,
    }
    return s3_policy(template, synth.logical_id(role), buckets, without)


def listable(policy: dict) -> dict[str, list[str]]:
    """bucket -> the key patterns its ListBucket statements grant ("*": any)."""
    found: dict[str, list[str]] = {}
    for statement in policy["Statement"]:
        actions = statement.get("Action", [])
        if "s3:ListBucket" not in (actions if isinstance(actions, list) else [actions]):
            continue
        patterns = (statement.get("Condition") or {}).get("StringLike", {}).get("s3:prefix", ["*"])
        for resource in statement["Resource"]:
            found.setdefault(resource.removeprefix("arn:aws:s3:::"), []).extend(patterns)
    return found


def s3_as(policy: dict):
    """An S3 client signed by a user holding `policy`, that answers as S3 does (module docstring)."""
    session = boto3.Session(**iam_user_keys(policy), region_name="us-east-1")
    client = session.client("s3")
    patterns = listable(policy)

    def may_list(bucket: str, key: str) -> bool:
        return any(fnmatchcase(key, p) for p in patterns.get(bucket, []))

    def check_listing(params, **_):
        if not may_list(params["Bucket"], params.get("Prefix", "")):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": f"may not list {params}"}},
                              "ListObjectsV2")  # fmt: skip

    def remember_key(params, context, **_):
        context["requested"] = (params["Bucket"], params["Key"])

    def hide_missing(parsed, context, **_):
        if parsed.get("Error", {}).get("Code") == "NoSuchKey" and not may_list(*context["requested"]):
            parsed["Error"]["Code"] = "AccessDenied"

    client.meta.events.register("before-parameter-build.s3.ListObjectsV2", check_listing)
    client.meta.events.register("before-parameter-build.s3.GetObject", remember_key)
    client.meta.events.register("after-call.s3.GetObject", hide_missing)
    return client


def services_as(synth, aws, role, without: str | None = None, **extra) -> steps.Services:
    """Monitoring Services whose calls are signed with a user holding `role`'s S3 statements."""
    policy = role_policy(synth, aws, role, without)
    session = boto3.Session(**iam_user_keys(policy), region_name="us-east-1")
    return steps.Services(
        s3=s3_as(policy), sagemaker=session.client("sagemaker"),
        stepfunctions=session.client("stepfunctions"), load_spec=load_spec, data_bucket=aws.data_bucket,
        prefix=aws.prefix, models=[MODEL], now=lambda: NOW, **extra,
    )  # fmt: skip


# -- a monitoring run, step by step ----------------------------------------------------------------


def test_prepare_the_job_and_publish_may_do_all_a_run_needs(synth, aws, trained, tmp_path):
    monitoring = synth.stack.monitoring
    serve(aws, trained, tmp_path)
    log_traffic(aws.s3, aws.data_bucket, trained)
    prepare = services_as(synth, aws, monitoring.functions["prepare"].role)
    job_s3 = s3_as(role_policy(synth, aws, monitoring.job_role))
    publish = services_as(synth, aws, monitoring.functions["publish"].role)
    figures: dict[str, float] = {}
    with enable_iam_authentication():
        run = steps.prepare({"model": MODEL, "trigger": "schedule"}, prepare)
        done = run_job(run["arguments"], s3=job_s3, now=NOW)
        state = {"model": MODEL, "run": run, "job": {"job_name": run["job_name"], "status": "Completed"}}
        published = steps.publish(state, publish, lambda model, version, values: figures.update(values))
    assert run["champion"]["version"] == "1"  # read from the deployed model.tar.gz's metrics.json
    assert run["champion"]["model_data_url"] == f"s3://{DEPLOYED_BUCKET}/{DEPLOYED_KEY}"
    assert done.result["judged"]["drift"] is True
    # the version carries its baseline: none computed, none kept
    kept = aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix=monitoring_baseline_key(MODEL, ""))
    assert "Contents" not in kept
    assert published["status"] in ("healthy", "alarm") and published["report_uri"] == run["report_uri"]
    assert figures["Predictions"] == ROWS
    latest = aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix=monitoring_latest_prefix(MODEL))
    assert {o["Key"].rsplit("/", 1)[-1] for o in latest["Contents"]} == {"result.json", "report.html"}


def test_a_version_without_a_baseline_gets_one_computed_and_kept(synth, aws, trained, tmp_path):
    """A version trained before versions carried a baseline: the job finds its training data
    (no retraining claim: the base training set), computes the baseline and keeps it."""
    bundle, frame = trained["bundle"], trained["frame"]
    artifacts = bucket_name(aws.prefix, "artifacts")
    old = type(bundle)(spec=bundle.spec, version="1", pipeline=bundle.pipeline, metrics=bundle.metrics,
                       baseline={}, info=bundle.info)  # fmt: skip
    key = f"{model_version_prefix(MODEL)}job-1/output/model.tar.gz"
    aws.s3.put_object(Bucket=artifacts, Key=key, Body=archive(old, tmp_path / "old"))
    aws.s3.put_object(
        Bucket=aws.data_bucket, Key=base_training_key(MODEL), Body=frame.to_csv(index=False).encode()
    )
    log_traffic(aws.s3, aws.data_bucket, trained)
    job_s3 = s3_as(role_policy(synth, aws, synth.stack.monitoring.job_role))
    champion = {"version": "1", "model_data_url": f"s3://{artifacts}/{key}"}
    with enable_iam_authentication():
        done = monitor(job_s3, model=MODEL, data_bucket=aws.data_bucket, champion=champion, now=NOW)
    kept = aws.s3.get_object(Bucket=aws.data_bucket, Key=monitoring_baseline_key(MODEL, "1"))
    assert json.loads(kept["Body"].read())
    assert done.result["baseline"]["status"] != "missing"
    assert done.result["judged"]["drift"] is True


def test_without_listing_the_bucket_the_job_cannot_read_its_window(synth, aws, trained, tmp_path):
    """The test sees a missing grant: the job's listing, taken out."""
    serve(aws, trained, tmp_path)
    log_traffic(aws.s3, aws.data_bucket, trained)
    job_s3 = s3_as(role_policy(synth, aws, synth.stack.monitoring.job_role, without="s3:ListBucket"))
    champion = {"version": "1", "model_data_url": f"s3://{DEPLOYED_BUCKET}/{DEPLOYED_KEY}"}
    with enable_iam_authentication(), pytest.raises(ClientError, match="AccessDenied"):
        monitor(job_s3, model=MODEL, data_bucket=aws.data_bucket, champion=champion, now=NOW, write=False)


# -- the retraining trigger -------------------------------------------------------------------------


def retraining_machine() -> str:
    return boto3.client("stepfunctions").create_state_machine(
        name="retrain",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/retrain",
    )["stateMachineArn"]


def drift_alarm(prefix: str) -> dict:
    """The EventBridge event of a drift alarm entering ALARM."""
    name = alarm_name(prefix, MODEL, ALARMS_BY_KEY["drifted_features"])
    state = {"value": "ALARM", "reason": "Threshold Crossed"}
    return {"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "detail": {"alarmName": name, "state": state}}  # fmt: skip


def test_on_alarm_claims_the_cooldown_once_and_starts_retraining(synth, aws):
    machine = retraining_machine()
    svc = services_as(synth, aws, synth.stack.monitoring.functions["on_alarm"].role,
                      retrain_state_machine_arn=machine)  # fmt: skip
    with enable_iam_authentication():
        first = steps.on_alarm(drift_alarm(aws.prefix), svc)  # no claim yet: NoSuchKey, then a new one
        second = steps.on_alarm(drift_alarm(aws.prefix), svc)
    assert first["action"] == steps.STARTED
    assert second["action"] == steps.COOLING_DOWN
    executions = boto3.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    assert len(executions) == 1


def test_the_first_alarm_starts_retraining_though_the_role_may_not_list_the_claims(synth, aws):
    """On AWS a missing claim reads as AccessDenied to a role that may not list the bucket (the
    on_alarm role may not): it reads as absent, and the conditional write claims it."""
    machine = retraining_machine()
    svc = services_as(synth, aws, synth.stack.monitoring.functions["on_alarm"].role,
                      retrain_state_machine_arn=machine)  # fmt: skip
    with enable_iam_authentication():
        assert steps.on_alarm(drift_alarm(aws.prefix), svc)["action"] == steps.STARTED
    executions = boto3.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    assert len(executions) == 1
