"""The model spec: one YAML file per model, loaded into typed, validated objects.

A malformed spec fails at load with every problem listed, each naming the YAML line and the
dotted field path, so a typo is found before anything is trained or deployed.
"""

from __future__ import annotations

import os
import re
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

FieldType = Literal["string", "int", "float", "bool"]
ClassValue = int | str
NAME_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"

# Where specs live: model_artifacts/specs in the repo, or the folder a deployment bundles
# them into (INFERLINE_SPECS_DIR, set on every Lambda by the CDK app).
DEFAULT_SPECS_DIR = Path(__file__).resolve().parents[2] / "model_artifacts" / "specs"


class SpecError(ValueError):
    """A spec file that cannot be used; the message lists every problem with its line."""


class UnknownModel(LookupError):
    """No spec exists for the requested model name."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """One request field: its type, whether it is required, its limits, and its role."""

    type: FieldType
    required: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[ClassValue] | None = Field(default=None, min_length=1)
    max_length: int | None = Field(default=None, ge=1)
    pii: bool = False
    model_input: bool = True

    @model_validator(mode="after")
    def _limits_fit_the_type(self) -> FieldSpec:
        numeric = self.type in ("int", "float")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max apply to int and float fields, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.max_length is not None and self.type != "string":
            raise ValueError("max_length applies to string fields only")
        if self.allowed is not None and self.type not in ("string", "int"):
            raise ValueError("allowed values apply to string and int fields only")
        if self.pii and self.model_input:
            raise ValueError("a pii field cannot be a model input (set model_input: false)")
        return self


class StoredFeatureSpec(_Strict):
    """A feature kept in the feature store per entity, with the value used when it is missing."""

    type: Literal["int", "float", "string", "bool"]
    default: int | float | str | bool
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _default_fits(self) -> StoredFeatureSpec:
        expected = {"int": (int,), "float": (int, float), "string": (str,), "bool": (bool,)}
        ok = isinstance(self.default, expected[self.type])
        if self.type in ("int", "float") and isinstance(self.default, bool):
            ok = False
        if not ok:
            raise ValueError(f"default {self.default!r} is not a {self.type}")
        return self


class EntitySpec(_Strict):
    key: str
    feature_group: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")


class RequestSpec(_Strict):
    max_instances: int = Field(default=100, ge=1, le=10_000)
    fields: dict[str, FieldSpec] = Field(min_length=1)


class TargetSpec(_Strict):
    name: str
    classes: list[ClassValue] = Field(min_length=2)

    @model_validator(mode="after")
    def _unique(self) -> TargetSpec:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be unique")
        return self


class OutputSpec(_Strict):
    """Binary models map the positive-class score through a threshold; multiclass to top-k."""

    threshold: float | None = Field(default=None, gt=0, lt=1)
    top_k: int | None = Field(default=None, ge=1)
    labels: dict[ClassValue, str] | None = None


class TrainingSpec(_Strict):
    estimator: Literal["hist_gradient_boosting", "logistic_regression", "random_forest"]
    params: dict[str, Any] = Field(default_factory=dict)
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 0
    # the ONNX model serves only if its scores are within this of scikit-learn's on the holdout
    onnx_tolerance: float = Field(default=1e-5, gt=0, le=0.01)


class EvaluationSpec(_Strict):
    metric: Literal["roc_auc", "accuracy", "f1", "log_loss"]
    promotion_margin: float = Field(default=0.0, ge=0)
    slices: list[str] = Field(default_factory=list)
    slice_tolerance: float = Field(default=0.02, ge=0)
    # A slice value with fewer holdout rows is reported but not judged: its metric is noise.
    min_slice_rows: int = Field(default=200, ge=1)


class RetrainingSpec(_Strict):
    """How a retraining run builds its dataset from production data."""

    # Prediction logs joined with ground truth over this many days before the run.
    window_days: int = Field(default=35, ge=1, le=3650)
    # Fewer labeled production rows than this is a reported skip, not a training run.
    min_labeled_rows: int = Field(default=500, ge=10)
    # Label balance: every class must be at least this share of the labeled rows.
    min_class_share: float = Field(default=0.01, ge=0, lt=0.5)
    # The newest share of labeled production rows is the holdout both models are scored on.
    holdout_fraction: float = Field(default=0.3, gt=0, lt=1)


class LoggingSpec(_Strict):
    prediction_ttl_days: int = Field(default=90, ge=1, le=3650)


class MonitoringAlarmsSpec(_Strict):
    """The thresholds of the monitoring alarms (inferline.monitoring.ALARMS names each one's
    metric); a run whose figure reaches a threshold is in alarm."""

    # drift: model inputs that drifted (significant and at least drift_min_psi), and the
    # score or predicted label drifting
    drifted_features: int = Field(default=1, ge=1)
    prediction_drift: int = Field(default=1, ge=1)
    # quality: the live metric (with ground truth) or its estimate (CBPE, from the scores)
    # below the version's reference metric by this much (above, for log_loss)
    metric_drop: float = Field(default=0.05, gt=0)
    estimated_metric_drop: float = Field(default=0.05, gt=0)
    # data quality: the worst input's share of missing, unknown or out-of-range values, the
    # share of predictions whose entity had no stored features (defaults used), the share of
    # requests refused, and any score that is not a finite number
    missing_share: float = Field(default=0.05, gt=0, le=1)
    unknown_category_share: float = Field(default=0.02, gt=0, le=1)
    out_of_range_share: float = Field(default=0.05, gt=0, le=1)
    default_features_share: float = Field(default=0.25, gt=0, le=1)
    refused_share: float = Field(default=0.05, gt=0, le=1)
    nonfinite_scores: int = Field(default=1, ge=1)


class MonitoringSpec(_Strict):
    """How the model is watched in production between retrains (docs/monitoring.md)."""

    # The window a run looks back over, ending when it starts (or at --until).
    window_hours: int = Field(default=24, ge=1, le=24 * 90)
    # Fewer predictions of the serving version in the window: drift and data quality are
    # reported but not judged (no alarm); fewer labeled ones: the live metric likewise.
    min_rows: int = Field(default=500, ge=10)
    min_labeled_rows: int = Field(default=200, ge=10)
    # The drift tests' family-wise false-alarm rate: each of the k tests (every model input,
    # the score and the predicted label) is judged at drift_p_value / k (Bonferroni).
    drift_p_value: float = Field(default=0.05, gt=0, lt=1)
    # A shift smaller than this PSI is not drift, however significant (large windows make
    # negligible shifts significant).
    drift_min_psi: float = Field(default=0.02, ge=0)
    alarms: MonitoringAlarmsSpec = MonitoringAlarmsSpec()
    # A drift or quality alarm starts the retraining workflow, at most once per cool-down.
    retrain_on_alarm: bool = True
    retrain_cooldown_hours: int = Field(default=72, ge=1, le=24 * 365)


class ModelSpec(_Strict):
    """Everything inferline knows about one model, read from its YAML spec."""

    model_config = ConfigDict(extra="forbid", frozen=True, ignored_types=(cached_property,))

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    task: Literal["binary", "multiclass"]
    entity: EntitySpec
    request: RequestSpec
    stored_features: dict[str, StoredFeatureSpec] = Field(default_factory=dict)
    target: TargetSpec
    output: OutputSpec
    training: TrainingSpec
    evaluation: EvaluationSpec
    retraining: RetrainingSpec = RetrainingSpec()
    logging: LoggingSpec = LoggingSpec()
    monitoring: MonitoringSpec = MonitoringSpec()

    @model_validator(mode="before")
    @classmethod
    def _label_keys_as_classes(cls, data: Any) -> Any:
        """JSON object keys are strings: map "1" back to the class 1 it names."""
        try:
            labels = data["output"]["labels"]
            by_text = {str(c): c for c in data["target"]["classes"]}
        except (KeyError, TypeError):
            return data
        if isinstance(labels, dict):
            labels = {by_text.get(str(k), k): v for k, v in labels.items()}
            data = data | {"output": data["output"] | {"labels": labels}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        fields = self.request.fields
        key = fields.get(self.entity.key)
        if key is None:
            raise ValueError(f"entity.key '{self.entity.key}' is not a request field")
        if key.type != "string" or not key.required:
            raise ValueError(f"entity.key '{self.entity.key}' must be a required string field")
        clash = set(fields) & set(self.stored_features)
        if clash:
            raise ValueError(f"stored_features repeat request fields: {sorted(clash)}")
        if self.target.name in fields or self.target.name in self.stored_features:
            raise ValueError(f"target '{self.target.name}' is also a request or stored feature")
        if self.task == "binary":
            if len(self.target.classes) != 2:
                raise ValueError("a binary model has exactly two target.classes")
            if self.output.threshold is None:
                raise ValueError("a binary model needs output.threshold")
        elif self.output.top_k is None or self.output.top_k > len(self.target.classes):
            raise ValueError("a multiclass model needs output.top_k <= the number of classes")
        for value in self.output.labels or {}:
            if value not in self.target.classes:
                raise ValueError(f"output.labels names {value!r}, which is not a target class")
        for name in self.evaluation.slices:
            if name not in fields or fields[name].type != "string":
                raise ValueError(f"evaluation slice '{name}' is not a string request field")
        if not self.model_inputs:
            raise ValueError("the model has no inputs: no request field has model_input true")
        return self

    # -- views the rest of the platform reads ---------------------------------------------
    @cached_property
    def model_inputs(self) -> list[str]:
        """The columns the model is trained and served on, in a fixed order."""
        request = [n for n, f in self.request.fields.items() if f.model_input]
        return request + list(self.stored_features)

    @cached_property
    def categorical_inputs(self) -> list[str]:
        kinds = {n: f.type for n, f in self.request.fields.items()}
        kinds |= {n: f.type for n, f in self.stored_features.items()}
        return [n for n in self.model_inputs if kinds[n] in ("string", "bool")]

    @cached_property
    def numeric_inputs(self) -> list[str]:
        return [n for n in self.model_inputs if n not in self.categorical_inputs]

    @cached_property
    def pii_fields(self) -> list[str]:
        return [n for n, f in self.request.fields.items() if f.pii]

    @property
    def positive_class(self) -> ClassValue:
        return self.target.classes[-1]

    def label_for(self, value: ClassValue) -> str:
        labels = self.output.labels or {}
        return labels.get(value, str(value))

    def class_for(self, actual: Any) -> ClassValue | None:
        """The target class a piece of ground truth names (a class, its label, or a bool)."""
        if isinstance(actual, bool) and self.task == "binary":
            return self.target.classes[1] if actual else self.target.classes[0]
        for value in self.target.classes:
            if actual == value or (isinstance(actual, str) and actual == self.label_for(value)):
                return value
        return None


# -- loading ---------------------------------------------------------------------------


def specs_dir() -> Path:
    return Path(os.environ.get("INFERLINE_SPECS_DIR") or DEFAULT_SPECS_DIR)


def available_models() -> list[str]:
    return sorted(
        {p.stem for p in specs_dir().glob("*.yaml")} | {p.stem for p in specs_dir().glob("*.json")}
    )


@cache
def _load_cached(path: str) -> ModelSpec:
    return load_spec_file(Path(path))


def load_spec(name: str) -> ModelSpec:
    """The spec of a model by name; UnknownModel when there is none (cached per process)."""
    if not re.fullmatch(NAME_PATTERN, name or ""):
        raise UnknownModel(name)
    for suffix in (".yaml", ".json"):
        path = specs_dir() / f"{name}{suffix}"
        if path.is_file():
            return _load_cached(str(path))
    raise UnknownModel(name)


def load_spec_file(path: Path) -> ModelSpec:
    """Load a YAML spec, or the JSON form a deployment bundles (no YAML parser needed there)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        spec = ModelSpec.model_validate_json(text)
    else:
        spec = parse_spec(text, source=path.name)
    if spec.name != path.stem:
        raise SpecError(f"{path.name}: name '{spec.name}' does not match the file name")
    return spec


def parse_spec(text: str, source: str = "<spec>") -> ModelSpec:
    import yaml  # only where YAML is read: deployed Lambdas load the bundled JSON form

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"{source}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a spec is a YAML mapping, got {type(data).__name__}")
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"]) or "(top level)"
            line = _line_of(root, err["loc"])
            problems.append(f"  line {line}: {path}: {err['msg']}")
        raise SpecError(f"{source} is not a valid model spec:\n" + "\n".join(problems)) from None


def _line_of(node, loc: tuple) -> int:
    """The 1-based line of the deepest YAML node on a pydantic error path."""
    import yaml

    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if str(k.value) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            match = node.value[part] if part < len(node.value) else None
        else:
            match = None
        if match is None:
            break
        node, line = match, match.start_mark.line + 1
    return line
