"""The version a run judges and the baseline it is judged against: the version's bundle from its
model.tar.gz, and its baseline (its own; one kept from an earlier run; or one computed now from
its training data, proven by the sha256 the version recorded, and kept)."""

from __future__ import annotations

import io
import json
import logging
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from inferline.objects import get_if_exists
from inferline.resources import (
    base_training_key,
    monitoring_baseline_key,
    retrain_run_prefix,
    retrain_version_claim_key,
    split_s3_uri,
)
from inferline.spec import ModelSpec
from model_artifacts.bundle import BUNDLE_FILE, ModelBundle, to_frame
from model_artifacts.monitoring.baseline import compute_baseline, is_current

log = logging.getLogger("inferline.monitor")


def load_bundle(s3, model_data_url: str) -> ModelBundle:
    """The version's model.joblib, from its model.tar.gz (or a model.joblib) in S3."""
    bucket, key = split_s3_uri(model_data_url)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tempfile.TemporaryDirectory(prefix="inferline-monitor-") as tmp:
        target = Path(tmp) / BUNDLE_FILE
        if key.endswith(".joblib"):
            target.write_bytes(body)
        else:
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
                member = next(m for m in tar.getmembers() if m.name.rsplit("/", 1)[-1] == BUNDLE_FILE)
                target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
        return ModelBundle.load(target)


def resolve_baseline(
    s3, bucket: str, spec: ModelSpec, bundle: ModelBundle, version: str
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The version's baseline and where it came from (status "version": its own; "kept": computed
    by an earlier run; "computed": computed now from its training data, found by the data hash
    the version recorded, and kept), or None with status "missing" and the reason."""

    def info(status: str, baseline: dict | None, message: str | None = None) -> dict[str, Any]:
        return {
            "status": status,
            "source": (baseline or {}).get("source"),
            "rows": (baseline or {}).get("rows"),
            "reference_rows": (baseline or {}).get("reference_rows"),
            "message": message,
        }

    if is_current(bundle.baseline):
        return bundle.baseline, info("version", bundle.baseline)
    key = monitoring_baseline_key(spec.name, version)
    found = get_if_exists(s3, bucket, key)
    kept = json.loads(found["Body"].read()) if found else None
    if is_current(kept):
        return kept, info("kept", kept)
    frame, where, why = find_training_data(s3, bucket, spec, bundle, version)
    if frame is None:
        return None, info("missing", None, why)
    baseline = baseline_from_training_data(spec, bundle, frame, where)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(baseline).encode(), ContentType="application/json")
    log.info("computed the baseline of %s version %s from %s", spec.name, version, where)
    return baseline, info("computed", baseline)


def find_training_data(
    s3, bucket: str, spec: ModelSpec, bundle: ModelBundle, version: str
) -> tuple[pd.DataFrame | None, str, str]:
    """The version's training data, proven by its sha256 (recorded at training): the train.csv
    of the retraining run that claimed the version, or the base training set."""
    from model_artifacts.train import frame_sha256

    expected = bundle.info.get("data_sha256")
    candidates = []
    found = get_if_exists(s3, bucket, retrain_version_claim_key(spec.name, version))
    try:
        run_id = json.loads(found["Body"].read())["run_id"] if found else None
    except (KeyError, ValueError):
        run_id = None
    if run_id:
        candidates.append(f"{retrain_run_prefix(spec.name, run_id)}train/train.csv")
    candidates.append(base_training_key(spec.name))
    for key in candidates:
        found = get_if_exists(s3, bucket, key)
        if found is None:
            continue
        frame = pd.read_csv(io.BytesIO(found["Body"].read()))
        if expected and frame_sha256(frame) == expected:
            return frame, f"s3://{bucket}/{key}", ""
    tried = ", ".join(f"s3://{bucket}/{k}" for k in candidates)
    why = (
        f"version {version} was trained before versions carried a monitoring baseline, and its "
        f"training data (sha256 {str(expected)[:12]}...) is not at {tried}: drift, the estimated "
        f"metric and the training ranges need a baseline. Retrain it (inferline retrain "
        f"{spec.name}): every new version carries its own."
    )
    return None, "", why


def baseline_from_training_data(
    spec: ModelSpec, bundle: ModelBundle, frame: pd.DataFrame, where: str
) -> dict:
    """The baseline training would have written: the same holdout split (same target and seed)."""
    from model_artifacts.train import holdout_split, target_values

    y = target_values(spec, frame)
    inputs = to_frame(spec, frame[spec.model_inputs].to_dict("records"))
    _, held_out = holdout_split(spec, y, int(bundle.info.get("seed", spec.training.seed)))
    return compute_baseline(
        spec, bundle.pipeline, inputs=inputs, reference=inputs.iloc[held_out].reset_index(drop=True),
        reference_y=y[held_out],
        source=f"computed when first monitored, from its training data ({where}, sha256 verified)",
    )  # fmt: skip
