"""The compiled backend: each estimator the platform trains, converted to ONNX, scores 10,000
random rows as scikit-learn does; what cannot be converted says why (the server then serves the
original)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline

from inferline.spec import ModelSpec, load_spec
from model_artifacts import compiled
from model_artifacts.bundle import ModelBundle, to_frame
from model_artifacts.demo_data import generate_training_frame
from model_artifacts.pipeline import build_pipeline
from model_artifacts.train import target_values

ROWS = 10_000


def spec_for(estimator: str, task: str = "binary") -> ModelSpec:
    data = load_spec("purchase-propensity").model_dump(mode="json")
    data["training"] |= {"estimator": estimator, "params": {}}
    if task == "multiclass":
        data["task"] = "multiclass"
        data["target"]["classes"] = ["low", "mid", "high"]
        data["output"] = {"top_k": 2}
    return ModelSpec.model_validate(data)


def fitted(spec: ModelSpec, params: dict, rows: int = 3000) -> ModelBundle:
    frame = generate_training_frame(rows, seed=5)
    if spec.task == "multiclass":  # three classes from the price
        frame[spec.target.name] = np.array(spec.target.classes)[np.digitize(frame["price"], [20, 60])]
    inputs = to_frame(spec, frame[spec.model_inputs].to_dict("records"))
    pipeline = build_pipeline(spec, params).fit(inputs, target_values(spec, frame))
    return ModelBundle(spec=spec, version="1", pipeline=pipeline)


def random_rows(spec: ModelSpec, count: int, seed: int) -> list[dict]:
    """Rows across each input's whole range (past the training data's), some numbers missing."""
    rng = np.random.default_rng(seed)
    frame = generate_training_frame(count, seed=seed + 1)
    records = frame[spec.model_inputs].to_dict("records")
    for name in spec.numeric_inputs:
        spread = rng.uniform(-2, 3, count) * (frame[name].abs().max() + 1)
        for i in np.flatnonzero(rng.random(count) < 0.3):
            records[i][name] = float(spread[i])
    for i in np.flatnonzero(rng.random(count) < 0.02):
        records[i][spec.numeric_inputs[i % len(spec.numeric_inputs)]] = None
    return records


CASES = {
    "hist_gradient_boosting": {"max_iter": 60, "max_leaf_nodes": 15},
    "logistic_regression": {"max_iter": 500},
    "random_forest": {"n_estimators": 30, "max_depth": 8},
}


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("estimator", sorted(CASES))
def test_a_converted_model_scores_as_the_original_on_10000_random_rows(estimator, task):
    spec = spec_for(estimator, task)
    bundle = fitted(spec, CASES[estimator])
    records = random_rows(spec, ROWS, seed=3)
    if estimator != "hist_gradient_boosting":  # only HistGradientBoosting takes missing numbers
        records = [{k: (0.0 if v is None else v) for k, v in r.items()} for r in records]
    try:
        onnx_bytes = compiled.convert(bundle)
    except compiled.ConversionFailed as exc:
        pytest.fail(f"{estimator} ({task}) did not convert: {exc}")
    report = compiled.check(bundle, onnx_bytes, records)
    assert report.rows == ROWS
    assert report.passed and report.max_difference < 1e-9, report


def test_hist_gradient_boosting_is_compiled_in_double_precision():
    """One TreeEnsemble node (ai.onnx.ml 5) in float64: no rounding of a value near a split."""
    bundle = fitted(spec_for("hist_gradient_boosting"), CASES["hist_gradient_boosting"])
    model = onnx.load_from_string(compiled.convert(bundle))
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node].count("TreeEnsemble") == 1
    assert "TreeEnsembleClassifier" not in {n.op_type for n in model.graph.node}
    assert {o.domain: o.version for o in model.opset_import}["ai.onnx.ml"] == compiled.ML_OPSET
    # a row exactly on a split threshold, and one a float64 ulp above it
    final: HistGradientBoostingClassifier = bundle.pipeline.steps[-1][1]
    node = next(n for n in final._predictors[0][0].nodes if not n["is_leaf"])
    scaler = bundle.pipeline.named_steps["columns"].named_transformers_["numeric"]
    feature = int(node["feature_idx"])
    name = bundle.spec.numeric_inputs[feature]
    on_split = float(node["num_threshold"]) * scaler.scale_[feature] + scaler.mean_[feature]
    base = random_rows(bundle.spec, 1, seed=9)[0]
    rows = [base | {name: on_split}, base | {name: np.nextafter(on_split, np.inf)}]
    assert compiled.check(bundle, compiled.convert(bundle), rows).max_difference < 1e-12


def test_a_model_that_cannot_be_converted_says_why():
    spec = spec_for("hist_gradient_boosting")
    frame = generate_training_frame(500, seed=2)
    inputs = to_frame(spec, frame[spec.model_inputs].to_dict("records"))
    # categorical splits: not converted (the server then serves scikit-learn)
    pipeline = build_pipeline(spec, {"max_iter": 5})
    one_hot = list(range(len(spec.numeric_inputs), len(spec.numeric_inputs) + 8))  # the category columns
    pipeline.steps[-1] = ("model", HistGradientBoostingClassifier(max_iter=30, categorical_features=one_hot))
    pipeline.fit(inputs, target_values(spec, frame))
    trees = pipeline.steps[-1][1]._predictors
    assert any(t.nodes["is_categorical"].any() for ts in trees for t in ts), "needs a categorical split"
    with pytest.raises(compiled.ConversionFailed, match="categorical splits"):
        compiled.convert(ModelBundle(spec=spec, version="1", pipeline=pipeline))
    # an estimator skl2onnx does not know
    odd = Pipeline([("columns", pipeline.steps[0][1]), ("model", _Unknown())])
    with pytest.raises(compiled.ConversionFailed, match="_Unknown"):
        compiled.convert(ModelBundle(spec=spec, version="1", pipeline=odd))


def test_a_model_whose_scores_differ_fails_the_check():
    bundle = fitted(spec_for("logistic_regression"), CASES["logistic_regression"])
    other = fitted(spec_for("logistic_regression"), {"max_iter": 500, "C": 0.001})
    rows = [{k: (0.0 if v is None else v) for k, v in r.items()}
            for r in random_rows(bundle.spec, 500, seed=4)]  # fmt: skip
    report = compiled.check(bundle, compiled.convert(other), rows)
    assert not report.passed and report.max_difference > 1e-3


def test_boolean_attribute_lists_are_written_as_integers():
    """skl2onnx 1.20 writes leaves' nodes_missing_value_tracks_true as False among uint8 ones,
    which onnx 1.23 refuses; the adaptation makes them integers and touches nothing else."""
    from skl2onnx.common._container import ModelComponentContainer

    seen = {}
    original = ModelComponentContainer.add_node
    ModelComponentContainer.add_node = lambda self, *a, **attrs: seen.update(attrs)
    try:
        with compiled._integer_attributes():
            ModelComponentContainer.add_node(None, "Op", [], [], flags=[np.uint8(1), False, True],
                                             weights=[0.5, 1.5], name="n")  # fmt: skip
    finally:
        ModelComponentContainer.add_node = original
    assert seen["flags"] == [1, 0, 1] and all(type(v) is int for v in seen["flags"])
    assert seen["weights"] == [0.5, 1.5]
    assert ModelComponentContainer.add_node is original


class _Unknown:
    classes_ = np.array([0, 1])

    def fit(self, x, y):
        return self

    def predict_proba(self, x):
        return np.full((len(x), 2), 0.5)


def test_the_gate_and_the_registry_carry_the_backend_that_will_serve():
    from retrain import gate

    overall = {"roc_auc": 0.8, "accuracy": 0.7, "log_loss": 0.5}
    trained = {"compiled": {"backend": "onnxruntime", "max_difference": 1e-16}}
    report = {"metric": "roc_auc", "higher_is_better": True, "champion": None,
              "contender": {"version": "2", "overall": overall, "slices": {},
                            "trained": trained}}  # fmt: skip
    assert gate.decide(report)["contender"]["backend"] == "onnxruntime"
    report["contender"]["trained"] = {}  # a version trained before the compiled backend
    assert gate.decide(report)["contender"]["backend"] is None
