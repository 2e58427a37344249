"""Model monitoring's figures and alarms: one table read by everything that names them.

The monitoring job reports each figure of a run (and which alarms it breaches), the Publish
Lambda sends the figures to CloudWatch, the CDK app makes one CloudWatch alarm per model and
row of ALARMS, and the local runtime applies the same rule to each local run; tests check
that they agree. Thresholds come from the model's spec (`monitoring.alarms`), so a team tunes
them where it describes the model.

An alarm is in ALARM while a run's figure is at or above its threshold. A figure a run could
not judge (too few predictions, no ground truth yet) is left out: the alarm keeps its state,
as CloudWatch does with missing data treated as "ignore".
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from inferline.spec import ModelSpec

DRIFT, QUALITY, DATA_QUALITY = "drift", "quality", "data_quality"

# The Powertools service name of the Publish Lambda: a dimension of every monitoring metric
# (beside "model", and "model_version" on the per-version copy).
METRICS_SERVICE = "monitor-publish"
MODEL_DIMENSION = "model"
VERSION_DIMENSION = "model_version"

# The monitoring result's schema version (docs/monitoring.md describes it).
RESULT_FORMAT = 1

# How often every model is monitored (cdk.json's monitorSchedule): EventBridge Scheduler's
# expression in AWS, the local runtime's interval in seconds.
MONITOR_SCHEDULES: dict[str, int] = {"hourly": 3600, "daily": 86400}
SCHEDULE_EXPRESSIONS: dict[str, str] = {"hourly": "rate(1 hour)", "daily": "rate(1 day)"}


@dataclass(frozen=True)
class Alarm:
    key: str  # the threshold's name in spec.monitoring.alarms, and the alarm name's suffix
    metric: str  # the CloudWatch metric (and the key in a result's "figures")
    kind: str  # drift, quality or data_quality
    description: str  # what it means, in the words an on-call engineer reads
    retrains: bool  # whether its alarm starts the retraining workflow

    def threshold(self, spec: ModelSpec) -> float:
        return float(getattr(spec.monitoring.alarms, self.key))


ALARMS: tuple[Alarm, ...] = (
    Alarm("drifted_features", "DriftedFeatures", DRIFT,
          "Model inputs whose distribution drifted from the serving version's baseline "
          "(significant after Bonferroni, and PSI at least drift_min_psi).", retrains=True),
    Alarm("prediction_drift", "PredictionDrift", DRIFT,
          "The score or the predicted label drifted from the baseline (1 when either did).",
          retrains=True),
    Alarm("metric_drop", "MetricDrop", QUALITY,
          "The spec's metric on predictions with ground truth, below the version's reference "
          "metric by this much.", retrains=True),
    Alarm("estimated_metric_drop", "EstimatedMetricDrop", QUALITY,
          "The metric estimated from the scores alone (CBPE), below the version's reference "
          "metric by this much: a drop seen before the labels arrive.", retrains=True),
    Alarm("missing_share", "MissingShare", DATA_QUALITY,
          "The worst model input's share of missing values.", retrains=False),
    Alarm("unknown_category_share", "UnknownCategoryShare", DATA_QUALITY,
          "The worst categorical input's share of values never seen in the baseline.",
          retrains=False),
    Alarm("out_of_range_share", "OutOfRangeShare", DATA_QUALITY,
          "The worst numeric input's share of values outside the baseline's range.",
          retrains=False),
    Alarm("default_features_share", "DefaultFeaturesShare", DATA_QUALITY,
          "Share of predictions whose entity had no stored features (defaults were used).",
          retrains=False),
    Alarm("refused_share", "RefusedShare", DATA_QUALITY,
          "Share of requests (and batch rows) refused for invalid input.", retrains=False),
    Alarm("nonfinite_scores", "NonFiniteScores", DATA_QUALITY,
          "Predictions whose score was NaN or infinite.", retrains=False),
)  # fmt: skip

# Figures published beside the alarms' (dashboard widgets; no alarm).
FIGURES: tuple[str, ...] = (
    "Predictions",
    "LabeledPredictions",
    "LiveMetric",
    "EstimatedMetric",
    "MaxFeaturePSI",
    "LatencyP99Ms",
)
# CloudWatch units: counts, milliseconds; every other figure is a ratio or a metric (no unit).
COUNTS = ("DriftedFeatures", "PredictionDrift", "NonFiniteScores", "Predictions", "LabeledPredictions")
MILLISECONDS = ("LatencyP99Ms",)

ALARMS_BY_KEY: dict[str, Alarm] = {a.key: a for a in ALARMS}


def metric_unit(metric: str) -> str:
    """The CloudWatch unit of a figure (Powertools' MetricUnit values)."""
    return "Count" if metric in COUNTS else "Milliseconds" if metric in MILLISECONDS else "None"


def new_run_id(now: datetime) -> str:
    """A monitoring run's id: sortable by time, to the millisecond (history lists runs in order)."""
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{uuid.uuid4().hex[:6]}"


def alarm_name(prefix: str, model: str, alarm: Alarm) -> str:
    """The CloudWatch alarm's name ("<prefix>-monitor-<model>-<key>")."""
    return f"{prefix}-monitor-{model}-{alarm.key.replace('_', '-')}"


def parse_alarm_name(prefix: str, name: str, models: list[str] | tuple[str, ...]) -> tuple[str, Alarm] | None:
    """(model, alarm) of an alarm named by alarm_name, or None for any other name."""
    for model in models:
        for alarm in ALARMS:
            if alarm_name(prefix, model, alarm) == name:
                return model, alarm
    return None


def evaluate(spec: ModelSpec, figures: Mapping[str, float | None]) -> dict[str, dict]:
    """Each alarm's state for a run's figures: {"key": {"state", "value", "threshold"}}; state
    is "ALARM", "OK", or "INSUFFICIENT_DATA" where the run could not judge the figure."""
    states = {}
    for alarm in ALARMS:
        value = figures.get(alarm.metric)
        threshold = alarm.threshold(spec)
        if value is None:
            state = "INSUFFICIENT_DATA"
        else:
            state = "ALARM" if value >= threshold else "OK"
        states[alarm.key] = {"state": state, "value": value, "threshold": threshold}
    return states
