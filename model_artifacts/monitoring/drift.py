"""Data drift: each model input, the score and the predicted label, window against baseline.

Every distribution gets its PSI (population stability index, over the baseline's quantile
bins or categories) and a two-sample test with a p-value: Kolmogorov-Smirnov for numbers
(against the baseline's sample), chi-square of homogeneity for categories (against its counts).
A distribution has drifted when its test is significant at drift_p_value / k, k being the
number of tests in the run (Bonferroni: the chance of any false alarm in a run stays at most
drift_p_value), and its PSI is at least drift_min_psi (with a million rows, negligible shifts
are significant too). scipy computes the tests; PSI is a one-line sum no library needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from inferline.spec import ModelSpec
from model_artifacts.monitoring.baseline import bin_counts
from model_artifacts.monitoring.logs import Categorical

PSI_FLOOR = 1e-4  # an empty bin's share, so that PSI stays finite


def psi(reference: np.ndarray, window: np.ndarray) -> float:
    """sum((w - r) * ln(w / r)) over bins, each share floored at PSI_FLOOR."""
    r = np.clip(np.asarray(reference, "float64"), PSI_FLOOR, None)
    w = np.clip(np.asarray(window, "float64"), PSI_FLOOR, None)
    return float(np.sum((w - r) * np.log(w / r)))


def numeric_drift(baseline: dict[str, Any], values: np.ndarray) -> dict[str, Any] | None:
    """PSI over the baseline's bins and the two-sample KS test against its sample."""
    values = values[np.isfinite(values)]
    if not len(values) or not baseline.get("bin_edges") or not baseline.get("sample"):
        return None
    edges = baseline["bin_edges"]
    counts = bin_counts(values, edges)
    window = counts / counts.sum()
    reference = np.asarray(baseline["bin_proportions"])
    ks = stats.ks_2samp(np.asarray(baseline["sample"]), values)
    return {
        "kind": "numeric",
        "test": "ks",
        "rows": int(len(values)),
        "psi": psi(reference, window),
        "statistic": float(ks.statistic),
        "p_value": float(ks.pvalue),
        "bins": {"edges": edges, "reference": reference.tolist(), "window": window.tolist()},
        "window_mean": float(values.mean()),
        "reference_mean": baseline.get("mean"),
    }


def categorical_drift(baseline: dict[str, Any], counts: dict[str, int]) -> dict[str, Any] | None:
    """PSI over the categories and the chi-square test of homogeneity (baseline counts against
    the window's) on every category seen in either."""
    total = sum(counts.values())
    reference_counts = baseline.get("counts") or {}
    if not total or not reference_counts:
        return None
    levels = sorted(set(reference_counts) | set(counts), key=lambda v: (-reference_counts.get(v, 0), v))
    ref = np.array([reference_counts.get(v, 0) for v in levels], "float64")
    win = np.array([counts.get(v, 0) for v in levels], "float64")
    if len(levels) < 2:
        statistic, p_value = 0.0, 1.0
    else:
        test = stats.chi2_contingency(np.vstack([ref, win]), correction=False)
        statistic, p_value = float(test.statistic), float(test.pvalue)
    return {
        "kind": "categorical",
        "test": "chi2",
        "rows": int(total),
        "psi": psi(ref / ref.sum(), win / total),
        "statistic": statistic,
        "p_value": p_value,
        "categories": {
            "values": levels,
            "reference": (ref / ref.sum()).tolist(),
            "window": (win / total).tolist(),
        },
    }


def category_counts(column: Categorical, mask: np.ndarray) -> dict[str, int]:
    codes = column.codes[mask]
    codes = codes[codes >= 0]
    found = np.bincount(codes, minlength=len(column.values))
    return {column.values[i]: int(c) for i, c in enumerate(found) if c}


def drift_section(
    spec: ModelSpec,
    baseline: dict[str, Any],
    numeric: dict[str, np.ndarray],
    categorical: dict[str, Categorical],
    scores: np.ndarray,
    labels: Categorical,
    mask: np.ndarray,
    judged: bool,
) -> dict[str, Any]:
    """Every test of the run, which distributions drifted (when `judged`: enough rows), and
    the run's drift figures."""
    rules = spec.monitoring
    features: dict[str, Any] = {}
    for name in spec.model_inputs:
        reference = baseline["features"].get(name) or {}
        if name in numeric:
            features[name] = numeric_drift(reference, numeric[name][mask])
        else:
            features[name] = categorical_drift(reference, category_counts(categorical[name], mask))
    score = numeric_drift(baseline.get("score") or {}, scores[mask])
    predicted = categorical_drift(
        {"counts": _counts(baseline.get("predicted") or {}, baseline.get("reference_rows") or 0)},
        category_counts(labels, mask),
    )
    tested = [t for t in [*features.values(), score, predicted] if t is not None]
    alpha_each = rules.drift_p_value / max(1, len(tested))
    for test in tested:
        test["drifted"] = bool(judged and test["p_value"] < alpha_each and test["psi"] >= rules.drift_min_psi)
    drifted = [name for name, t in features.items() if t and t["drifted"]]
    prediction_drifted = any(t and t["drifted"] for t in (score, predicted))
    psis = [t["psi"] for t in features.values() if t]
    return {
        "judged": judged,
        "p_value": rules.drift_p_value,
        "tests": len(tested),
        "alpha_each": alpha_each,
        "min_psi": rules.drift_min_psi,
        "features": features,
        "score": score,
        "predicted": predicted,
        "drifted": drifted,
        "prediction_drifted": prediction_drifted,
        "figures": {
            "DriftedFeatures": float(len(drifted)) if judged else None,
            "PredictionDrift": float(prediction_drifted) if judged else None,
            "MaxFeaturePSI": max(psis) if psis and judged else None,
        },
    }


def _counts(shares: dict[str, float], rows: int) -> dict[str, int]:
    """Counts from shares of `rows` rows (the baseline keeps the predicted labels' shares)."""
    return {k: int(round(v * rows)) for k, v in shares.items()}
