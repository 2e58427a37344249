"""Data quality (what production sends) and live quality (how right the model is, once ground
truth arrives), for the serving version's predictions in the window."""

from __future__ import annotations

from typing import Any

import numpy as np

from inferline.spec import ModelSpec
from model_artifacts.metrics import LOWER_IS_BETTER, holdout_metrics
from model_artifacts.monitoring import cbpe
from model_artifacts.monitoring.baseline import reliability
from model_artifacts.monitoring.logs import Refusals, Window

SLICE_MIN_LABELED = 30  # a slice value with fewer labeled rows is listed without a metric
TOP_REFUSALS = 20


def data_quality(
    spec: ModelSpec, baseline: dict[str, Any] | None, window: Window, mask: np.ndarray,
    refusals: Refusals, judged: bool,
) -> dict[str, Any]:  # fmt: skip
    """Per input: missing, out-of-range (numbers outside the baseline's range), unknown
    (categories the baseline never saw) and default shares; entities without stored features;
    scores that are not finite numbers; refusals by field."""
    n = int(mask.sum())
    features: dict[str, Any] = {}
    ref_features = (baseline or {}).get("features") or {}
    for name in spec.model_inputs:
        ref = ref_features.get(name) or {}
        entry: dict[str, Any] = {"reference_missing_share": ref.get("missing_share")}
        stored = spec.stored_features.get(name)
        if name in window.numeric:
            values = window.numeric[name][mask]
            present = ~np.isnan(values)
            entry["missing_share"] = _share(~present, n)
            if "min" in ref:
                outside = present & ((values < ref["min"]) | (values > ref["max"]))
                entry["out_of_range_share"] = _share(outside, n)
                entry["reference_range"] = [ref["min"], ref["max"]]
            if stored is not None:
                entry["default_share"] = _share(present & (values == float(stored.default)), n)
        else:
            column = window.categorical[name]
            codes = column.codes[mask]
            entry["missing_share"] = _share(codes < 0, n)
            if "proportions" in ref:
                known = np.array([v in ref["proportions"] for v in column.values] + [True])
                entry["unknown_share"] = _share(~known[codes], n)  # code -1 reads the last: known
                entry["unknown_categories"] = int((~known[:-1] & _seen(codes, len(column.values))).sum())
            if stored is not None:
                default = str(stored.default)
                index = column.values.index(default) if default in column.values else -2
                entry["default_share"] = _share(codes == index, n)
        if stored is not None:
            entry["reference_default_share"] = ref.get("default_share")
        features[name] = entry

    scores = window.score[mask]
    nonfinite = int((~np.isfinite(scores)).sum())
    served = int(sum(window.online_requests.values())) + int((window.source == 1).sum())
    refused = refusals.online_requests + refusals.batch_rows
    refused_share = refused / (refused + served) if refused + served else None
    default_share = _share(~window.entity_known[mask], n) if spec.stored_features else None

    def worst(key: str) -> float | None:
        values = [f[key] for f in features.values() if f.get(key) is not None]
        return max(values) if values and judged else None

    return {
        "judged": judged,
        "rows": n,
        "features": features,
        "default_features_share": default_share,
        "reference_default_features_share": (baseline or {}).get("default_features_share"),
        "nonfinite_scores": nonfinite,
        "refusals": {
            "online_requests": refusals.online_requests,
            "batch_rows": refusals.batch_rows,
            "share": refused_share,
            "by_status": {str(k): v for k, v in sorted(refusals.by_status.items())},
            "by_field": [
                {"field": f, "problem": p, "count": c}
                for (f, p), c in refusals.by_field.most_common(TOP_REFUSALS)
            ],
        },
        "figures": {
            "MissingShare": worst("missing_share"),
            "UnknownCategoryShare": worst("unknown_share"),
            "OutOfRangeShare": worst("out_of_range_share"),
            "DefaultFeaturesShare": default_share if judged else None,
            "RefusedShare": refused_share if judged else None,
            "NonFiniteScores": float(nonfinite),
        },
    }


