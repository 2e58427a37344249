"""BuildDataset: production predictions joined with their ground truth, plus the base training
set, checked against the spec and split by time into train and holdout CSVs with a manifest.

The join is by prediction_id: ground truth (ground-truth/model=<m>/dt=<d>/*.jsonl, partitioned
by the date it arrived, newest line per id) against the prediction log's JSON Lines
(predictions/model=<m>/dt=<d>/*.jsonl, by the prediction's date), over the spec's window.
Each joined row is checked with the online path's field rules; a row that fails is counted
by reason, never silently kept.
Too few labeled rows, or a class below its share, is a skip with the reason, not a failure.
The holdout is the newest share of the labeled production rows: both models are judged on
the world as it is now. The base training set (training/<model>/base.csv) only trains.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from inferline.csv_rows import parse_cell
from inferline.ground_truth import latest_actuals
from inferline.resources import base_training_key, retrain_run_prefix
from inferline.spec import ModelSpec
from inferline.validation import check_value

READY = "ready"
SKIPPED = "skipped"
TRAIN_FILE = "train.csv"
HOLDOUT_FILE = "holdout.csv"
MANIFEST_FILE = "manifest.json"
READERS = 16  # parallel S3 reads of ground-truth objects (boto3 clients are thread-safe)


@dataclass
class Dataset:
    """The rows of one run, before they are written."""

    columns: list[str]
    # (created_at, prediction_id, row): sorted on the first two, the split is the same every run
    production: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    base: list[dict[str, Any]] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    counts: Counter = field(default_factory=Counter)


def dataset_columns(spec: ModelSpec) -> list[str]:
    """Model inputs, the slice columns evaluation needs, and the target, in that order."""
    names = [*spec.model_inputs, *spec.evaluation.slices, spec.target.name]
    return list(dict.fromkeys(names))


def collect(s3, bucket: str, spec: ModelSpec, now: datetime) -> Dataset:
    """Every labeled production row in the window, and the base training rows."""
    data = Dataset(columns=dataset_columns(spec))
    since = now - timedelta(days=spec.retraining.window_days)
    actuals = _ground_truth(s3, bucket, spec, since, now, data)
    for record in _prediction_records(s3, bucket, spec, since, now):
        data.counts["predictions_in_window"] += 1
        actual = actuals.pop(record.get("prediction_id"), None)
        if actual is None:
            continue
        row, problem = joined_row(spec, record, actual)
        if problem:
            data.dropped[problem] += 1
        else:
            data.production.append((record["created_at"], record["prediction_id"], row))
    data.counts["ground_truth_without_prediction"] = len(actuals)
    data.base = _base_rows(s3, bucket, spec, data)
    return data


def joined_row(spec: ModelSpec, record: dict[str, Any], actual: Any) -> tuple[dict[str, Any], str | None]:
    """One training row from a logged prediction and its actual, or the reason it is unusable."""
    values = {**(record.get("features") or {}), **(record.get("request") or {})}
    values[spec.target.name] = actual
    return check_row(spec, values)


def check_row(spec: ModelSpec, values: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The row with values normalised as the online path does, or the first problem found
    ("<column>: <problem>", worded like the API's 400s)."""
    row: dict[str, Any] = {}
    fields = {**spec.stored_features, **spec.request.fields}
    for name in dataset_columns(spec):
        value = values.get(name)
        if name == spec.target.name:
            found = spec.class_for(value) if value is not None else None
            if found is None and isinstance(value, str):  # "1" in a CSV names the class 1
                found = next((c for c in spec.target.classes if str(c) == value.strip()), None)
            if found is None:
                return row, f"{name}: not a class of the model"
            row[name] = found
            continue
        if value is None:
            return row, f"{name}: is missing"
        value, problem = check_value(fields[name], value)
        if problem:
            return row, f"{name}: {problem}"
        row[name] = value
    return row, None


def split(spec: ModelSpec, data: Dataset) -> tuple[list[dict], list[dict], str | None]:
    """(train rows, holdout rows, skip reason): the newest share of production rows is held
    out; older production rows and the base set train."""
    labeled = len(data.production)
    rules = spec.retraining
    if labeled < rules.min_labeled_rows:
        return (
            [],
            [],
            (
                f"only {labeled} labeled production row(s) in the last {rules.window_days} days; "
                f"retraining needs at least {rules.min_labeled_rows}"
            ),
        )
    classes = Counter(row[spec.target.name] for *_, row in data.production)
    for cls in spec.target.classes:
        share = classes.get(cls, 0) / labeled
        if share < rules.min_class_share:
            return (
                [],
                [],
                (
                    f"class {cls!r} is {share:.1%} of the {labeled} labeled rows "
                    f"(below the spec's minimum share of {rules.min_class_share:.1%})"
                ),
            )
    ordered = [row for _, _, row in sorted(data.production, key=lambda item: item[:2])]
    cut = len(ordered) - max(1, round(len(ordered) * rules.holdout_fraction))
    return data.base + ordered[:cut], ordered[cut:], None


