"""The retraining workflow on moto: the dataset builder, the gate, the registry, deployment
checks and rollback, and the local runner end to end on each path (promote, reject, skip,
training failure, silent rollback), with real training and evaluation processes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters

from inferline import endpoints
from inferline.prediction_log import prediction_record
from inferline.resources import (
    bucket_name,
    endpoint_name,
    ground_truth_key,
    model_package_group,
    prediction_log_key,
    retrain_version_claim_key,
    split_s3_uri,
)
from inferline.spec import load_spec
from inferline.workflow import (
    DEPLOY,
    RETRAIN_FAILURE_TAIL,
    RETRAIN_REJECT_STEPS,
    RETRAIN_SKIP_STEPS,
    RETRAIN_STEPS,
    TRAIN,
    VERIFY_DEPLOYMENT,
)
from local_runtime.bootstrap import LOCAL_ROLE_ARN, bootstrap_model
from local_runtime.retrain import LocalRetraining
from model_artifacts.demo_data import generate_training_frame, generate_users
from model_artifacts.train import train
from retrain import dataset, deploy, gate, registry, steps

MODEL = "purchase-propensity"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SPEC = load_spec(MODEL)
# Small enough to train in a second; the gate decisions below do not hang on luck: the
# champion or the contender is made weak on purpose (max_iter=1).
SMALL = SPEC.model_copy(update={"retraining": SPEC.retraining.model_copy(update={"min_labeled_rows": 200})})
USERS = generate_users(300, seed=7)
BASE = generate_training_frame(2000, seed=7, users=USERS)


def small_spec(name: str):
    assert name == MODEL
    return SMALL


# -- fixtures ---------------------------------------------------------------------------------


class FakeEndpoints:
    """SageMaker's endpoint calls over moto's Models and EndpointConfigs (moto has no
    UpdateEndpoint): an update shows Updating once, then InService on the new config, or,
    with `roll_back` set, InService on the old one (SageMaker's silent auto-rollback)."""

    def __init__(self, moto_sm):
        self._moto = moto_sm
        self.configs: dict[str, str] = {}
        self.pending: dict[str, str] = {}
        self.roll_back = False
        self.refuse_updates = False
        self.updates: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._moto, name)

    def update_endpoint(self, EndpointName, EndpointConfigName, **kwargs):  # noqa: N803
        shape = self._moto.meta.service_model.operation_model("UpdateEndpoint").input_shape
        validate_parameters(
            {"EndpointName": EndpointName, "EndpointConfigName": EndpointConfigName} | kwargs, shape
        )
        self._moto.describe_endpoint_config(EndpointConfigName=EndpointConfigName)
        if self.refuse_updates:
            raise ClientError(
                {"Error": {"Code": "ResourceLimitExceeded", "Message": "no capacity"}}, "UpdateEndpoint"
            )
        self.pending[EndpointName] = EndpointConfigName
        self.updates.append({"EndpointConfigName": EndpointConfigName, **kwargs})
        return {}

    def describe_endpoint(self, EndpointName):  # noqa: N803
        status = "InService"
        if EndpointName in self.pending:
            new = self.pending.pop(EndpointName)
            if not self.roll_back:
                self.configs[EndpointName] = new
            status = "Updating"
        return {
            "EndpointName": EndpointName,
            "EndpointStatus": status,
            "EndpointConfigName": self.configs[EndpointName],
        }


@pytest.fixture
def platform(aws, tmp_path):
    """moto with inferline's buckets, the champion (version 1) served and registered, the base
    training set uploaded, and Services for the steps."""
    sm = FakeEndpoints(boto3.client("sagemaker"))
    s3 = aws.s3
    return make_platform(aws.prefix, s3, sm, tmp_path, champion_params={})


