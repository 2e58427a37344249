"""A model compiled to ONNX: converted, checked against the original, and run by ONNX Runtime.

    onnx_bytes = convert(bundle)               # ConversionFailed says why not
    report = check(bundle, onnx_bytes, rows)   # max |score difference| on held-out rows

Conversion is skl2onnx's, in double precision end to end: the request's numbers are float64,
as scikit-learn scores them, so the converted model takes the same branches. Two adaptations:

- HistGradientBoosting's trees become one ai.onnx.ml `TreeEnsemble` node (opset 5, which
  compares in double): skl2onnx's own converter emits `TreeEnsembleClassifier`, whose outputs
  are float32 only, so in float32 a value a hair from a split threshold can take the other
  branch (9 of 10,000 demo rows scored up to 0.064 apart).
- skl2onnx 1.20 writes some integer attributes as Python booleans, which onnx 1.23 refuses
  ("Expected an int, got a boolean"): those lists are written as integers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_artifacts.bundle import ModelBundle

log = logging.getLogger("inferline.compiled")

ONNX_RUNTIME, SCIKIT_LEARN = "onnxruntime", "scikit-learn"  # the backends a model is served with
OPSETS = {"": 21, "ai.onnx.ml": 3}  # what skl2onnx converts to; then ai.onnx.ml is raised to 5
ML_OPSET = 5  # TreeEnsemble (double precision); the other ai.onnx.ml operators are unchanged in it
DEFAULT_TOLERANCE = 1e-5


class ConversionFailed(ValueError):
    """The model cannot be converted to ONNX (the reason names the step or estimator)."""


@dataclass(frozen=True)
class CheckReport:
    rows: int
    max_difference: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_difference <= self.tolerance


def compile_bundle(bundle: ModelBundle, records: list[dict[str, Any]]) -> None:
    """Convert the bundle's pipeline and check it on `records` (held-out rows): on success the
    bundle keeps the ONNX model (saved as model.onnx) for the server to run; either way
    info["compiled"] says which backend serves and why."""
    tolerance = bundle.spec.training.onnx_tolerance
    started = time.perf_counter()
    try:
        onnx_bytes = convert(bundle)
        report = check(bundle, onnx_bytes, records, tolerance)
    except Exception as exc:  # ConversionFailed, or ONNX Runtime refusing the converted model
        bundle.onnx = None
        bundle.info["compiled"] = {"backend": SCIKIT_LEARN, "reason": f"not converted: {exc}"[:500]}
        log.warning("%s %s is served by scikit-learn: not converted (%s)", bundle.spec.name,
                    bundle.version, exc)  # fmt: skip
        return
    facts = {"rows": report.rows, "max_difference": report.max_difference, "tolerance": tolerance,
             "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
    if report.passed:
        bundle.onnx = onnx_bytes
        bundle.info["compiled"] = {"backend": ONNX_RUNTIME} | facts
    else:
        bundle.onnx = None
        why = f"its scores differ from scikit-learn's by up to {report.max_difference:.3g} (> {tolerance:g})"
        bundle.info["compiled"] = {"backend": SCIKIT_LEARN, "reason": why} | facts
    log.info("%s %s is served by %s (%s)", bundle.spec.name, bundle.version,
             bundle.info["compiled"]["backend"], facts)  # fmt: skip


def served_backend(bundle: ModelBundle) -> str:
    """The backend the server runs for this bundle: ONNX Runtime if its model passed its check."""
    compiled = bundle.info.get("compiled") or {}
    passed = bundle.onnx is not None and compiled.get("backend") == ONNX_RUNTIME
    return ONNX_RUNTIME if passed else SCIKIT_LEARN


def input_types(bundle: ModelBundle) -> list[tuple[str, Any]]:
    """One [None, 1] input per model input, in the spec's order: double or string."""
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    numeric = set(bundle.spec.numeric_inputs)
    return [(name, DoubleTensorType([None, 1]) if name in numeric else StringTensorType([None, 1]))
            for name in bundle.spec.model_inputs]  # fmt: skip


