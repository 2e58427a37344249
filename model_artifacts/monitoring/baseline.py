"""The baseline: what a model version's inputs and scores looked like when it was judged, the
statistics every monitoring run compares production with.

Training computes it and the bundle carries it (format BASELINE_FORMAT). Its reference rows are
the rows the version was judged on: the newest labeled production rows when retraining gives
them (the Evaluate step's holdout, passed to training as its "reference" channel), otherwise the
training data itself (inputs) and the rows training held out (scores, calibration, metrics).

    features    per model input: counts, missing and default shares; numbers as quantile
                bins (bin_edges, bin_proportions), range, moments and a sorted sample for the
                KS test; categories as counts and shares
    score       the same statistics for the score (positive-class probability; top-class
                probability for a multiclass model)
    predicted   the share of each predicted label; classes: the share of each actual class
    metrics     the reference metrics (the spec's metric among them), and per slice value
    calibration score -> observed rate, isotonic (binary: P(positive); multiclass: P(the top
                label is right)): CBPE reads its estimates through it
    reliability the reference's calibration curve (10 score bins), for the report
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from inferline.spec import ModelSpec
from model_artifacts.metrics import holdout_metrics

BASELINE_FORMAT = 2
BINS = 10
SAMPLE_SIZE = 5_000  # values kept per numeric input for the two-sample KS test
RELIABILITY_BINS = 10
QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
SAMPLE_SEED = 20_261_208


def is_current(baseline: dict[str, Any] | None) -> bool:
    return bool(baseline) and baseline.get("format") == BASELINE_FORMAT


def compute_baseline(
    spec: ModelSpec,
    pipeline,
    *,
    inputs: pd.DataFrame,
    reference: pd.DataFrame,
    reference_y: np.ndarray,
    source: str,
) -> dict[str, Any]:
    """The baseline of a fitted `pipeline`: input distributions from `inputs` (model-input
    columns, as to_frame builds them), scores, calibration and metrics on `reference` (the
    same columns) with its actual classes `reference_y`."""
    classes = [c.item() if hasattr(c, "item") else c for c in pipeline.classes_]
    proba = pipeline.predict_proba(reference)
    metrics, scores = holdout_metrics(spec, classes, reference_y, proba)
    predicted = predicted_labels(spec, classes, proba)
    hits = _hits(spec, classes, reference_y, proba)
    return {
        "format": BASELINE_FORMAT,
        "source": source,
        "computed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": int(len(inputs)),
        "reference_rows": int(len(reference)),
        "features": {
            name: feature_stats(
                inputs[name],
                numeric=name in spec.numeric_inputs,
                default=_default(spec, name),
            )
            for name in spec.model_inputs
        },
        "default_features_share": _all_defaults_share(spec, inputs),
        "score": feature_stats(pd.Series(scores), numeric=True, default=None),
        "predicted": _shares(predicted),
        "classes": _shares([spec.label_for(c) for c in reference_y]),
        "metrics": metrics,
        "slices": _slice_metrics(spec, classes, reference, reference_y, proba),
        "calibration": calibration_map(scores, hits),
        "reliability": reliability(scores, hits),
    }


def predicted_labels(spec: ModelSpec, classes: list, proba: np.ndarray) -> list[str]:
    """The label the platform answers for each row (threshold for binary, top class otherwise)."""
    if spec.task == "binary":
        negative, positive = spec.target.classes
        scores = proba[:, classes.index(positive)]
        return [spec.label_for(positive if s >= spec.output.threshold else negative) for s in scores]
    return [spec.label_for(classes[i]) for i in proba.argmax(axis=1)]


def feature_stats(values: pd.Series, *, numeric: bool, default: Any) -> dict[str, Any]:
    """One input's distribution: for a number, quantile bins (values outside the edges belong
    to the end bins), range, moments, quantiles and a sorted sample; for a category, counts."""
    missing = int(values.isna().sum())
    present = values.dropna()
    total = len(values)
    out: dict[str, Any] = {
        "kind": "numeric" if numeric else "categorical",
        "count": int(len(present)),
        "missing": missing,
        "missing_share": missing / total if total else 0.0,
    }
    if default is not None and total:
        equal = present.astype(float) == float(default) if numeric else present.astype(str) == str(default)
        out["default"] = default
        out["default_share"] = float(equal.sum()) / total
    if not numeric:
        counts = present.astype(str).value_counts()
        out["counts"] = {str(k): int(v) for k, v in counts.items()}
        out["proportions"] = {str(k): float(v) / max(1, len(present)) for k, v in counts.items()}
        return out
    v = present.to_numpy(dtype="float64")
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return out
    edges = np.unique(np.quantile(v, np.linspace(0, 1, BINS + 1)))
    if len(edges) < 2:  # a constant: one bin around its value
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    counts = bin_counts(v, edges)
    rng = np.random.default_rng(SAMPLE_SEED)
    sample = np.sort(v if len(v) <= SAMPLE_SIZE else rng.choice(v, SAMPLE_SIZE, replace=False))
    return out | {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "quantiles": dict(zip(QUANTILES, map(float, np.quantile(v, list(QUANTILES.values()))), strict=True)),
        "bin_edges": [float(e) for e in edges],
        "bin_proportions": [float(c) for c in counts / counts.sum()],
        "sample": [float(x) for x in sample],
    }


def bin_counts(values: np.ndarray, edges: list[float] | np.ndarray) -> np.ndarray:
    """Counts per bin of the baseline's edges; values beyond the first or last edge count in
    the end bins (production values outside the training range still land somewhere)."""
    inner = np.asarray(edges, dtype="float64")[1:-1]
    index = np.searchsorted(inner, values, side="right")
    return np.bincount(index, minlength=len(edges) - 1).astype("float64")


def calibration_map(scores: np.ndarray, hits: np.ndarray) -> dict[str, list[float]]:
    """Isotonic score -> observed rate (as points to interpolate); the identity when the
    reference cannot fit one (a single class)."""
    if len(scores) < 2 or len(set(hits.tolist())) < 2:
        return {"x": [0.0, 1.0], "y": [0.0, 1.0]}
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, hits)
    return {"x": [float(x) for x in fitted.X_thresholds_], "y": [float(y) for y in fitted.y_thresholds_]}


def reliability(scores: np.ndarray, hits: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict[str, float]]:
    """Per equal-width score bin: rows, mean score, observed rate (empty bins left out)."""
    index = np.minimum((np.asarray(scores) * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append(
                {
                    "bin": b,
                    "rows": int(mask.sum()),
                    "mean_score": float(np.mean(scores[mask])),
                    "observed": float(np.mean(hits[mask])),
                }
            )
    return out


def _hits(spec: ModelSpec, classes: list, y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """What the score is a probability of, per row: the positive class (binary), or the top
    label being right (multiclass)."""
    if spec.task == "binary":
        return (np.asarray(y) == spec.positive_class).astype("float64")
    top = np.array(classes, dtype=object)[proba.argmax(axis=1)]
    return (top == np.asarray(y, dtype=object)).astype("float64")


def _slice_metrics(
    spec: ModelSpec, classes: list, frame: pd.DataFrame, y: np.ndarray, proba: np.ndarray
) -> dict[str, dict[str, dict[str, float | None]]]:
    metric = spec.evaluation.metric
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for column in spec.evaluation.slices:
        if column not in frame:
            continue
        values = frame[column].astype(str).to_numpy()
        out[column] = {}
        for value in sorted(set(values)):
            mask = values == value
            score = None  # one class only in this slice: its ranking metrics are undefined
            if len(set(y[mask].tolist())) > 1:
                metrics, _ = holdout_metrics(spec, classes, y[mask], proba[mask])
                score = metrics[metric]
            out[column][value] = {"rows": int(mask.sum()), metric: score}
    return out


def _shares(values: list[str]) -> dict[str, float]:
    counts = pd.Series(values, dtype=object).value_counts(normalize=True)
    return {str(k): float(v) for k, v in counts.items()}


def _default(spec: ModelSpec, name: str) -> Any:
    stored = spec.stored_features.get(name)
    return stored.default if stored is not None else None


def _all_defaults_share(spec: ModelSpec, inputs: pd.DataFrame) -> float | None:
    """Share of rows whose stored features all equal their defaults: rows whose entity the
    feature store did not know (the closest a training set comes to entity_known)."""
    if not spec.stored_features or not len(inputs):
        return None
    mask = np.ones(len(inputs), dtype=bool)
    for name, feature in spec.stored_features.items():
        column = inputs[name]
        if feature.type in ("int", "float"):
            mask &= column.astype(float).to_numpy() == float(feature.default)
        else:
            mask &= column.astype(str).to_numpy() == str(feature.default)
    return float(mask.mean())
