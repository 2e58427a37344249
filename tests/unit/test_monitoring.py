"""A monitoring run on moto: the window it reads, the version it judges, the baseline it finds
(a version's own, or one computed from its training data), alarms with CloudWatch's state
rule, and the Lambda steps around it (Prepare, Publish, a retraining started by an alarm with
its cool-down)."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from inferline.endpoints import VERSION_ENV
from inferline.monitoring import ALARMS, alarm_name
from inferline.prediction_log import prediction_record
from inferline.refusals import count_problems, refusal_record, write_refusal
from inferline.resources import (
    base_training_key,
    bucket_name,
    ground_truth_key,
    monitoring_baseline_key,
    prediction_log_key,
    retrain_trigger_key,
)
from inferline.spec import load_spec
from local_runtime.bootstrap import model_archive
from model_artifacts.demo_data import draw_labels, generate_requests, generate_training_frame, generate_users
from model_artifacts.monitoring.baseline import BASELINE_FORMAT
from model_artifacts.monitoring.logs import read_window
from model_artifacts.monitoring.run import monitor
from model_artifacts.train import frame_sha256, train
from monitor import steps

SPEC = load_spec("purchase-propensity")
MODEL = SPEC.name
NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
USERS = generate_users(1000, 7)
STORED = {u["user_id"]: u for u in USERS}
DEFAULTS = {n: f.default for n, f in SPEC.stored_features.items()}


@pytest.fixture(scope="module")
def training_frame() -> pd.DataFrame:
    """As `inferline up` trains the demo model: from the CSV it wrote."""
    text = generate_training_frame(6000, 7, users=USERS).to_csv(index=False)
    return pd.read_csv(io.StringIO(text))


@pytest.fixture(scope="module")
def bundle(training_frame):
    return train(SPEC, training_frame, version="1")


@pytest.fixture
def world(aws, bundle, tmp_path):
    """The data bucket, the artifacts bucket holding version 1's model.tar.gz."""
    artifacts = bucket_name(aws.prefix, "artifacts")
    return SimpleNamespace(
        s3=aws.s3, data=aws.data_bucket, artifacts=artifacts,
        champion=upload(aws.s3, artifacts, bundle, tmp_path / "v1", "1"),
    )  # fmt: skip


def upload(s3, bucket: str, bundle, folder, version: str) -> dict:
    bundle.save(folder)
    key = f"models/{MODEL}/v{version}/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=model_archive(folder))
    return {"version": version, "model_data_url": f"s3://{bucket}/{key}"}


def log_traffic(world, bundle, rows, *, at, seed=11, drift=0.0, version="1", labeled=1.0, source="online"):
    """`rows` predictions logged as the platform logs them (online: requests of 50; batch: one
    chunk object), the first `labeled` share with ground truth arriving an hour later."""
    requests = generate_requests(rows, seed, drift, users=USERS)
    features = [
        {n: r[n] for n in SPEC.model_inputs if n in r}
        | {k: STORED.get(r["user_id"], DEFAULTS)[k] for k in DEFAULTS}
        for r in requests
    ]
    scores = bundle.predict_proba(features)[:, 1]
    actual = draw_labels([r | f for r, f in zip(requests, features, strict=True)], seed, drift)
    records, truths = [], []
    for i, (request, feature, score) in enumerate(zip(requests, features, scores, strict=True)):
        pid = f"{source}-{seed}-{i}-{uuid.uuid4().hex[:6]}"
        records.append(prediction_record(
            prediction_id=pid,
            request_id=f"r{seed}-{i // 50}" if source == "online" else f"batch-j{seed}-000000",
            model=MODEL, model_version=version, created_at=at + timedelta(seconds=i), ttl_days=90,
            request={k: v for k, v in request.items() if k != "email"}, features=feature,
            entity_known=request["user_id"] in STORED,
            output={"label": SPEC.label_for(int(score >= 0.5)), "score": float(score)},
            latency_ms=4.0 + i % 7,
            source=source,
        ))  # fmt: skip
        if i < rows * labeled:
            truths.append({"prediction_id": pid, "model": MODEL, "model_version": version,
                           "predicted_at": records[-1]["created_at"], "actual": int(actual[i]),
                           "recorded_at": (at + timedelta(hours=1)).isoformat()})  # fmt: skip
    groups = [records[i : i + 50] for i in range(0, rows, 50)] if source == "online" else [records]
    for group in groups:
        key = prediction_log_key(MODEL, at, group[0]["request_id"])
        world.s3.put_object(
            Bucket=world.data, Key=key, Body="".join(json.dumps(r) + "\n" for r in group).encode()
        )
    if truths:
        key = ground_truth_key(MODEL, at + timedelta(hours=1), f"fb-{seed}-{uuid.uuid4().hex[:6]}")
        world.s3.put_object(
            Bucket=world.data, Key=key, Body="".join(json.dumps(t) + "\n" for t in truths).encode()
        )
    return records