def live_quality(
    spec: ModelSpec, baseline: dict[str, Any] | None, window: Window, mask: np.ndarray, judged_rows: bool
) -> dict[str, Any]:
    """The spec's metric (and the others) on the predictions with ground truth, overall and per
    slice; label coverage and delay; calibration; and the CBPE estimate beside it all."""
    metric = spec.evaluation.metric
    classes = list(spec.target.classes)
    n = int(mask.sum())
    finite = np.isfinite(window.score)
    labeled = mask & (window.actual >= 0) & finite
    n_labeled = int(labeled.sum())
    reference = (baseline or {}).get("metrics") or {}
    delay = window.label_delay_s[labeled]
    delay = delay[np.isfinite(delay)]
    out: dict[str, Any] = {
        "metric": metric,
        "higher_is_better": metric not in LOWER_IS_BETTER,
        "rows": n,
        "labeled": n_labeled,
        "coverage": n_labeled / n if n else None,
        "label_delay_hours": {
            "p50": float(np.percentile(delay, 50) / 3600) if len(delay) else None,
            "p90": float(np.percentile(delay, 90) / 3600) if len(delay) else None,
        },
        "reference": {k: reference.get(k) for k in ("roc_auc", "accuracy", "f1", "log_loss")},
        "min_labeled_rows": spec.monitoring.min_labeled_rows,
    }
    enough = n_labeled >= spec.monitoring.min_labeled_rows
    live = _metrics(spec, classes, window, labeled) if enough else None
    out["live"] = live
    out["judged"] = live is not None and live.get(metric) is not None
    out["drop"] = _drop(metric, reference.get(metric), live.get(metric) if live else None)

    calibration = (baseline or {}).get("calibration")
    estimated: dict[str, Any] = {"available": calibration is not None and judged_rows}
    if calibration is not None:
        all_rows = cbpe.estimate(spec, window.score[mask], calibration)
        on_labeled = cbpe.estimate(spec, window.score[labeled], calibration)
        estimated |= {
            "all": all_rows,
            "labeled": on_labeled,
            "value": all_rows.get(metric),
            "drop": _drop(metric, reference.get(metric), all_rows.get(metric)) if judged_rows else None,
        }
    out["estimated"] = estimated

    out["slices"] = _slices(spec, baseline, window, mask, labeled, classes)
    hits = _hits(spec, window, labeled)
    out["calibration"] = {
        "window": reliability(window.score[labeled], hits) if n_labeled else [],
        "reference": (baseline or {}).get("reliability") or [],
        "ece": _ece(window.score[labeled], hits) if n_labeled else None,
    }
    out["figures"] = {
        "LabeledPredictions": float(n_labeled),
        "LiveMetric": live.get(metric) if live else None,
        "MetricDrop": out["drop"] if out["judged"] else None,
        "EstimatedMetric": estimated.get("value") if judged_rows else None,
        "EstimatedMetricDrop": estimated.get("drop"),
    }
    return out


def _metrics(spec: ModelSpec, classes: list, window: Window, rows: np.ndarray) -> dict[str, float | None]:
    y = np.array(classes)[window.actual[rows]]  # a plain dtype: sklearn refuses object arrays
    scores = window.score[rows]
    if spec.task == "binary":
        negative, positive = spec.target.classes
        proba = np.column_stack([1 - scores, scores])  # the score is the positive class's
        if len(set(y.tolist())) > 1:
            return holdout_metrics(spec, classes, y, proba)[0]
        # a single class among the labels: ranking metrics are undefined
        predicted = np.where(scores >= spec.output.threshold, positive, negative)
        return {"accuracy": float(np.mean(predicted == y)), "roc_auc": None, "f1": None, "log_loss": None,
                "rows": float(len(y))}  # fmt: skip
    labels = window.label.strings()[rows]
    actual_labels = np.array([spec.label_for(c) for c in y], dtype=object)
    return {"accuracy": float(np.mean(labels == actual_labels)), "roc_auc": None, "f1": None,
            "log_loss": None, "rows": float(len(y))}  # fmt: skip


def _slices(
    spec: ModelSpec, baseline, window: Window, mask: np.ndarray, labeled: np.ndarray, classes: list
) -> dict[str, list[dict[str, Any]]]:
    metric = spec.evaluation.metric
    out: dict[str, list[dict[str, Any]]] = {}
    reference = (baseline or {}).get("slices") or {}
    for name in spec.evaluation.slices:
        column = window.categorical.get(name)
        if column is None:
            continue
        rows = []
        for code, value in enumerate(column.values):
            in_slice = column.codes == code
            count = int((in_slice & mask).sum())
            if not count:
                continue
            with_labels = in_slice & labeled
            n_labeled = int(with_labels.sum())
            live = _metrics(spec, classes, window, with_labels) if n_labeled >= SLICE_MIN_LABELED else None
            ref = (reference.get(name) or {}).get(value) or {}
            rows.append({
                "value": value, "rows": count, "labeled": n_labeled,
                "metric": live.get(metric) if live else None, "reference": ref.get(metric),
                "reference_rows": ref.get("rows"),
            })  # fmt: skip
        out[name] = sorted(rows, key=lambda r: -r["rows"])
    return out


def _hits(spec: ModelSpec, window: Window, rows: np.ndarray) -> np.ndarray:
    if spec.task == "binary":
        return (window.actual[rows] == len(spec.target.classes) - 1).astype("float64")
    labels = window.label.strings()[rows]
    actual = [spec.label_for(spec.target.classes[i]) for i in window.actual[rows]]
    return (labels == np.array(actual, dtype=object)).astype("float64")


def _ece(scores: np.ndarray, hits: np.ndarray) -> float:
    """Expected calibration error over the reliability bins (weighted by rows)."""
    bins = reliability(scores, hits)
    total = sum(b["rows"] for b in bins)
    if not total:
        return 0.0
    return float(sum(b["rows"] * abs(b["mean_score"] - b["observed"]) for b in bins) / total)


def _drop(metric: str, reference: float | None, value: float | None) -> float | None:
    """How much worse than the reference (positive: worse)."""
    if reference is None or value is None:
        return None
    return float(value - reference) if metric in LOWER_IS_BETTER else float(reference - value)


def _share(flags: np.ndarray, n: int) -> float | None:
    return float(np.count_nonzero(flags)) / n if n else None


def _seen(codes: np.ndarray, size: int) -> np.ndarray:
    codes = codes[codes >= 0]
    return np.bincount(codes, minlength=size)[:size] > 0