def convert(bundle: ModelBundle) -> bytes:
    """The bundle's pipeline as a serialized ONNX model (inputs: input_types; outputs: label,
    probabilities in bundle.classes order)."""
    from skl2onnx import convert_sklearn

    final = bundle.pipeline.steps[-1][1] if hasattr(bundle.pipeline, "steps") else bundle.pipeline
    try:
        with _double_precision_trees(), _integer_attributes():
            model = convert_sklearn(
                bundle.pipeline,
                initial_types=input_types(bundle),
                options={id(final): {"zipmap": False}},
                target_opset=OPSETS,
            )
    except Exception as exc:  # skl2onnx raises many kinds: each is a reason to fall back
        raise ConversionFailed(f"{type(exc).__name__}: {exc}".splitlines()[0][:500]) from exc
    if any(node.op_type == "TreeEnsemble" for node in model.graph.node):
        for opset in model.opset_import:  # skl2onnx knows ai.onnx.ml up to 3 only
            if opset.domain == "ai.onnx.ml":
                opset.version = ML_OPSET
    return model.SerializeToString()


def session(onnx_bytes: bytes, threads: int = 1):
    """An ONNX Runtime session on the CPU (one thread by default: the server runs one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def feeds(bundle: ModelBundle, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ONNX Runtime inputs from model-input columns (numbers float64, the rest strings)."""
    numeric = set(bundle.spec.numeric_inputs)
    out = {}
    for name in bundle.spec.model_inputs:
        column = np.asarray(columns[name])
        if name in numeric:
            column = column.astype(np.float64, copy=False)
        else:
            column = np.array(["" if v is None else str(v) for v in column], dtype=object)
        out[name] = column.reshape(-1, 1)
    return out


def check(bundle: ModelBundle, onnx_bytes: bytes, records: list[dict[str, Any]],
          tolerance: float = DEFAULT_TOLERANCE) -> CheckReport:  # fmt: skip
    """The largest difference between the original's and the ONNX model's probabilities."""
    frame = bundle.frame(records)
    expected = bundle.pipeline.predict_proba(frame)
    columns = {name: frame[name].to_numpy() for name in bundle.spec.model_inputs}
    got = session(onnx_bytes).run(["probabilities"], feeds(bundle, columns))[0]
    if got.shape != expected.shape:
        return CheckReport(len(records), float("inf"), tolerance)
    difference = np.abs(np.asarray(got, dtype=np.float64) - expected)
    worst = float(np.nanmax(difference)) if difference.size else 0.0
    if np.isnan(got).any():
        worst = float("inf")
    return CheckReport(len(records), worst, tolerance)


# -- the adaptations ---------------------------------------------------------------------------


@contextmanager
def _integer_attributes() -> Iterator[None]:
    """skl2onnx's attribute lists with booleans in them, written as the integers ONNX wants."""
    from skl2onnx.common import _container

    original = _container.ModelComponentContainer.add_node

    def add_node(self, op_type, inputs, outputs, op_domain="", op_version=None, name=None, **attrs):
        for key, value in attrs.items():
            if isinstance(value, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in value):
                attrs[key] = [int(v) for v in value]
        return original(self, op_type, inputs, outputs, op_domain=op_domain, op_version=op_version,
                        name=name, **attrs)  # fmt: skip

    _container.ModelComponentContainer.add_node = add_node
    try:
        yield
    finally:
        _container.ModelComponentContainer.add_node = original


@contextmanager
def _double_precision_trees() -> Iterator[None]:
    """The tree ensembles converted by our double-precision converters while inside."""
    from skl2onnx import _supported_operators
    from skl2onnx.common._registration import _converter_pool
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    ours = {HistGradientBoostingClassifier: _convert_hist_gradient_boosting,
            RandomForestClassifier: _convert_random_forest}  # fmt: skip
    originals = {}
    for estimator, converter in ours.items():
        alias = _supported_operators.sklearn_operator_name_map[estimator]
        originals[alias] = _converter_pool[alias]
        _converter_pool[alias] = _Converter(converter, originals[alias])
    try:
        yield
    finally:
        _converter_pool.update(originals)


class _Converter:
    """A converter in skl2onnx's registry: our function, with the original's options."""

    def __init__(self, function, original):
        self._fct, self._original = function, original
        self.__doc__ = function.__doc__

    def __call__(self, *args):
        return self._fct(*args)

    def get_allowed_options(self):
        return self._original.get_allowed_options()