def run(world, champion=None, **kwargs):
    kwargs.setdefault("now", NOW)
    kwargs.setdefault("since", NOW - timedelta(hours=24))
    return monitor(
        world.s3, model=MODEL, data_bucket=world.data, champion=champion or world.champion, **kwargs
    )


# -- the window ----------------------------------------------------------------------------------


def test_the_window_reads_its_predictions_their_ground_truth_and_nothing_else(world, bundle):
    log_traffic(world, bundle, 100, at=NOW - timedelta(hours=30), seed=1)  # before the window
    inside = log_traffic(world, bundle, 300, at=NOW - timedelta(hours=5), seed=2, labeled=0.5)
    log_traffic(world, bundle, 200, at=NOW - timedelta(hours=3), seed=3, source="batch")
    log_traffic(world, bundle, 100, at=NOW + timedelta(minutes=1), seed=4)  # after it
    window = read_window(
        world.s3, world.data, SPEC, NOW - timedelta(hours=24), NOW, now=NOW + timedelta(hours=2)
    )
    assert window.n == 500
    assert int((window.source == 0).sum()) == 300 and int((window.source == 1).sum()) == 200
    assert window.online_requests == {"1": 6} and len(window.batch_jobs) == 1
    assert int((window.actual >= 0).sum()) == 150 + 200  # labeled ones, joined by prediction id
    assert window.ground_truth_unmatched == 200  # labels that arrived in reach, of predictions outside
    online = window.source == 0  # objects are read in key order: r2-0 .. r2-5, the requests' order
    np.testing.assert_allclose(window.score[online], [r["output"]["score"] for r in inside])
    np.testing.assert_allclose(window.numeric["price"][online], [r["features"]["price"] for r in inside])
    country = window.categorical["country"].strings()[online]
    assert list(country) == [r["features"]["country"] for r in inside]
    delays = window.label_delay_s[online & (window.actual >= 0)]
    assert np.allclose(delays, 3600 - np.arange(150))  # all recorded an hour after the first


def test_a_corrected_label_counts_once_with_its_newest_value(world, bundle):
    (record,) = log_traffic(world, bundle, 1, at=NOW - timedelta(hours=2), labeled=0.0)
    for value, hour in ((1, 1), (0, 3), (1, 2)):  # arrival order differs from recorded order
        line = {
            "prediction_id": record["prediction_id"],
            "model": MODEL,
            "actual": value,
            "predicted_at": record["created_at"],
            "recorded_at": (NOW - timedelta(hours=hour)).isoformat(),
        }
        key = ground_truth_key(MODEL, NOW, uuid.uuid4().hex)
        world.s3.put_object(Bucket=world.data, Key=key, Body=json.dumps(line).encode())
    window = read_window(world.s3, world.data, SPEC, NOW - timedelta(hours=24), NOW)
    assert window.actual.tolist() == [1]  # recorded an hour ago: the newest


