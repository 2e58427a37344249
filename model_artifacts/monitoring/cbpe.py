"""Quality before labels arrive: confidence-based performance estimation (CBPE, as NannyML
does it). Each score is first read through the baseline's calibration map (isotonic, fitted
on the reference rows), giving the probability that the row is positive (binary) or that its
top label is right (multiclass). The expected confusion matrix follows from those
probabilities, and with it the expected metric, without a single label.

It estimates well when the model stays calibrated: under covariate shift (inputs move, the
relation between inputs and outcome does not). A change in that relation (concept drift) is
invisible to it; the live metric, once ground truth arrives, shows it.
"""

from __future__ import annotations

import numpy as np

from inferline.spec import ModelSpec

EPS = 1e-15


def calibrated(scores: np.ndarray, calibration: dict[str, list[float]]) -> np.ndarray:
    return np.interp(scores, calibration["x"], calibration["y"])


def estimate(
    spec: ModelSpec, scores: np.ndarray, calibration: dict[str, list[float]]
) -> dict[str, float | None]:
    """Every estimable metric for rows with these scores (finite ones only)."""
    scores = scores[np.isfinite(scores)]
    if not len(scores):
        return {"roc_auc": None, "accuracy": None, "f1": None, "log_loss": None, "rows": 0}
    p = calibrated(scores, calibration)
    if spec.task != "binary":  # the top label is right with probability p
        return {"roc_auc": None, "accuracy": float(p.mean()), "f1": None, "log_loss": None, "rows": len(p)}
    predicted = scores >= spec.output.threshold
    tp = float(p[predicted].sum())
    fp = float((1 - p[predicted]).sum())
    fn = float(p[~predicted].sum())
    tn = float((1 - p[~predicted]).sum())
    clipped = np.clip(scores, EPS, 1 - EPS)
    return {
        "roc_auc": expected_roc_auc(scores, p),
        "accuracy": (tp + tn) / len(p),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "log_loss": float(-np.mean(p * np.log(clipped) + (1 - p) * np.log(1 - clipped))),
        "rows": len(p),
    }


def expected_roc_auc(scores: np.ndarray, p: np.ndarray) -> float | None:
    """The ROC curve with each row counted as p of a positive and 1 - p of a negative, at every
    distinct score taken as the threshold; its area."""
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], p[order]
    tp, fp = np.cumsum(p), np.cumsum(1 - p)
    if tp[-1] <= 0 or fp[-1] <= 0:
        return None
    last_of_tie = np.r_[np.diff(s) != 0, True]  # thresholds between distinct scores only
    tpr = np.r_[0.0, tp[last_of_tie] / tp[-1]]
    fpr = np.r_[0.0, fp[last_of_tie] / fp[-1]]
    return float(np.trapezoid(tpr, fpr))
