"""Train a model from its spec into a model bundle: the SageMaker training entry point, also
runnable locally with plain paths.

SageMaker training contract (every path can be overridden on the command line):
  training data   SM_CHANNEL_TRAIN       (default /opt/ml/input/data/train): a CSV file, or a
                                          folder whose *.csv / *.csv.gz files are concatenated
  reference data  SM_CHANNEL_REFERENCE   (optional, the same form): the rows the version is
                                          monitored against (retraining gives the newest
                                          production rows); default: the training data
  model           SM_MODEL_DIR           (default /opt/ml/model): model.joblib + metrics.json
  extra outputs   SM_OUTPUT_DATA_DIR     (optional): a copy of metrics.json
  hyperparameters SM_INPUT_CONFIG_DIR/hyperparameters.json (default /opt/ml/input/config);
                  values arrive as strings and are parsed ("150" -> 150, "true" -> True).
                  `model`, `version` and `seed` are read by this script; `params` (a JSON
                  object) and every other key are estimator parameters overriding
                  spec.training.params.
  failure reason  SM_OUTPUT_DIR/failure  (when SM_OUTPUT_DIR is set)

    python -m model_artifacts.train --spec purchase-propensity --train data/train.csv \\
        --model-dir build/model --hp max_iter=200 --hp learning_rate=0.05
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.model_selection import train_test_split

if not __package__:
    # Run as a file (SageMaker runs the entry point script): make the repository's packages
    # importable when they are not installed. model_artifacts/ sits in the repo root and the
    # shared `inferline` package in functions/.
    _repo = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(_repo), str(_repo / "functions")]

from inferline.spec import ModelSpec, SpecError, UnknownModel, load_spec, load_spec_file  # noqa: E402
from model_artifacts.bundle import ModelBundle, to_frame  # noqa: E402
from model_artifacts.compiled import compile_bundle
from model_artifacts.metrics import holdout_metrics  # noqa: E402
from model_artifacts.monitoring.baseline import compute_baseline  # noqa: E402
from model_artifacts.pipeline import ESTIMATORS, build_pipeline  # noqa: E402

log = logging.getLogger("inferline.train")

METRICS_FILE = "metrics.json"
# Hyperparameters this script reads itself; every other one goes to the estimator.
RESERVED_HYPERPARAMETERS = ("model", "version", "seed", "params")
SHOWN_ROWS = 10  # how many offending rows an error message lists


class TrainingError(ValueError):
    """Training cannot start; the message names the column, rows or hyperparameter at fault."""


# -- training ------------------------------------------------------------------------------


def train(
    spec: ModelSpec,
    frame: pd.DataFrame,
    version: str | None = None,
    params: dict[str, Any] | None = None,
    seed: int | None = None,
    reference: pd.DataFrame | None = None,
) -> ModelBundle:
    """Fit the spec's Pipeline on `frame` and return the bundle with holdout metrics, the
    monitoring baseline and provenance.

    `frame` holds every model input of the spec and the target (other columns are ignored).
    `params` override spec.training.params; `seed` (default spec.training.seed) drives the
    holdout split and the estimator, so the same data, params and seed give the same model.
    `reference` (the same columns) is what the version will be monitored against when given:
    the newest production rows, as retraining passes them; by default the training rows
    (inputs) and the rows held out (scores).
    """
    seed = spec.training.seed if seed is None else int(seed)
    effective = dict(spec.training.params) | {"random_state": seed} | dict(params or {})
    _check_params(spec, effective)
    check_columns(spec, frame)
    y = target_values(spec, frame)
    _check_numeric_inputs(spec, frame)
    data_sha = frame_sha256(frame)
    version = version or default_version(spec, data_sha, effective, seed)

    inputs = to_frame(spec, frame[spec.model_inputs].to_dict("records"))
    fit_rows, holdout_rows = holdout_split(spec, y, seed)
    x_fit, y_fit = inputs.iloc[fit_rows].reset_index(drop=True), y[fit_rows]
    x_hold, y_hold = inputs.iloc[holdout_rows].reset_index(drop=True), y[holdout_rows]
    log.info(
        "%s: %d rows -> %d to fit, %d held out (seed %d)",
        spec.name,
        len(frame),
        len(fit_rows),
        len(holdout_rows),
        seed,
    )

    pipeline = build_pipeline(spec, effective)
    log.info("fitting %s %s", spec.training.estimator, _describe(effective))
    started = time.perf_counter()
    pipeline.fit(x_fit, y_fit)
    fit_seconds = time.perf_counter() - started
    log.info("fitted in %.1f s", fit_seconds)

    proba = pipeline.predict_proba(x_hold)
    metrics, scores = holdout_metrics(spec, list(pipeline.classes_), y_hold, proba)
    log.info("holdout: %s", ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    if reference is not None:
        check_columns(spec, reference)
        ref_inputs = to_frame(spec, reference[spec.model_inputs].to_dict("records"))
        baseline = compute_baseline(
            spec, pipeline, inputs=ref_inputs, reference=ref_inputs,
            reference_y=target_values(spec, reference),
            source=f"the {len(reference):,} reference rows given to training (the newest production rows)",
        )  # fmt: skip
    else:
        baseline = compute_baseline(
            spec, pipeline, inputs=inputs, reference=x_hold, reference_y=y_hold,
            source=f"the {len(inputs):,} training rows (inputs), the {len(x_hold):,} held out (scores)",
        )  # fmt: skip
    info = {
        "model": spec.name,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "training_rows": len(fit_rows),
        "holdout_rows": len(holdout_rows),
        "seed": seed,
        "data_sha256": data_sha,
        "estimator": spec.training.estimator,
        "params": _jsonable(effective),
        "fit_seconds": round(fit_seconds, 3),
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "pandas_version": pd.__version__,
        "python_version": platform.python_version(),
    }
    bundle = ModelBundle(
        spec=spec, version=version, pipeline=pipeline, metrics=metrics, baseline=baseline, info=info
    )
    # the compiled backend: converted to ONNX and checked on the rows held out
    compile_bundle(bundle, x_hold.to_dict("records"))
    return bundle


def check_columns(spec: ModelSpec, frame: pd.DataFrame) -> None:
    """Fail, naming them all, when a model input or the target is not a column of `frame`."""
    needed = [*spec.model_inputs, spec.target.name]
    missing = [name for name in needed if name not in frame.columns]
    if missing:
        raise TrainingError(
            f"training data for {spec.name} is missing column(s): {', '.join(missing)} "
            f"(it needs every model input and the target '{spec.target.name}'; "
            f"it has: {', '.join(map(str, frame.columns))})"
        )


def target_values(spec: ModelSpec, frame: pd.DataFrame) -> np.ndarray:
    """The target column as spec classes; a value that names no class fails with its rows.

    A class may be given as itself (1), its text ("1"), its label ("purchase") or, for a
    binary model, a bool.
    """
    name = spec.target.name
    codes, uniques = pd.factorize(frame[name], use_na_sentinel=True)
    classes = [_class_of(spec, value) for value in uniques]
    bad = (codes < 0) | np.isin(codes, [i for i, c in enumerate(classes) if c is None])
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(f"row {i + 1}: {_show(frame[name].iloc[i])}" for i in rows[:SHOWN_ROWS])
        more = f" (and {len(rows) - SHOWN_ROWS} more)" if len(rows) > SHOWN_ROWS else ""
        raise TrainingError(
            f"target '{name}' has {len(rows)} row(s) that name no class of {spec.name} "
            f"(expected one of {spec.target.classes} or their labels; rows count from 1, "
            f"header excluded): {shown}{more}"
        )
    y = np.array(classes)[codes]
    counts = {c: int(np.sum(y == c)) for c in spec.target.classes}
    scarce = {c: n for c, n in counts.items() if n < 2}
    if scarce:
        raise TrainingError(
            f"target '{name}' needs at least 2 rows of every class to train and hold out; "
            f"rows per class: {counts}"
        )
    return y


def frame_sha256(frame: pd.DataFrame) -> str:
    """sha256 of the training data in a canonical CSV form (the same rows give the same hash
    whether they came from a file or from memory)."""
    text = frame.to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_version(spec: ModelSpec, data_sha256: str, params: dict[str, Any], seed: int) -> str:
    """The version a run gets when none is given: "dev-" + 10 hex of a hash over what
    determines the model (data, spec, params, seed)."""
    identity = {
        "data": data_sha256,
        "spec": spec.model_dump(mode="json"),
        "params": _jsonable(params),
        "seed": seed,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"dev-{digest[:10]}"


def write_metrics(bundle: ModelBundle, out_dir: Path | str) -> Path:
    """metrics.json: the holdout metrics and provenance, for the gate and for people."""
    path = Path(out_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": bundle.spec.name,
        "version": bundle.version,
        "metric": bundle.spec.evaluation.metric,
        "metrics": bundle.metrics,
        "info": bundle.info,
    }
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


# -- inputs: data, spec, hyperparameters -------------------------------------------------


def load_training_data(path: Path | str) -> pd.DataFrame:
    """A CSV file, or every *.csv / *.csv.gz under a folder (sorted by path) concatenated."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith((".csv", ".csv.gz")))
        if not files:
            raise TrainingError(f"no .csv files in the training data folder {path}")
    elif path.is_file():
        files = [path]
    else:
        raise TrainingError(f"training data not found: {path}")
    frames = []
    for file in files:
        log.info("reading %s", file)
        frames.append(pd.read_csv(file))
        if list(frames[-1].columns) != list(frames[0].columns):
            raise TrainingError(
                f"{file} has columns {list(frames[-1].columns)}, but {files[0]} has {list(frames[0].columns)}"
            )
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def resolve_spec(name_or_path: str) -> ModelSpec:
    """A spec by model name (from the specs folder) or by the path of its YAML/JSON file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or path.is_file():
        if not path.is_file():
            raise TrainingError(f"spec file not found: {path}")
        return load_spec_file(path)
    return load_spec(name_or_path)


def read_hyperparameters(config_dir: Path | str) -> dict[str, Any]:
    """hyperparameters.json as SageMaker writes it (string values, parsed), without the
    `sagemaker_*` keys the platform adds for itself. No file means no hyperparameters."""
    path = Path(config_dir) / "hyperparameters.json"
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {k: parse_hyperparameter(v) for k, v in raw.items() if not k.startswith("sagemaker_")}


def parse_hyperparameter(value: Any) -> Any:
    """A hyperparameter value from its text: JSON first ("150", "0.1", "true", "null",
    "[1, 2]"), then Python's True/False/None, else the text itself."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"True": True, "False": False, "None": None}.get(text, text)