def test_only_the_serving_version_is_judged(world, bundle):
    log_traffic(world, bundle, 600, at=NOW - timedelta(hours=6), seed=5, version="1")
    log_traffic(world, bundle, 400, at=NOW - timedelta(hours=4), seed=6, drift=1.0, version="0")
    result = run(world).result
    assert result["service"]["predictions"]["by_version"] == {"1": 600, "0": 400}
    assert result["judged"]["rows"] == 600 and result["quality"]["labeled"] == 600
    assert result["drift"]["drifted"] == [], "the drifted traffic came from another version"


def test_an_empty_window_reports_that_it_has_nothing_to_judge(world):
    done = run(world)
    result = done.result
    assert result["summary"]["status"] == "no_data" and result["drift"] is None
    assert result["judged"] == {"drift": False, "rows": 0, "reason": result["judged"]["reason"]}
    assert all(a["state"] == "INSUFFICIENT_DATA" for a in result["alarms"].values()
               if a["metric"] != "NonFiniteScores")  # fmt: skip
    json.dumps(result, allow_nan=False)  # strict JSON: a browser parses it
    assert "nothing to judge" in done.html
    assert world.s3.get_object(Bucket=world.data, Key=f"monitoring/{MODEL}/latest/report.html")


def test_a_window_below_min_rows_is_shown_not_judged(world, bundle):
    log_traffic(world, bundle, 100, at=NOW - timedelta(hours=1), drift=1.0)
    result = run(world).result
    assert result["summary"]["status"] == "insufficient"
    assert "500" in result["judged"]["reason"]
    assert result["drift"]["features"]["device"]["p_value"] < 0.05  # computed and shown...
    assert result["drift"]["drifted"] == [] and result["figures"]["DriftedFeatures"] is None  # ...not judged


# -- drift, quality, alarms ---------------------------------------------------------------------


def test_drift_fires_its_alarm_once_and_keeps_it_while_runs_cannot_judge(world, bundle):
    log_traffic(world, bundle, 800, at=NOW - timedelta(hours=30), seed=7)
    first = run(
        world, since=NOW - timedelta(hours=36), until=NOW - timedelta(hours=24), now=NOW - timedelta(hours=23)
    )
    first = first.result
    assert first["summary"]["status"] == "healthy"
    assert first["alarms"]["drifted_features"]["state"] == "OK"

    log_traffic(world, bundle, 800, at=NOW - timedelta(hours=5), seed=8, drift=1.0)
    second = run(world, now=NOW).result
    alarm = second["alarms"]["drifted_features"]
    assert alarm["state"] == "ALARM" and alarm["fired"] and alarm["previous"] == "OK"
    assert {"device", "country"} <= set(second["drift"]["drifted"])
    assert second["history"][0]["run_id"] == first["run_id"] and len(second["history"]) == 2
    assert any("device drifted" in line and "mobile" in line for line in second["summary"]["findings"])

    third = run(world, since=NOW - timedelta(minutes=1), now=NOW + timedelta(minutes=1)).result  # no rows
    kept = third["alarms"]["drifted_features"]
    assert kept["state"] == "ALARM" and kept.get("kept") and not kept["fired"]
    assert steps.retrain_reasons(second) and not steps.retrain_reasons(third)


def test_live_quality_and_its_estimate_against_the_reference(world, bundle):
    log_traffic(world, bundle, 2000, at=NOW - timedelta(hours=6), seed=9, labeled=0.4)
    quality = run(world).result["quality"]
    assert quality["labeled"] == 800 and quality["coverage"] == pytest.approx(0.4)
    reference = bundle.baseline["metrics"]["roc_auc"]
    assert quality["reference"]["roc_auc"] == reference
    assert abs(quality["live"]["roc_auc"] - reference) < 0.06
    assert abs(quality["estimated"]["value"] - quality["live"]["roc_auc"]) < 0.05
    assert quality["drop"] == pytest.approx(reference - quality["live"]["roc_auc"])
    assert quality["label_delay_hours"]["p50"] == pytest.approx(1.0, abs=0.2)
    assert [s["value"] for s in quality["slices"]["device"]][:1] in (["mobile"], ["desktop"])
    assert sum(b["rows"] for b in quality["calibration"]["window"]) == 800