def _convert_hist_gradient_boosting(scope, operator, container) -> None:
    """label and probabilities of a HistGradientBoostingClassifier: every tree in one
    double-precision TreeEnsemble node, the baseline added, then sigmoid (two classes) or
    softmax, as scikit-learn computes them."""
    from onnx import TensorProto

    model = operator.raw_operator
    if any(t.nodes["is_categorical"].any() for trees in model._predictors for t in trees):
        raise ConversionFailed("categorical splits (categorical_features) are not converted")
    k = model.n_trees_per_iteration_
    nodes: dict[str, list] = {n: [] for n in ("features", "splits", "true", "true_leaf", "false",
                                              "false_leaf", "missing")}  # fmt: skip
    roots, leaf_targets, leaf_weights = [], [], []
    for trees in model._predictors:
        for target, tree in enumerate(trees):
            t = tree.nodes
            _add_tree(t["left"], t["right"], t["is_leaf"], t["feature_idx"], t["num_threshold"],
                      t["missing_go_to_left"], t["value"], target,
                      nodes, roots, leaf_targets, leaf_weights)  # fmt: skip
    raw = _tree_ensemble(scope, container, operator.inputs[0].full_name, k, nodes, roots, leaf_targets,
                         leaf_weights)  # fmt: skip
    baseline = scope.get_unique_variable_name("baseline")
    offsets = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1).tolist()
    container.add_initializer(baseline, TensorProto.DOUBLE, [1, k], offsets)
    scores = scope.get_unique_variable_name("scores")
    container.add_node("Add", [raw, baseline], scores, name=scope.get_unique_operator_name("Add"))
    probabilities = operator.outputs[1].full_name
    if k == 1:
        positive = scope.get_unique_variable_name("positive")
        container.add_node("Sigmoid", scores, positive, name=scope.get_unique_operator_name("Sigmoid"))
        one = scope.get_unique_variable_name("one")
        container.add_initializer(one, TensorProto.DOUBLE, [1, 1], [1.0])
        negative = scope.get_unique_variable_name("negative")
        container.add_node("Sub", [one, positive], negative, name=scope.get_unique_operator_name("Sub"))
        container.add_node("Concat", [negative, positive], probabilities, axis=1,
                           name=scope.get_unique_operator_name("Concat"))  # fmt: skip
    else:
        container.add_node("Softmax", scores, probabilities, axis=1,
                           name=scope.get_unique_operator_name("Softmax"))  # fmt: skip
    _labels(scope, container, model.classes_, probabilities, operator.outputs[0].full_name)