def _key_values(pairs: list[str], what: str) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise TrainingError(f"{what} {pair!r} is not key=value")
        out[key.strip()] = parse_hyperparameter(value)
    return out


def _passed_through(extra: list[str]) -> dict[str, Any]:
    """`--key value` / `--key=value` arguments the SageMaker toolkit passes for each
    hyperparameter (script mode), read as hyperparameters."""
    out, i = {}, 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise TrainingError(f"unexpected argument {arg!r}")
        if "=" in arg:
            out |= _key_values([arg[2:]], "argument")
            i += 1
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            out[arg[2:]] = parse_hyperparameter(extra[i + 1])
            i += 2
        else:
            raise TrainingError(f"argument {arg} has no value")
    return out


# -- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train a model from its spec (SageMaker training contract).",
        epilog="Other --key value arguments are read as hyperparameters, as SageMaker passes them.",
        allow_abbrev=False,  # `--model x` (a hyperparameter) must not be read as --model-dir
    )
    parser.add_argument(
        "--spec", help="model name or spec file (default: hyperparameter 'model', then $INFERLINE_MODEL)"
    )
    parser.add_argument("--train", help="training CSV or folder (default $SM_CHANNEL_TRAIN)")
    parser.add_argument(
        "--reference", help="monitoring reference CSV or folder (default $SM_CHANNEL_REFERENCE, if set)"
    )
    parser.add_argument("--model-dir", help="where model.joblib goes (default $SM_MODEL_DIR)")
    parser.add_argument("--output-data-dir", help="extra outputs (default $SM_OUTPUT_DATA_DIR)")
    parser.add_argument("--version", help="model version (default dev-<hash of the inputs>)")
    parser.add_argument("--seed", type=int, help="split and estimator seed (default: the spec's)")
    parser.add_argument(
        "--hp", action="append", default=[], metavar="KEY=VALUE", help="estimator hyperparameter; repeatable"
    )
    args, extra = parser.parse_known_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        run(args, extra)
    except (TrainingError, SpecError, UnknownModel) as exc:
        message = f"unknown model {exc}" if isinstance(exc, UnknownModel) else str(exc)
        _report_failure(message)
        log.error("%s", message)
        return 2
    except Exception as exc:
        _report_failure(f"{type(exc).__name__}: {exc}")
        raise
    return 0