def test_data_quality_counts_refusals_defaults_and_nonfinite_scores(world, bundle):
    log_traffic(world, bundle, 600, at=NOW - timedelta(hours=6), seed=10)
    bad = log_traffic(world, bundle, 2, at=NOW - timedelta(hours=2), seed=12, labeled=0)
    for record in bad:  # a model answering NaN: logged as it came
        record["output"]["score"] = float("nan")
    world.s3.put_object(Bucket=world.data, Key=prediction_log_key(MODEL, NOW, "nan"),
                        Body="".join(json.dumps(r) + "\n" for r in bad).encode())  # fmt: skip
    refusal = refusal_record(
        spec=SPEC, source="online", request_id="bad-1", created_at=NOW - timedelta(hours=1), status=400,
        error="invalid_request", refused=1, problems=count_problems(SPEC, [("price", "must be >= 0")]),
    )  # fmt: skip
    write_refusal(world.s3, world.data, refusal)
    result = run(world).result
    dq = result["data_quality"]
    assert dq["nonfinite_scores"] == 2 and result["alarms"]["nonfinite_scores"]["state"] == "ALARM"
    assert dq["refusals"]["online_requests"] == 1
    assert dq["refusals"]["by_field"] == [{"field": "price", "problem": "must be >= 0", "count": 1}]
    assert dq["default_features_share"] == pytest.approx(
        np.mean(
            [r["user_id"] not in STORED for r in generate_requests(600, 10, 0.0, users=USERS)] + [False] * 4
        ),
        abs=0.01,
    )
    json.dumps(result, allow_nan=False)


# -- baselines of versions trained before they carried one --------------------------------------------


def old_version(bundle, frame):
    """The same model as a version trained before baselines: no baseline, the data hash recorded."""
    from model_artifacts.bundle import ModelBundle

    info = dict(bundle.info) | {"data_sha256": frame_sha256(frame)}
    return ModelBundle(spec=bundle.spec, version="1", pipeline=bundle.pipeline, metrics=bundle.metrics,
                       baseline={"price": {"kind": "numeric"}}, info=info)  # fmt: skip


def test_an_old_version_gets_a_baseline_from_its_training_data_once(world, bundle, training_frame, tmp_path):
    champion = upload(world.s3, world.artifacts, old_version(bundle, training_frame), tmp_path / "old", "1")
    world.s3.put_object(Bucket=world.data, Key=base_training_key(MODEL),
                        Body=training_frame.to_csv(index=False).encode())  # fmt: skip
    log_traffic(world, bundle, 600, at=NOW - timedelta(hours=3))
    first = run(world, champion).result
    assert first["baseline"]["status"] == "computed" and "sha256 verified" in first["baseline"]["source"]
    kept = json.loads(
        world.s3.get_object(Bucket=world.data, Key=monitoring_baseline_key(MODEL, "1"))["Body"].read()
    )
    assert kept["format"] == BASELINE_FORMAT
    # the same split and seed as training: the baseline training itself wrote
    assert kept["metrics"] == pytest.approx(bundle.baseline["metrics"])
    assert kept["features"]["price"]["bin_edges"] == bundle.baseline["features"]["price"]["bin_edges"]
    assert first["summary"]["status"] == "healthy"
    second = run(world, champion, now=NOW + timedelta(minutes=5)).result
    assert second["baseline"]["status"] == "kept"


