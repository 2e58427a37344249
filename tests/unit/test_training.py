"""The training entry point: metrics, determinism, the bundle, the SageMaker contract,
clear errors on bad data, and the retraining story under drift."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from inferline.spec import ModelSpec, load_spec
from model_artifacts.bundle import ModelBundle
from model_artifacts.demo_data import generate_training_frame
from model_artifacts.monitoring.baseline import BASELINE_FORMAT
from model_artifacts.train import (
    TrainingError,
    default_version,
    frame_sha256,
    main,
    parse_hyperparameter,
    target_values,
    train,
)

REPO = Path(__file__).resolve().parents[2]
SM_ENV = (
    "SM_CHANNEL_TRAIN",
    "SM_MODEL_DIR",
    "SM_OUTPUT_DATA_DIR",
    "SM_INPUT_CONFIG_DIR",
    "SM_OUTPUT_DIR",
    "INFERLINE_MODEL",
)


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return load_spec("purchase-propensity")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_training_frame(4000, seed=11)


@pytest.fixture(scope="module")
def bundle(spec, frame) -> ModelBundle:
    return train(spec, frame, "test-1")


@pytest.fixture(scope="module")
def probe() -> list[dict]:
    """Unseen rows as the serving container receives them (extra columns ignored)."""
    return generate_training_frame(300, seed=99).to_dict("records")


@pytest.fixture
def sagemaker_env(monkeypatch, tmp_path):
    for name in SM_ENV:
        monkeypatch.delenv(name, raising=False)
    dirs = {
        name: tmp_path / sub
        for name, sub in [
            ("SM_CHANNEL_TRAIN", "input/data/train"),
            ("SM_MODEL_DIR", "model"),
            ("SM_OUTPUT_DATA_DIR", "output/data"),
            ("SM_INPUT_CONFIG_DIR", "input/config"),
            ("SM_OUTPUT_DIR", "output"),
        ]
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(path))
    return dirs


def test_holdout_metrics_are_real(spec, frame, bundle):
    metrics = bundle.metrics
    assert {"roc_auc", "accuracy", "f1", "log_loss", "positive_rate", "rows"} <= set(metrics)
    assert 0.65 < metrics["roc_auc"] < 0.97
    assert metrics["rows"] == round(len(frame) * spec.training.holdout_fraction)
    # stratified: the holdout has the data's positive rate
    assert metrics["positive_rate"] == pytest.approx(frame["purchased"].mean(), abs=0.005)
    # better than always predicting the base rate
    p = metrics["positive_rate"]
    assert metrics["log_loss"] < -(p * np.log(p) + (1 - p) * np.log(1 - p))
    assert 0 < metrics["f1"] < 1 and 0.5 < metrics["accuracy"] < 1


def test_same_data_and_seed_give_identical_predictions(spec, frame, bundle, probe):
    again = train(spec, frame, "test-2")
    assert np.array_equal(again.predict_proba(probe), bundle.predict_proba(probe))
    other_seed = train(spec, frame, "test-3", seed=spec.training.seed + 1)
    assert not np.array_equal(other_seed.predict_proba(probe), bundle.predict_proba(probe))


def test_bundle_round_trips_through_save_and_load(bundle, probe, tmp_path):
    path = bundle.save(tmp_path)
    loaded = ModelBundle.load(path)
    assert np.array_equal(loaded.predict_proba(probe), bundle.predict_proba(probe))
    assert (loaded.version, loaded.metrics, loaded.baseline, loaded.info) == (
        bundle.version,
        bundle.metrics,
        bundle.baseline,
        bundle.info,
    )
    assert loaded.classes == [0, 1]


def test_baseline_describes_every_model_input_and_the_scores(spec, frame, bundle):
    baseline = bundle.baseline
    assert baseline["format"] == BASELINE_FORMAT
    assert set(baseline["features"]) == set(spec.model_inputs)
    assert baseline["rows"] == len(frame) and baseline["reference_rows"] == bundle.metrics["rows"]
    for name in spec.numeric_inputs:
        stats = baseline["features"][name]
        assert stats["kind"] == "numeric" and stats["count"] == len(frame)
        assert stats["min"] <= stats["quantiles"]["p50"] <= stats["max"]
        edges = stats["bin_edges"]
        assert edges == sorted(edges) and len(stats["bin_proportions"]) == len(edges) - 1
        assert sum(stats["bin_proportions"]) == pytest.approx(1.0)
        assert stats["mean"] == pytest.approx(frame[name].mean())
        assert stats["sample"] == sorted(stats["sample"]) and len(stats["sample"]) == min(5000, len(frame))
    for name in spec.categorical_inputs:
        stats = baseline["features"][name]
        assert set(stats["proportions"]) <= set(spec.request.fields[name].allowed)
        assert sum(stats["proportions"].values()) == pytest.approx(1.0)
        assert stats["counts"] == frame[name].value_counts().to_dict()
    # stored features: the share of rows at the spec's default (unknown entities among them)
    tenure = baseline["features"]["tenure_days"]
    assert tenure["default"] == 0
    assert tenure["default_share"] == pytest.approx((frame["tenure_days"] == 0).mean())
    assert 0 < baseline["default_features_share"] < 0.2
    # scores, labels, calibration and metrics on the held-out rows
    assert baseline["score"]["count"] == bundle.metrics["rows"]
    assert baseline["metrics"] == bundle.metrics
    assert set(baseline["predicted"]) == {"purchase", "no_purchase"}
    assert baseline["classes"]["purchase"] == pytest.approx(bundle.metrics["positive_rate"])
    calibration = baseline["calibration"]
    assert calibration["x"] == sorted(calibration["x"]) and calibration["y"] == sorted(calibration["y"])
    assert sum(b["rows"] for b in baseline["reliability"]) == bundle.metrics["rows"]
    assert set(baseline["slices"]) == set(spec.evaluation.slices)
    json.dumps(baseline)  # plain JSON for the monitor and its report


def test_a_reference_set_given_to_training_is_what_the_version_is_monitored_against(spec, frame):
    reference = generate_training_frame(900, seed=5, drift=1.0)
    bundle = train(spec, frame, "ref-1", reference=reference)
    baseline = bundle.baseline
    assert baseline["rows"] == baseline["reference_rows"] == 900
    assert baseline["features"]["price"]["mean"] == pytest.approx(reference["price"].mean())
    assert baseline["score"]["count"] == 900
    assert baseline["classes"]["purchase"] == pytest.approx(reference["purchased"].mean())
    assert "900 reference rows" in baseline["source"]
    # the holdout metrics stay training's own
    assert bundle.metrics["rows"] == round(len(frame) * spec.training.holdout_fraction)


def test_info_records_provenance(spec, frame, bundle):
    info = bundle.info
    assert info["training_rows"] + info["holdout_rows"] == len(frame)
    assert info["seed"] == spec.training.seed
    assert info["data_sha256"] == frame_sha256(frame) and len(info["data_sha256"]) == 64
    assert info["estimator"] == spec.training.estimator
    assert info["params"] == dict(spec.training.params) | {"random_state": spec.training.seed}
    assert info["sklearn_version"]
    assert datetime.fromisoformat(info["trained_at"]).utcoffset().total_seconds() == 0
    assert frame_sha256(frame.head(-1)) != info["data_sha256"]


def test_missing_columns_are_named(spec, frame):
    with pytest.raises(TrainingError, match="discount_pct") as err:
        train(spec, frame.drop(columns=["discount_pct", "tenure_days"]), "x")
    assert "tenure_days" in str(err.value)
    with pytest.raises(TrainingError, match="purchased"):
        train(spec, frame.drop(columns=["purchased"]), "x")


def test_rows_with_invalid_targets_are_rejected_by_row(spec, frame):
    bad = frame.head(200).copy()
    bad["purchased"] = bad["purchased"].astype(object)
    bad.loc[3, "purchased"] = 2
    bad.loc[7, "purchased"] = None
    with pytest.raises(TrainingError, match="2 row") as err:
        train(spec, bad, "x")
    assert "row 4: 2" in str(err.value) and "row 8: (missing)" in str(err.value)


def test_target_may_be_given_as_labels_text_or_bools(spec, frame):
    y = frame["purchased"].head(100)
    expected = y.to_numpy()
    as_labels = y.map({0: "no_purchase", 1: "purchase"}).to_frame()
    assert np.array_equal(target_values(spec, as_labels), expected)
    assert np.array_equal(target_values(spec, y.astype(str).to_frame()), expected)
    assert np.array_equal(target_values(spec, y.astype(bool).to_frame()), expected)
    with pytest.raises(TrainingError, match="at least 2 rows of every class"):
        target_values(spec, pd.DataFrame({"purchased": [0] * 50 + [1]}))


def test_unknown_hyperparameters_and_bad_values_are_rejected(spec, frame):
    with pytest.raises(TrainingError, match="max_iterations"):
        train(spec, frame, "x", params={"max_iterations": 5})
    bad = frame.head(300).copy()
    bad["price"] = bad["price"].astype(object)
    bad.loc[5, "price"] = "cheap"
    with pytest.raises(TrainingError, match="row 6: 'cheap'"):
        train(spec, bad, "x")


def test_hyperparameters_arrive_as_strings():
    assert parse_hyperparameter("150") == 150
    assert parse_hyperparameter("0.08") == 0.08
    assert parse_hyperparameter("true") is True and parse_hyperparameter("False") is False
    assert parse_hyperparameter("None") is None
    assert parse_hyperparameter("squared_error") == "squared_error"
    assert parse_hyperparameter(3) == 3


def test_default_version_is_a_hash_of_the_inputs(spec):
    a = default_version(spec, "0" * 64, {"max_iter": 10}, 7)
    assert a.startswith("dev-") and len(a) == 14
    assert a == default_version(spec, "0" * 64, {"max_iter": 10}, 7)
    assert a != default_version(spec, "0" * 64, {"max_iter": 10}, 8)
    assert a != default_version(spec, "1" * 64, {"max_iter": 10}, 7)
    assert a != default_version(spec, "0" * 64, {"max_iter": 11}, 7)


def test_sagemaker_contract(spec, frame, sagemaker_env):
    frame.head(2000).to_csv(sagemaker_env["SM_CHANNEL_TRAIN"] / "part-0.csv", index=False)
    frame.iloc[2000:].to_csv(sagemaker_env["SM_CHANNEL_TRAIN"] / "part-1.csv", index=False)
    hyperparameters = {
        "model": "purchase-propensity",
        "max_iter": "60",
        "learning_rate": "0.1",
        "sagemaker_program": "train.py",
        "sagemaker_region": "us-east-1",
    }
    (sagemaker_env["SM_INPUT_CONFIG_DIR"] / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    assert main([]) == 0
    model_dir = sagemaker_env["SM_MODEL_DIR"]
    assert (model_dir / "model.joblib").is_file()
    written = json.loads((model_dir / "metrics.json").read_text())
    extra = json.loads((sagemaker_env["SM_OUTPUT_DATA_DIR"] / "metrics.json").read_text())
    assert written == extra
    loaded = ModelBundle.load(model_dir)
    assert written["version"] == loaded.version and loaded.version.startswith("dev-")
    assert written["metrics"] == loaded.metrics and written["metric"] == "roc_auc"
    assert loaded.info["params"]["max_iter"] == 60  # parsed from "60", overriding the spec
    assert loaded.info["params"]["learning_rate"] == 0.1
    assert loaded.info["data_sha256"] == frame_sha256(frame)  # both parts, in order
    assert not (sagemaker_env["SM_OUTPUT_DIR"] / "failure").exists()


def test_sagemaker_failure_is_reported(frame, sagemaker_env):
    frame.drop(columns=["price"]).to_csv(sagemaker_env["SM_CHANNEL_TRAIN"] / "t.csv", index=False)
    assert main(["--spec", "purchase-propensity"]) == 2
    assert "price" in (sagemaker_env["SM_OUTPUT_DIR"] / "failure").read_text()
    assert not (sagemaker_env["SM_MODEL_DIR"] / "model.joblib").exists()


def test_script_runs_as_a_file(frame, tmp_path):
    """SageMaker runs the entry point as a script, with hyperparameters as --key value."""
    data = tmp_path / "train.csv"
    frame.head(1500).to_csv(data, index=False)
    env = {k: v for k, v in os.environ.items() if k not in SM_ENV}
    env["SM_INPUT_CONFIG_DIR"] = str(tmp_path / "no-config")
    result = subprocess.run(
        [
            sys.executable,
            "model_artifacts/train.py",
            "--train",
            str(data),
            "--model-dir",
            str(tmp_path / "model"),
            "--model",
            "purchase-propensity",
            "--max_iter",
            "30",
            "--version",
            "v-script",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "metric roc_auc=" in result.stderr
    loaded = ModelBundle.load(tmp_path / "model")
    assert loaded.version == "v-script" and loaded.info["params"]["max_iter"] == 30


def test_retraining_on_drifted_data_wins_on_drifted_data(spec, bundle):
    """The retraining story: the drift-0 champion loses to a contender trained on drifted
    data when both are judged on drifted traffic."""
    contender = train(spec, generate_training_frame(4000, seed=12, drift=1.0), "drifted")
    drifted = generate_training_frame(3000, seed=13, drift=1.0)
    records = drifted.to_dict("records")
    champion_auc = roc_auc_score(drifted["purchased"], bundle.predict_proba(records)[:, 1])
    contender_auc = roc_auc_score(drifted["purchased"], contender.predict_proba(records)[:, 1])
    assert contender_auc > champion_auc + 0.02, (champion_auc, contender_auc)