def run(args: argparse.Namespace, extra: list[str]) -> ModelBundle:
    """Resolve the contract's inputs, train, and write the bundle and metrics."""
    config_dir = os.environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config")
    hyper = read_hyperparameters(config_dir) | _passed_through(extra) | _key_values(args.hp, "--hp")
    model = args.spec or hyper.pop("model", None) or os.environ.get("INFERLINE_MODEL")
    version = args.version or hyper.pop("version", None)
    seed = args.seed if args.seed is not None else hyper.pop("seed", None)
    overrides = hyper.pop("params", None) or {}  # one JSON object, as the retraining workflow passes it
    if not isinstance(overrides, dict):
        raise TrainingError(f"hyperparameter 'params' must be a JSON object, got {overrides!r}")
    for key in RESERVED_HYPERPARAMETERS:
        hyper.pop(key, None)
    hyper = overrides | hyper
    if not model:
        raise TrainingError("no model: pass --spec, a 'model' hyperparameter or $INFERLINE_MODEL")
    spec = resolve_spec(str(model))
    seed = spec.training.seed if seed is None else int(seed)

    train_path = args.train or os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
    model_dir = Path(args.model_dir or os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    output_dir = args.output_data_dir or os.environ.get("SM_OUTPUT_DATA_DIR")

    frame = load_training_data(train_path)
    reference_path = args.reference or os.environ.get("SM_CHANNEL_REFERENCE")
    reference = load_training_data(reference_path) if reference_path else None
    log.info("training %s on %d rows", spec.name, len(frame))
    bundle = train(
        spec, frame, str(version) if version else None, params=hyper, seed=seed, reference=reference
    )

    saved = bundle.save(model_dir)
    write_metrics(bundle, model_dir)
    if output_dir:
        write_metrics(bundle, output_dir)
    for name, value in bundle.metrics.items():
        log.info("metric %s=%s", name, value)  # one line each, for log-based metric capture
    log.info("wrote %s (version %s)", saved, bundle.version)
    return bundle


# -- helpers -------------------------------------------------------------------------------


def _check_params(spec: ModelSpec, params: dict[str, Any]) -> None:
    valid = ESTIMATORS[spec.training.estimator]().get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise TrainingError(
            f"hyperparameter(s) {', '.join(unknown)} are not parameters of "
            f"{spec.training.estimator}; it takes: {', '.join(sorted(valid))}"
        )


def _check_numeric_inputs(spec: ModelSpec, frame: pd.DataFrame) -> None:
    for name in spec.numeric_inputs:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            continue
        parsed = pd.to_numeric(column, errors="coerce")
        rows = np.flatnonzero(parsed.isna() & column.notna())
        if len(rows):
            shown = ", ".join(f"row {i + 1}: {_show(column.iloc[i])}" for i in rows[:SHOWN_ROWS])
            raise TrainingError(
                f"column '{name}' must be numeric; {len(rows)} row(s) are not "
                f"(rows count from 1, header excluded): {shown}"
            )


def holdout_split(spec: ModelSpec, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows fitted, rows held out): stratified by class, the same for the same target and seed."""
    rows = np.arange(len(y))
    try:
        return train_test_split(rows, test_size=spec.training.holdout_fraction, random_state=seed, stratify=y)
    except ValueError as exc:  # too few rows for a stratified holdout
        raise TrainingError(
            f"cannot hold out {spec.training.holdout_fraction:.0%} of "
            f"{len(y)} rows stratified by class: {exc}"
        ) from exc


def _class_of(spec: ModelSpec, value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, str):
        value = value.strip()
    found = spec.class_for(value)
    if found is None and isinstance(value, str):
        found = next((c for c in spec.target.classes if str(c) == value), None)
    return found


def _show(value: Any) -> str:
    return "(missing)" if pd.isna(value) else repr(value.item() if hasattr(value, "item") else value)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(params, default=str))


def _describe(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))


def _report_failure(message: str) -> None:
    """SageMaker shows the contents of /opt/ml/output/failure as the job's failure reason."""
    output = os.environ.get("SM_OUTPUT_DIR") or (
        "/opt/ml/output" if Path("/opt/ml/output").is_dir() else None
    )
    if output:
        Path(output).mkdir(parents=True, exist_ok=True)
        (Path(output) / "failure").write_text(message[:1024], encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