def test_an_old_version_without_its_training_data_says_why_and_still_reports(
    world, bundle, training_frame, tmp_path
):
    champion = upload(world.s3, world.artifacts, old_version(bundle, training_frame), tmp_path / "old", "1")
    other = training_frame.assign(price=training_frame["price"] + 1)  # not the data it was trained on
    world.s3.put_object(
        Bucket=world.data, Key=base_training_key(MODEL), Body=other.to_csv(index=False).encode()
    )
    log_traffic(world, bundle, 600, at=NOW - timedelta(hours=3))
    result = run(world, champion).result
    baseline = result["baseline"]
    assert baseline["status"] == "missing"
    assert "trained before versions carried a monitoring baseline" in baseline["message"]
    assert base_training_key(MODEL) in baseline["message"] and "inferline retrain" in baseline["message"]
    assert result["drift"] is None and result["summary"]["status"] == "insufficient"
    assert result["quality"]["live"]["roc_auc"] > 0.6  # what needs no baseline is still there


# -- the Lambda steps -------------------------------------------------------------------------------


class FakeSageMaker:
    """DescribeEndpoint / EndpointConfig / Model of an endpoint serving version 1."""

    def __init__(self, model_data_url: str):
        self.url = model_data_url

    def describe_endpoint(self, EndpointName):  # noqa: N803
        return {
            "EndpointConfigName": "cfg",
            "EndpointStatus": "InService",
            "LastModifiedTime": NOW - timedelta(days=3),
        }

    def describe_endpoint_config(self, EndpointConfigName):  # noqa: N803
        return {"ProductionVariants": [{"ModelName": "m"}]}

    def describe_model(self, ModelName):  # noqa: N803
        return {
            "PrimaryContainer": {"Image": "img", "ModelDataUrl": self.url, "Environment": {VERSION_ENV: "1"}}
        }


class FakeStepFunctions:
    def __init__(self):
        self.started: list[dict] = []

    def start_execution(self, stateMachineArn, input):  # noqa: N803, A002
        self.started.append(json.loads(input))
        return {"executionArn": f"{stateMachineArn}:run-{len(self.started)}"}


@pytest.fixture
def svc(world):
    clock = SimpleNamespace(now=NOW)
    return steps.Services(
        s3=world.s3, sagemaker=FakeSageMaker(world.champion["model_data_url"]), load_spec=load_spec,
        data_bucket=world.data, prefix="test", models=[MODEL], stepfunctions=FakeStepFunctions(),
        retrain_state_machine_arn="arn:aws:states:us-east-1:1:stateMachine:test-retrain",
        now=lambda: clock.now,
    )  # fmt: skip


def test_prepare_gives_the_job_its_window_and_the_serving_version(svc):
    run_state = steps.prepare({"model": MODEL, "trigger": "schedule"}, svc)
    assert (
        run_state["since"] == (NOW - timedelta(hours=24)).isoformat()
        and run_state["until"] == NOW.isoformat()
    )
    assert run_state["champion"] == {"version": "1", "model_data_url": svc.sagemaker.url,
                                     "serving_since": (NOW - timedelta(days=3)).isoformat()}  # fmt: skip
    args = run_state["arguments"]
    assert args[args.index("--model-data-url") + 1] == svc.sagemaker.url and "--serving-since" in args
    assert run_state["result_uri"].endswith(f"monitoring/{MODEL}/runs/{run_state['run_id']}/result.json")
    later = steps.prepare({"model": MODEL, "since": "2026-12-01T00:00:00Z", "until": "2030-01-01"}, svc)
    assert (later["since"], later["until"]) == (
        "2026-12-01T00:00:00+00:00",
        NOW.isoformat(),
    )  # until: now at most
    with pytest.raises(steps.MonitoringInputError, match="since must be an ISO 8601 time"):
        steps.prepare({"model": MODEL, "since": "yesterday"}, svc)
    with pytest.raises(steps.MonitoringInputError, match="the window is empty"):
        steps.prepare({"model": MODEL, "since": NOW.isoformat()}, svc)


