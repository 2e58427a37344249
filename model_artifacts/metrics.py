"""Classification metrics, computed one way for training's holdout, evaluation's champion and
contender, and monitoring's reference and live windows."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from inferline.spec import ModelSpec

LOWER_IS_BETTER = ("log_loss",)


def holdout_metrics(
    spec: ModelSpec, classes: list, y_true: np.ndarray, proba: np.ndarray
) -> tuple[dict[str, float], np.ndarray]:
    """Holdout metrics and the score each row got (positive-class probability for a binary
    model, top-class probability for a multiclass one)."""
    classes = [c.item() if hasattr(c, "item") else c for c in classes]
    if spec.task == "binary":
        positive = spec.positive_class
        negative = next(c for c in classes if c != positive)
        scores = proba[:, classes.index(positive)]
        predicted = np.where(scores >= spec.output.threshold, positive, negative)
        roc_auc = roc_auc_score(y_true == positive, scores)
        f1 = f1_score(y_true, predicted, pos_label=positive, zero_division=0.0)
        rates = {
            "positive_rate": float(np.mean(y_true == positive)),
            "predicted_positive_rate": float(np.mean(predicted == positive)),
        }
    else:
        scores = proba.max(axis=1)
        predicted = np.array(classes, dtype=object)[proba.argmax(axis=1)]
        roc_auc = roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
        f1 = f1_score(y_true, predicted, average="macro", zero_division=0.0)
        rates = {}
    metrics = {
        "roc_auc": float(roc_auc),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "f1": float(f1),
        "log_loss": float(log_loss(y_true, proba, labels=classes)),
        **rates,
        "rows": float(len(y_true)),
    }
    return metrics, scores