def make_platform(prefix, s3, sm, tmp_path, champion_params):
    champion = train(SMALL, BASE, version="1", params=champion_params)
    champion.save(tmp_path / "v1")
    config = bootstrap_model(
        prefix,
        MODEL,
        "1",
        tmp_path / "v1",
        "inferline-serving:test",
        sm,
        s3,
        BASE.to_csv(index=False).encode(),
    )
    sm.configs[endpoint_name(prefix, MODEL)] = config
    sns = boto3.client("sns")
    svc = steps.Services(
        s3=s3,
        sagemaker=sm,
        sns=sns,
        load_spec=small_spec,
        data_bucket=bucket_name(prefix, "data"),
        artifacts_bucket=bucket_name(prefix, "artifacts"),
        prefix=prefix,
        sagemaker_role_arn=LOCAL_ROLE_ARN,
        rollback_alarms={MODEL: ["errors-alarm"]},
        topic_arn=sns.create_topic(Name="retrain")["TopicArn"],
        now=lambda: NOW,
    )
    return svc


def log_production(svc, rows: int, drift: float = 1.0, seed: int = 11, labeled: float = 1.0, start=None):
    """Labeled production traffic in the prediction log and ground-truth layouts, one request
    of 50 rows per minute ending just before NOW."""
    frame = generate_training_frame(rows, seed=seed, drift=drift, users=USERS)
    start = start or NOW - timedelta(minutes=rows // 50 + 1)
    fields = [f for f in SMALL.request.fields if SMALL.request.fields[f].model_input or f == "user_id"]
    for first in range(0, rows, 50):
        at = start + timedelta(minutes=first // 50)
        part = frame.iloc[first : first + 50]
        records, truths = [], []
        for i, row in part.iterrows():
            pid = f"p{seed}-{i:06d}"
            records.append(
                prediction_record(
                    prediction_id=pid,
                    request_id=f"r{seed}-{first}",
                    model=MODEL,
                    model_version="1",
                    created_at=at,
                    ttl_days=90,
                    request={f: row[f] for f in fields},
                    features={f: row[f] for f in SMALL.stored_features},
                    entity_known=True,
                    output={"label": "purchase", "score": 0.5},
                    latency_ms=1.0,
                )  # fmt: skip
            )
            if i < rows * labeled:
                truths.append({"prediction_id": pid, "model": MODEL, "actual": int(row["purchased"]),
                               "predicted_at": at.isoformat(), "recorded_at": at.isoformat()})
        if truths:  # one feedback request per logged request
            key = ground_truth_key(MODEL, at, f"f{seed}-{first}")
            body = "".join(json.dumps(t) + "\n" for t in truths)
            svc.s3.put_object(Bucket=svc.data_bucket, Key=key, Body=body.encode())
        body = "".join(json.dumps(r, default=_jsonable) + "\n" for r in records)
        key = prediction_log_key(MODEL, at, f"r{seed}-{first}")
        svc.s3.put_object(Bucket=svc.data_bucket, Key=key, Body=body.encode())
    return frame


def _jsonable(value):
    return value.item() if hasattr(value, "item") else str(value)


def read_csv(svc, uri: str):
    import io

    import pandas as pd

    bucket, prefix = split_s3_uri(uri)
    key = svc.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"][0]["Key"]
    return pd.read_csv(io.BytesIO(svc.s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


# -- BuildDataset -----------------------------------------------------------------------------


def test_dataset_joins_logs_and_ground_truth_and_holds_out_the_newest_rows(platform):
    frame = log_production(platform, 600)
    built = dataset.build_dataset(
        platform.s3, spec=SMALL, data_bucket=platform.data_bucket, run_id="r1", now=NOW
    )

    assert built["status"] == dataset.READY
    assert built["rows"]["labeled_production"] == 600
    assert built["rows"]["base"] == len(BASE)
    assert built["rows"]["holdout"] == 180  # the newest 30% of the labeled production rows
    train_rows, holdout = read_csv(platform, built["train_uri"]), read_csv(platform, built["holdout_uri"])
    assert len(train_rows) == len(BASE) + 420
    assert list(holdout.columns) == dataset.dataset_columns(SMALL)
    # The holdout is the last 180 rows in time: the generator's rows 420..599, label for label.
    assert holdout["purchased"].tolist() == frame["purchased"].iloc[420:].tolist()
    assert holdout["price"].tolist() == pytest.approx(frame["price"].iloc[420:].tolist())
    manifest = json.loads(steps._read(platform.s3, built["manifest_uri"]))
    assert manifest["files"]["holdout.csv"]["rows"] == 180 and manifest["status"] == "ready"


def test_dataset_is_the_same_when_built_twice(platform):
    log_production(platform, 400)
    a = dataset.build_dataset(platform.s3, spec=SMALL, data_bucket=platform.data_bucket, run_id="a", now=NOW)
    b = dataset.build_dataset(platform.s3, spec=SMALL, data_bucket=platform.data_bucket, run_id="b", now=NOW)
    manifest_a = json.loads(steps._read(platform.s3, a["manifest_uri"]))
    manifest_b = json.loads(steps._read(platform.s3, b["manifest_uri"]))
    for name in ("train.csv", "holdout.csv"):
        assert manifest_a["files"][name]["sha256"] == manifest_b["files"][name]["sha256"]


def test_dataset_skips_with_a_reason_when_too_few_rows_are_labeled(platform):
    log_production(platform, 600, labeled=0.25)  # 150 labeled, the spec asks for 200
    built = dataset.build_dataset(
        platform.s3, spec=SMALL, data_bucket=platform.data_bucket, run_id="r", now=NOW
    )
    assert built["status"] == dataset.SKIPPED
    assert "only 150 labeled production row(s)" in built["reason"] and "at least 200" in built["reason"]
    assert "train_uri" not in built


def test_dataset_only_reads_the_window_and_drops_rows_that_fail_validation(platform):
    log_production(platform, 300, seed=1, start=NOW - timedelta(days=SMALL.retraining.window_days + 3))
    log_production(platform, 300, seed=2)
    # One logged row the spec would refuse today (an out-of-range price).
    bad = prediction_record(
        prediction_id="bad-1", request_id="rb", model=MODEL, model_version="1",
        created_at=NOW - timedelta(hours=1), ttl_days=90, request={"price": -3.0}, features={},
        entity_known=False, output={}, latency_ms=1.0,
    )  # fmt: skip
    platform.s3.put_object(
        Bucket=platform.data_bucket, Key=prediction_log_key(MODEL, NOW, "rb"), Body=json.dumps(bad).encode()
    )
    platform.s3.put_object(
        Bucket=platform.data_bucket,
        Key=ground_truth_key(MODEL, NOW, "fb-1"),
        Body=json.dumps({"prediction_id": "bad-1", "actual": 1, "recorded_at": NOW.isoformat()}).encode(),
    )
    built = dataset.build_dataset(
        platform.s3, spec=SMALL, data_bucket=platform.data_bucket, run_id="r", now=NOW
    )
    assert built["rows"]["labeled_production"] == 300  # the old request is outside the window
    assert sum(built["rows"]["dropped"].values()) == 1
    assert any(reason.startswith("price:") for reason in built["rows"]["dropped"])


def test_dataset_refuses_a_lopsided_label_balance(platform):
    frame = log_production(platform, 400)
    for key in platform.s3.list_objects_v2(Bucket=platform.data_bucket, Prefix="ground-truth/")["Contents"]:
        body = platform.s3.get_object(Bucket=platform.data_bucket, Key=key["Key"])["Body"].read()
        lines = [json.loads(line) | {"actual": 0} for line in body.splitlines()]  # nobody ever buys
        text = "".join(json.dumps(line) + "\n" for line in lines)
        platform.s3.put_object(Bucket=platform.data_bucket, Key=key["Key"], Body=text.encode())
    built = dataset.build_dataset(
        platform.s3, spec=SMALL, data_bucket=platform.data_bucket, run_id="r", now=NOW
    )
    assert built["status"] == dataset.SKIPPED and "class 1 is 0.0%" in built["reason"]
    assert len(frame) == 400


# -- Gate -------------------------------------------------------------------------------------


def report(new: float, old: float | None, slices_new=None, slices_old=None, metric="roc_auc", higher=True):
    def side(version, value, cells):
        return {
            "version": version,
            "overall": {metric: value, "rows": 1000.0},
            "slices": {"device": cells or {}},
        }

    return {
        "metric": metric,
        "higher_is_better": higher,
        "promotion_margin": 0.005,
        "slice_tolerance": 0.02,
        "contender": side("2", new, slices_new),
        "champion": side("1", old, slices_old) if old is not None else None,
    }


def test_gate_promotes_only_past_the_margin():
    assert gate.decide(report(0.80, 0.79))["decision"] == gate.PROMOTE
    held = gate.decide(report(0.793, 0.79))
    assert held["decision"] == gate.REJECT and "better by only 0.0030" in held["reasons"][0]
    assert gate.decide(report(0.70, 0.79))["decision"] == gate.REJECT


def test_gate_rejects_when_a_slice_gets_worse_past_the_tolerance():
    worse = gate.decide(
        report(0.82, 0.79, {"mobile": {"roc_auc": 0.70}, "desktop": {"roc_auc": 0.9}},
               {"mobile": {"roc_auc": 0.75}, "desktop": {"roc_auc": 0.85}})
    )  # fmt: skip
    assert worse["decision"] == gate.REJECT
    assert worse["worse_slices"] == [
        {"slice": "device", "value": "mobile", "champion": 0.75, "contender": 0.70}
    ]
    # A slice too small to judge (metric None) never blocks a promotion.
    small = gate.decide(report(0.82, 0.79, {"tablet": {"roc_auc": None}}, {"tablet": {"roc_auc": 0.9}}))
    assert small["decision"] == gate.PROMOTE


def test_gate_knows_lower_is_better_and_promotes_a_first_version():
    assert gate.decide(report(0.40, 0.45, metric="log_loss", higher=False))["decision"] == gate.PROMOTE
    assert gate.decide(report(0.45, 0.40, metric="log_loss", higher=False))["decision"] == gate.REJECT
    assert gate.decide(report(0.6, None))["decision"] == gate.PROMOTE


# -- Registry and deployment ------------------------------------------------------------------


def test_registry_numbers_versions_and_keeps_metadata_through_status_changes(platform):
    sm, group = platform.sagemaker, model_package_group(platform.prefix, MODEL)
    assert [v["version"] for v in registry.versions(sm, group)] == ["1"]
    assert registry.next_version(sm, group, "1") == "2"
    decision = gate.decide(report(0.70, 0.79))
    reg = registry.register(
        sm, group=group, version="2", image="img", model_data_url="s3://b/m.tar.gz", gate=decision,
        evaluation_uri="s3://b/eval/", run_id="run",
    )  # fmt: skip
    assert reg["approval"] == registry.REJECTED
    registry.set_status(sm, reg["model_package_arn"], registry.APPROVED, "approved by hand", {"by": "test"})
    two = registry.find(sm, group, "2")
    assert two["approval"] == registry.APPROVED and two["description"] == "approved by hand"
    assert two["metadata"]["contender_roc_auc"] == "0.700000" and two["metadata"]["by"] == "test"
    assert registry.next_version(sm, group, "1") == "3"


def test_each_version_number_is_claimed_by_one_run_only(platform):
    s3, bucket = platform.s3, platform.data_bucket
    assert registry.claim_version(s3, bucket, MODEL, "2", "run-a") == "2"
    assert registry.claim_version(s3, bucket, MODEL, "2", "run-b") == "3"  # 2 is run-a's
    assert registry.claim_version(s3, bucket, MODEL, "2", "run-a") == "2"  # a retry keeps its own
    assert registry.claim_version(s3, bucket, MODEL, "2", "run-c") == "4"
    held = s3.get_object(Bucket=bucket, Key=retrain_version_claim_key(MODEL, "3"))["Body"].read()
    assert json.loads(held)["run_id"] == "run-b"


def test_two_runs_started_together_train_different_versions(platform):
    """The schedule and a manual start: neither has registered anything when the other builds
    its dataset, so the registry alone would give both version 2."""
    log_production(platform, 1000)
    first = steps.build_dataset({"model": MODEL, "run_id": "scheduled"}, platform)
    second = steps.build_dataset({"model": MODEL, "run_id": "manual"}, platform)
    assert (first["contender_version"], second["contender_version"]) == ("2", "3")
    assert first["training_job_name"] != second["training_job_name"]
    again = steps.build_dataset({"model": MODEL, "run_id": "scheduled"}, platform)  # a retried step
    assert again["contender_version"] == "2"


def test_deploy_is_blue_green_with_rollback_alarms_and_verify_catches_a_silent_rollback(platform):
    sm = platform.sagemaker
    endpoint = endpoint_name(platform.prefix, MODEL)
    champion = endpoints.champion(sm, endpoint)
    assert champion["version"] == "1"
    # Without rollback alarms (as locally) there is no AutoRollbackConfiguration at all:
    # SageMaker refuses an empty alarm list.
    deploy.start(
        sm, endpoint=endpoint, version="3", model_data_url=champion["model_data_url"],
        image=champion["image"], role_arn=LOCAL_ROLE_ARN, alarms=[], run_id="run",
    )  # fmt: skip
    assert "AutoRollbackConfiguration" not in sm.updates[-1]["DeploymentConfig"]
    sm.pending.clear()
    started = deploy.start(
        sm, endpoint=endpoint, version="2", model_data_url=champion["model_data_url"],
        image=champion["image"], role_arn=LOCAL_ROLE_ARN, alarms=["errors-alarm"], run_id="run",
    )  # fmt: skip
    update = sm.updates[-1]
    assert update["EndpointConfigName"] == started["endpoint_config"]
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": "errors-alarm"}]
    }
    assert (
        update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"]
        == "ALL_AT_ONCE"
    )
    model = sm.describe_model(ModelName=started["model_name"])["PrimaryContainer"]
    assert model["Environment"][endpoints.VERSION_ENV] == "2"
    sm.roll_back = True
    assert deploy.status(sm, endpoint)["status"] == "Updating"
    with pytest.raises(deploy.PromotionRolledBack, match="rolled back"):
        deploy.verify(sm, started)


# -- the local runner, path by path -----------------------------------------------------------


def served_version(svc) -> str:
    return endpoints.champion(svc.sagemaker, endpoint_name(svc.prefix, MODEL))["version"]


@pytest.fixture
def weak_champion(aws, tmp_path):
    """Version 1 trained with one boosting iteration: any sound contender beats it."""
    return make_platform(
        aws.prefix, aws.s3, FakeEndpoints(boto3.client("sagemaker")), tmp_path, {"max_iter": 1}
    )


def test_a_better_contender_is_registered_approved_and_served(weak_champion):
    log_production(weak_champion, 600)
    # Training and evaluation as separate processes with SageMaker's paths, as `inferline retrain` runs them.
    result = LocalRetraining(weak_champion, wait_seconds=0).run(MODEL)

    assert result.outcome == steps.PROMOTED, result.state.get("error")
    assert result.path == RETRAIN_STEPS
    assert served_version(weak_champion) == "2"
    two = registry.find(weak_champion.sagemaker, model_package_group(weak_champion.prefix, MODEL), "2")
    assert two["approval"] == registry.APPROVED
    assert two["model_data_url"] == result.state["training"]["model_data_url"]
    # the training job compiled it: the registry says ONNX Runtime will serve it, as for version 1
    assert two["metadata"]["backend"] == "onnxruntime"
    one = registry.find(weak_champion.sagemaker, model_package_group(weak_champion.prefix, MODEL), "1")
    assert one["metadata"]["backend"] == "onnxruntime"
    # The evaluation report sits beside the model: both versions on the same holdout.
    evaluation = json.loads(
        steps._read(weak_champion.s3, result.state["dataset"]["evaluation_uri"] + "evaluation.json")
    )
    assert evaluation["contender"]["version"] == "2" and evaluation["champion"]["version"] == "1"
    assert evaluation["holdout_rows"] == 180
    assert "version 2 promoted (replaces 1)" in result.notification["subject"]
    assert "roc_auc" in result.notification["message"]


def test_a_worse_contender_is_registered_rejected_and_the_champion_keeps_serving(platform):
    log_production(platform, 600)
    result = LocalRetraining(platform, wait_seconds=0, jobs_in_process=True).run(
        MODEL, params={"max_iter": 1}
    )

    assert result.outcome == steps.REJECTED
    assert result.path == RETRAIN_REJECT_STEPS
    assert served_version(platform) == "1" and platform.sagemaker.updates == []
    rejected = registry.find(platform.sagemaker, model_package_group(platform.prefix, MODEL), "2")
    assert rejected["approval"] == registry.REJECTED
    assert "version 2 rejected; version 1 keeps serving" in result.notification["subject"]


def test_too_few_labels_is_a_reported_skip(platform):
    result = LocalRetraining(platform, wait_seconds=0, jobs_in_process=True).run(MODEL)
    assert result.outcome == steps.SKIPPED and result.path == RETRAIN_SKIP_STEPS
    assert "retraining needs at least 200" in result.notification["message"]
    assert served_version(platform) == "1"


def test_a_training_failure_leaves_the_champion_and_notifies(platform):
    log_production(platform, 600)
    result = LocalRetraining(platform, wait_seconds=0, jobs_in_process=True).run(
        MODEL, params={"no_such_parameter": 3}
    )

    assert result.outcome == steps.FAILED
    assert result.path[-3:] == (TRAIN, *RETRAIN_FAILURE_TAIL)
    assert result.state["error"]["Error"] == "TrainingJobFailed"
    assert "no_such_parameter" in result.state["error"]["Cause"]  # the job's failure reason
    assert "retraining failed; version 1 keeps serving" in result.notification["subject"]
    assert served_version(platform) == "1"
    assert [
        v["version"]
        for v in registry.versions(platform.sagemaker, model_package_group(platform.prefix, MODEL))
    ] == ["1"]


def test_a_silent_rollback_is_a_failed_promotion(weak_champion):
    log_production(weak_champion, 600)
    weak_champion.sagemaker.roll_back = True
    result = LocalRetraining(weak_champion, wait_seconds=0, jobs_in_process=True).run(MODEL)

    assert result.outcome == steps.FAILED
    assert result.path[-3:] == (VERIFY_DEPLOYMENT, *RETRAIN_FAILURE_TAIL)
    assert result.state["error"]["Error"] == "PromotionRolledBack"
    assert served_version(weak_champion) == "1"
    two = registry.find(weak_champion.sagemaker, model_package_group(weak_champion.prefix, MODEL), "2")
    assert two["approval"] == registry.REJECTED and two["description"].startswith("deployment rolled back")


def test_a_failed_deployment_leaves_the_champion_and_rejects_the_version(weak_champion):
    log_production(weak_champion, 600)
    weak_champion.sagemaker.refuse_updates = True
    result = LocalRetraining(weak_champion, wait_seconds=0, jobs_in_process=True).run(MODEL)

    assert result.outcome == steps.FAILED
    assert result.path[-3:] == (DEPLOY, *RETRAIN_FAILURE_TAIL)
    assert served_version(weak_champion) == "1"
    two = registry.find(weak_champion.sagemaker, model_package_group(weak_champion.prefix, MODEL), "2")
    # Approved by the gate, never served: a rollback must never pick it.
    assert two["approval"] == registry.REJECTED and two["description"].startswith("promotion failed")


def test_rollback_restores_the_previous_approved_version(weak_champion):
    log_production(weak_champion, 600)
    assert (
        LocalRetraining(weak_champion, wait_seconds=0, jobs_in_process=True).run(MODEL).outcome
        == steps.PROMOTED
    )
    sm, group = weak_champion.sagemaker, model_package_group(weak_champion.prefix, MODEL)

    deployment = steps.rollback(MODEL, weak_champion)
    assert deployment["version"] == "1" and deployment["rolled_back_from"] == "2"
    assert registry.find(sm, group, "2")["approval"] == registry.APPROVED  # not before it serves
    deploy.status(sm, deployment["endpoint"])  # Updating, then settled
    deploy.verify(sm, deployment)
    steps.record_rollback(weak_champion, deployment)
    assert served_version(weak_champion) == "1"
    assert registry.find(sm, group, "2")["approval"] == registry.REJECTED
    assert "restored by a rollback from version 2" in registry.find(sm, group, "1")["description"]
    with pytest.raises(steps.RollbackError, match="no earlier approved version"):
        steps.rollback(MODEL, weak_champion)
    with pytest.raises(steps.RollbackError, match="approved"):
        steps.rollback(MODEL, weak_champion, to_version="2")  # rejected now: not a target


# -- the Lambda handlers ----------------------------------------------------------------------


def test_the_gate_lambda_reads_the_evaluation_beside_the_model(aws, monkeypatch):
    from local_runtime.online_workflow import context_for

    monkeypatch.setenv("SAGEMAKER_ROLE_ARN", LOCAL_ROLE_ARN)
    monkeypatch.setenv("ROLLBACK_ALARMS", json.dumps({MODEL: ["errors"]}))
    monkeypatch.setenv("RETRAIN_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:retrain")
    from retrain import handlers

    handlers.services.cache_clear()
    uri = f"s3://{bucket_name(aws.prefix, 'artifacts')}/models/{MODEL}/job/evaluation/"
    aws.s3.put_object(
        Bucket=bucket_name(aws.prefix, "artifacts"),
        Key=f"models/{MODEL}/job/evaluation/evaluation.json",
        Body=json.dumps(report(0.81, 0.79)).encode(),
    )
    decision = handlers.gate({"model": MODEL, "dataset": {"evaluation_uri": uri}}, context_for("gate"))
    assert decision["decision"] == gate.PROMOTE and decision["report"] == uri + "evaluation.md"
    handlers.services.cache_clear()
    # Every Lambda-backed state of the workflow names a handler that exists.
    from inferline.workflow import RETRAIN_LAMBDAS

    assert all(callable(getattr(handlers, name, None)) for name in RETRAIN_LAMBDAS.values())


def test_the_cli_reaches_a_deployed_stack_with_the_retraining_lambdas_settings(aws):
    """`inferline models/rollback --aws` build their Services from the Deploy Lambda's own
    environment, so they act on the stack exactly as the workflow does."""
    import io
    import zipfile

    from local_runtime.retrain import aws_services

    role = boto3.client("iam").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("handler.py", "")
    env = {
        "DATA_BUCKET": "stack-data-1", "ARTIFACTS_BUCKET": "stack-artifacts-1", "RESOURCE_PREFIX": "stack",
        "SAGEMAKER_ROLE_ARN": LOCAL_ROLE_ARN, "ROLLBACK_ALARMS": json.dumps({MODEL: ["stack-errors"]}),
        "RETRAIN_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:stack-retraining",
    }  # fmt: skip
    boto3.client("lambda").create_function(
        FunctionName="stack-retrain-deploy", Runtime="python3.12", Role=role, Handler="handler.x",
        Code={"ZipFile": code.getvalue()}, Environment={"Variables": env},
    )  # fmt: skip
    svc = aws_services("stack")
    assert (svc.data_bucket, svc.artifacts_bucket, svc.prefix) == (
        "stack-data-1",
        "stack-artifacts-1",
        "stack",
    )
    assert svc.rollback_alarms == {MODEL: ["stack-errors"]} and svc.topic_arn.endswith("stack-retraining")