def test_the_job_runs_from_prepares_arguments_and_publish_emits_what_it_judged(svc, world, bundle):
    from model_artifacts.monitoring.__main__ import run as run_job

    log_traffic(world, bundle, 600, at=NOW - timedelta(hours=2))
    state = {"model": MODEL}
    state["run"] = steps.prepare(state, svc)
    done = run_job(state["run"]["arguments"], s3=world.s3, now=NOW)
    assert done.uris["result.json"] == state["run"]["result_uri"]
    emitted = []
    published = steps.publish(
        state, svc, lambda model, version, figures: emitted.append((model, version, figures))
    )
    ((model, version, figures),) = emitted
    assert (model, version) == (MODEL, "1")
    assert figures == {k: v for k, v in done.result["figures"].items() if v is not None}
    assert "MetricDrop" in figures and all(isinstance(v, float) for v in figures.values())
    assert published["status"] == "healthy" and published["report_uri"] == state["run"]["report_uri"]


def alarm_event(name: str, state: str = "ALARM") -> dict:
    return {
        "detail-type": "CloudWatch Alarm State Change",
        "detail": {"alarmName": name, "state": {"value": state, "reason": "Threshold Crossed: 1 datapoint"}},
    }


def test_a_drift_alarm_starts_retraining_once_per_cooldown(svc):
    drift = next(a for a in ALARMS if a.key == "drifted_features")
    name = alarm_name("test", MODEL, drift)
    outcome = steps.on_alarm(alarm_event(name), svc)
    assert outcome["action"] == steps.STARTED
    (started,) = svc.stepfunctions.started
    assert started["model"] == MODEL and started["trigger"] == "monitoring"
    assert name in started["reason"] and "Threshold Crossed" in started["reason"]
    assert started["monitoring_report"].endswith(f"monitoring/{MODEL}/latest/report.html")

    quality = alarm_name("test", MODEL, next(a for a in ALARMS if a.key == "metric_drop"))
    svc.now = lambda: NOW + timedelta(hours=71)
    assert steps.on_alarm(alarm_event(quality), svc)["action"] == steps.COOLING_DOWN
    svc.now = lambda: NOW + timedelta(hours=73)  # the spec's cool-down is 72 h
    assert steps.on_alarm(alarm_event(quality), svc)["action"] == steps.STARTED
    assert len(svc.stepfunctions.started) == 2


@pytest.mark.parametrize(
    ("name", "state", "why"),
    [
        ("test-monitor-purchase-propensity-missing-share", "ALARM", "does not start retraining"),
        ("test-monitor-purchase-propensity-drifted-features", "OK", "not ALARM"),
        ("test-api-5xx", "ALARM", "not a monitoring alarm"),
        ("other-monitor-purchase-propensity-drifted-features", "ALARM", "not a monitoring alarm"),
    ],
)
def test_other_alarm_changes_start_nothing(svc, name, state, why):
    outcome = steps.on_alarm(alarm_event(name, state), svc)
    assert outcome["action"] == steps.IGNORED and why in outcome["reason"]
    assert svc.stepfunctions.started == []