def build_dataset(
    s3,
    *,
    spec: ModelSpec,
    data_bucket: str,
    run_id: str,
    now: datetime,
) -> dict[str, Any]:
    """Collect, check and split; write train.csv, holdout.csv and manifest.json under the
    run's prefix. Returns {"status", "reason", "rows", "train_uri", "holdout_uri", "manifest_uri"}."""
    data = collect(s3, data_bucket, spec, now)
    train, holdout, reason = split(spec, data)
    prefix = retrain_run_prefix(spec.name, run_id)
    rows = {
        "labeled_production": len(data.production),
        "base": len(data.base),
        "train": len(train),
        "holdout": len(holdout),
        "dropped": dict(data.dropped),
        **dict(data.counts),
    }
    manifest: dict[str, Any] = {
        "model": spec.name,
        "run_id": run_id,
        "built_at": now.isoformat(),
        "window_days": spec.retraining.window_days,
        "window_start": (now - timedelta(days=spec.retraining.window_days)).isoformat(),
        "columns": data.columns,
        "rows": rows,
        "status": SKIPPED if reason else READY,
        "reason": reason,
        "files": {},
    }
    result: dict[str, Any] = {"status": manifest["status"], "reason": reason, "rows": rows}
    if not reason:
        for name, part in ((TRAIN_FILE, train), (HOLDOUT_FILE, holdout)):
            body = to_csv(data.columns, part)
            folder = f"{prefix}{name.removesuffix('.csv')}/"
            s3.put_object(Bucket=data_bucket, Key=folder + name, Body=body, ContentType="text/csv")
            manifest["files"][name] = {
                "uri": f"s3://{data_bucket}/{folder}{name}",
                "rows": len(part),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
            result[f"{name.removesuffix('.csv')}_uri"] = f"s3://{data_bucket}/{folder}"
    s3.put_object(
        Bucket=data_bucket,
        Key=prefix + MANIFEST_FILE,
        Body=json.dumps(manifest, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
    )
    result["manifest_uri"] = f"s3://{data_bucket}/{prefix}{MANIFEST_FILE}"
    return result


def to_csv(columns: list[str], rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


# -- reading the logs -------------------------------------------------------------------------


def _keys(s3, bucket: str, prefix: str, since: datetime, until: datetime):
    """Object keys in the dt= partitions from `since`'s date to `until`'s, one listing per day
    (the partitions before the window are never listed)."""
    day = since.date()
    while day <= until.date():
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}dt={day}/")
        for page in pages:
            yield from (obj["Key"] for obj in page.get("Contents", []))
        day += timedelta(days=1)


def _ground_truth(
    s3, bucket: str, spec: ModelSpec, since: datetime, until: datetime, data: Dataset
) -> dict[str, Any]:
    """Every actual that arrived in the window (a prediction's ground truth arrives after it),
    the newest per prediction id; one JSON Lines object per feedback request, read in parallel."""

    def read(key: str) -> list[dict[str, Any]]:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    keys = list(_keys(s3, bucket, f"ground-truth/model={spec.name}/", since, until))
    with ThreadPoolExecutor(READERS) as pool:
        lines = (line for lines in pool.map(read, keys) for line in lines)
        actuals = {pid: line["actual"] for pid, line in latest_actuals(lines).items()}
    data.counts["ground_truth_in_window"] = len(actuals)
    return actuals


def _prediction_records(s3, bucket: str, spec: ModelSpec, since: datetime, until: datetime):
    cutoff = since.isoformat()
    for key in _keys(s3, bucket, f"predictions/model={spec.name}/", since, until):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        for line in body.iter_lines():
            if line.strip():
                record = json.loads(line)
                if record.get("created_at", "") >= cutoff:
                    yield record


def _base_rows(s3, bucket: str, spec: ModelSpec, data: Dataset) -> list[dict[str, Any]]:
    """The base training set, if one was uploaded; its rows are checked like the others."""
    try:
        body = s3.get_object(Bucket=bucket, Key=base_training_key(spec.name))["Body"].read()
    except s3.exceptions.NoSuchKey:
        data.counts["base_missing"] = 1
        return []
    kinds = {name: f.type for name, f in {**spec.stored_features, **spec.request.fields}.items()}
    rows = []
    for raw in csv.DictReader(io.StringIO(body.decode("utf-8-sig"))):
        values = {k: parse_cell(v, kinds.get(k, "string")) for k, v in raw.items() if k and v != ""}
        row, problem = check_row(spec, values)
        if problem:
            data.dropped[f"base {problem}"] += 1
        else:
            rows.append(row)
    return rows
