"""The scikit-learn Pipeline a spec describes: encoding and scaling live inside the pipeline,
so the exact transformation fitted in training is the one applied when serving."""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from inferline.spec import ModelSpec

ESTIMATORS = {
    "hist_gradient_boosting": HistGradientBoostingClassifier,
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
}


def build_pipeline(spec: ModelSpec, params: dict | None = None) -> Pipeline:
    """An unfitted Pipeline: one-hot categories, scaled numbers, then the spec's estimator."""
    estimator_cls = ESTIMATORS[spec.training.estimator]
    kwargs = dict(spec.training.params) | dict(params or {})
    kwargs.setdefault("random_state", spec.training.seed)
    columns = ColumnTransformer(
        [
            ("numeric", StandardScaler(), spec.numeric_inputs),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                spec.categorical_inputs,
            ),
        ],
        verbose_feature_names_out=False,
    )
    return Pipeline([("columns", columns), ("model", estimator_cls(**kwargs))])