def test_two_alarms_at_once_claim_the_cooldown_once(svc, world):
    key = retrain_trigger_key(MODEL)
    claims = []
    real_get = world.s3.get_object

    def racing_get(**kwargs):  # both read "no claim yet" before either writes
        if kwargs.get("Key") == key and len(claims) < 2:
            claims.append(1)
            raise world.s3.exceptions.NoSuchKey({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        return real_get(**kwargs)

    svc.s3 = SimpleNamespace(get_object=racing_get, put_object=world.s3.put_object,
                             exceptions=world.s3.exceptions)  # fmt: skip
    first = steps.claim_cooldown(svc.s3, world.data, SPEC, NOW, "a")
    second = steps.claim_cooldown(svc.s3, world.data, SPEC, NOW, "b")
    assert first[0] is True and second[0] is False and second[1]["reason"] == "a"


def test_a_missing_claim_reads_as_absent_whether_s3_says_404_or_403(svc, world):
    """S3 answers 403, not 404, for a missing key to a role that may not list the bucket."""
    from botocore.exceptions import ClientError

    def denied(**kwargs):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")

    s3 = SimpleNamespace(get_object=denied, put_object=world.s3.put_object)
    claimed, record = steps.claim_cooldown(s3, world.data, SPEC, NOW, "drift")
    assert claimed and record["reason"] == "drift"
    # the claim exists now: a caller that truly may not read it is stopped by the conditional
    # write, and its error surfaces instead of a second retraining
    with pytest.raises(ClientError, match="AccessDenied"):
        steps.claim_cooldown(s3, world.data, SPEC, NOW, "again")


def test_another_models_lines_never_count(world, bundle):
    """A model's prefix holds only its own lines; a line naming another model is skipped, not judged."""
    mine = log_traffic(world, bundle, 20, at=NOW - timedelta(hours=2), seed=21)
    stray = [r | {"model": "other-model", "prediction_id": r["prediction_id"] + "-x"} for r in mine]
    key = prediction_log_key(MODEL, NOW - timedelta(hours=2), "stray")
    body = "".join(json.dumps(r) + "\n" for r in stray).encode()
    world.s3.put_object(Bucket=world.data, Key=key, Body=body)
    window = read_window(world.s3, world.data, SPEC, NOW - timedelta(hours=24), NOW)
    assert window.n == 20 and window.skipped_lines == 20


def test_fetch_yields_every_body_in_order_whatever_their_sizes_and_speeds(monkeypatch):
    """Large objects (beyond the bytes allowed ahead) among many small ones, answered in a
    random order: every body comes back once, in the listing's order; stopping early is fine."""
    import random
    import threading
    import time

    from model_artifacts.monitoring import logs

    monkeypatch.setattr(logs, "AHEAD_BYTES", 1000)
    monkeypatch.setattr(logs, "QUEUED", 8)
    sizes = [random.Random(i).choice([10, 10, 10, 600, 2500]) for i in range(300)]
    objects = [(f"k{i:04d}", size) for i, size in enumerate(sizes)]
    started, lock = [], threading.Lock()

    class SlowS3:
        def get_object(self, Bucket, Key):  # noqa: N803
            with lock:
                started.append(Key)
            time.sleep(random.random() / 500)
            return {"Body": SimpleNamespace(read=lambda: Key.encode())}

    bodies = list(logs.fetch(SlowS3(), "b", objects))
    assert bodies == [key.encode() for key, _ in objects]
    assert sorted(started) == [key for key, _ in objects], "each object fetched exactly once"
    first = logs.fetch(SlowS3(), "b", objects)
    assert [next(first) for _ in range(3)] == [b"k0000", b"k0001", b"k0002"]
    first.close()  # the consumer stops early: the pending GETs are dropped, nothing hangs


def test_a_slice_with_one_class_has_no_ranking_metric_rather_than_a_nan(world, bundle):
    """scikit-learn warns and answers NaN for ROC AUC on one class; monitoring says None."""
    import warnings

    records = log_traffic(world, bundle, 600, at=NOW - timedelta(hours=2), seed=31, labeled=0.0)
    lines = [
        {"prediction_id": r["prediction_id"], "model": MODEL, "actual": 0,
         "predicted_at": r["created_at"], "recorded_at": NOW.isoformat()}
        for r in records
    ]  # fmt: skip
    key = ground_truth_key(MODEL, NOW, "all-negative")
    world.s3.put_object(
        Bucket=world.data, Key=key, Body="".join(json.dumps(x) + "\n" for x in lines).encode()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UndefinedMetricWarning
        quality = run(world).result["quality"]
    assert quality["labeled"] == 600 and quality["live"]["roc_auc"] is None
    assert quality["live"]["accuracy"] == pytest.approx(
        np.mean([r["output"]["label"] == "no_purchase" for r in records])
    )