def _convert_random_forest(scope, operator, container) -> None:
    """label and probabilities of a RandomForestClassifier as scikit-learn computes them: each
    tree's leaf class shares summed, then divided by the number of trees; the splits compare the
    value as float32 (scikit-learn's trees read their input as float32) with float64 thresholds."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType

    model = operator.raw_operator
    if getattr(model, "n_outputs_", 1) != 1:
        raise ConversionFailed("multi-output forests are not converted")
    k = len(model.classes_)
    nodes: dict[str, list] = {n: [] for n in ("features", "splits", "true", "true_leaf", "false",
                                              "false_leaf", "missing")}  # fmt: skip
    roots, leaf_targets, leaf_weights = [], [], []
    for estimator in model.estimators_:
        tree = estimator.tree_
        value = tree.value[:, 0, :]
        totals = value.sum(axis=1, keepdims=True)
        shares = value / np.where(totals == 0, 1.0, totals)  # as DecisionTreeClassifier.predict_proba
        missing_left = getattr(tree, "missing_go_to_left", np.zeros(tree.node_count, dtype=np.uint8))
        for target in range(k):  # a TreeEnsemble leaf adds to one target: one copy of the tree per class
            _add_tree(tree.children_left, tree.children_right, tree.children_left == -1, tree.feature,
                      tree.threshold, missing_left, shares[:, target], target, nodes, roots, leaf_targets,
                      leaf_weights)  # fmt: skip
    as_float = scope.get_unique_variable_name("as_float")
    container.add_node("Cast", operator.inputs[0].full_name, as_float, to=TensorProto.FLOAT,
                       name=scope.get_unique_operator_name("Cast"))  # fmt: skip
    rounded = scope.get_unique_variable_name("rounded")
    container.add_node("Cast", as_float, rounded, to=TensorProto.DOUBLE,
                       name=scope.get_unique_operator_name("Cast"))  # fmt: skip
    output = operator.outputs[1]  # skl2onnx declares a forest's probabilities float32: they are float64
    output.type = DoubleTensorType(output.type.shape)
    probabilities = output.full_name
    summed = _tree_ensemble(scope, container, rounded, k, nodes, roots, leaf_targets, leaf_weights)
    count = scope.get_unique_variable_name("count")  # summed, then divided: as the forest averages
    container.add_initializer(count, TensorProto.DOUBLE, [1, 1], [float(len(model.estimators_))])
    container.add_node("Div", [summed, count], probabilities, name=scope.get_unique_operator_name("Div"))
    _labels(scope, container, model.classes_, probabilities, operator.outputs[0].full_name)


def _tree_ensemble(scope, container, inputs: str, targets: int, nodes: dict[str, list], roots: list,
                   leaf_targets: list, leaf_weights: list) -> str:  # fmt: skip
    """One TreeEnsemble node (every tree; leaves summed per target) in double; its output name."""
    from onnx import numpy_helper

    raw = scope.get_unique_variable_name("raw")
    container.add_node(
        # declared as version 3 for skl2onnx's bookkeeping; convert() imports ai.onnx.ml 5
        "TreeEnsemble", inputs, raw, op_domain="ai.onnx.ml", op_version=3,
        name=scope.get_unique_operator_name("TreeEnsemble"),
        aggregate_function=1, post_transform=0, n_targets=targets, tree_roots=roots,
        nodes_modes=numpy_helper.from_array(np.zeros(len(nodes["features"]), dtype=np.uint8)),
        nodes_featureids=nodes["features"], nodes_splits=numpy_helper.from_array(np.array(nodes["splits"])),
        nodes_truenodeids=nodes["true"], nodes_trueleafs=nodes["true_leaf"],
        nodes_falsenodeids=nodes["false"], nodes_falseleafs=nodes["false_leaf"],
        nodes_missing_value_tracks_true=nodes["missing"],
        leaf_targetids=leaf_targets, leaf_weights=numpy_helper.from_array(np.array(leaf_weights)),
    )  # fmt: skip
    return raw


def _labels(scope, container, classes: np.ndarray, probabilities: str, label: str) -> None:
    """label: the class of the highest probability (the first of equals, as numpy's argmax)."""
    from onnx import TensorProto

    index = scope.get_unique_variable_name("index")
    container.add_node("ArgMax", probabilities, index, axis=1, keepdims=0,
                       name=scope.get_unique_operator_name("ArgMax"))  # fmt: skip
    values = scope.get_unique_variable_name("classes")
    if classes.dtype.kind in "iub":
        container.add_initializer(values, TensorProto.INT64, [len(classes)], [int(c) for c in classes])
    else:
        names = [str(c).encode() for c in classes]
        container.add_initializer(values, TensorProto.STRING, [len(classes)], names)
    container.add_node("Gather", [values, index], label, axis=0,
                       name=scope.get_unique_operator_name("Gather"))  # fmt: skip


def _add_tree(left: np.ndarray, right: np.ndarray, is_leaf: np.ndarray, feature: np.ndarray,
              threshold: np.ndarray, missing_left: np.ndarray, leaf_value: np.ndarray, target: int,
              nodes: dict[str, list], roots: list, leaf_targets: list,
              leaf_weights: list) -> None:  # fmt: skip
    """One tree (node 0 its root) as TreeEnsemble nodes and leaves for `target`: left is the true
    branch (value <= threshold, or missing when missing values go left)."""
    offset = len(nodes["features"])
    splits = [i for i in range(len(left)) if not is_leaf[i]]
    leaves = {}
    for i in np.flatnonzero(is_leaf):
        leaves[int(i)] = len(leaf_weights)
        leaf_targets.append(target)
        leaf_weights.append(float(leaf_value[i]))
    if not splits:  # a single leaf: a split whose branches both end in it
        roots.append(offset)
        for key, value in (("features", 0), ("splits", 0.0), ("true", leaves[0]), ("true_leaf", 1),
                           ("false", leaves[0]), ("false_leaf", 1), ("missing", 0)):  # fmt: skip
            nodes[key].append(value)
        return
    position = {node: offset + i for i, node in enumerate(splits)}
    roots.append(position[0])
    for node in splits:
        lo, hi = int(left[node]), int(right[node])
        nodes["features"].append(int(feature[node]))
        nodes["splits"].append(float(threshold[node]))
        nodes["true"].append(leaves[lo] if is_leaf[lo] else position[lo])
        nodes["true_leaf"].append(int(bool(is_leaf[lo])))
        nodes["false"].append(leaves[hi] if is_leaf[hi] else position[hi])
        nodes["false_leaf"].append(int(bool(is_leaf[hi])))
        nodes["missing"].append(int(bool(missing_left[node])))
