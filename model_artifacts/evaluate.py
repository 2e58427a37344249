"""Score a contender and the champion on the same holdout: the retraining workflow's Evaluate
step, run as a SageMaker processing job on the serving image (and as a local process).

Processing job contract (every path can be overridden on the command line):
  holdout     /opt/ml/processing/holdout     a CSV file or a folder of *.csv (inputs + target)
  contender   /opt/ml/processing/contender   model.tar.gz or model.joblib (or a folder of one)
  champion    /opt/ml/processing/champion    the same, optional: absent means a first version
  output      /opt/ml/processing/evaluation  evaluation.json + evaluation.md

Both models are scored with the holdout metrics training reports, overall and on every
value of the slices the contender's spec names (e.g. per country, per device). The gate
(functions/retrain/gate.py) decides from evaluation.json; people read evaluation.md.

    python -m model_artifacts.evaluate --holdout holdout.csv --contender v2/ --champion v1/ --out eval/
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if not __package__:
    _repo = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(_repo), str(_repo / "functions")]

from inferline.spec import ModelSpec  # noqa: E402
from model_artifacts.bundle import BUNDLE_FILE, ModelBundle  # noqa: E402
from model_artifacts.metrics import LOWER_IS_BETTER, holdout_metrics  # noqa: E402
from model_artifacts.train import load_training_data, target_values  # noqa: E402

log = logging.getLogger("inferline.evaluate")

EVALUATION_JSON = "evaluation.json"
EVALUATION_MD = "evaluation.md"
PROCESSING = Path("/opt/ml/processing")


class EvaluationError(ValueError):
    pass


def evaluate(holdout: pd.DataFrame, contender: ModelBundle, champion: ModelBundle | None) -> dict[str, Any]:
    """The evaluation report: both models' metrics on `holdout`, overall and per slice."""
    spec = contender.spec
    y = target_values(spec, holdout)
    report: dict[str, Any] = {
        "model": spec.name,
        "metric": spec.evaluation.metric,
        "higher_is_better": spec.evaluation.metric not in LOWER_IS_BETTER,
        "promotion_margin": spec.evaluation.promotion_margin,
        "slice_tolerance": spec.evaluation.slice_tolerance,
        "slices": list(spec.evaluation.slices),
        "min_slice_rows": spec.evaluation.min_slice_rows,
        "holdout_rows": len(holdout),
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "contender": _score(spec, contender, holdout, y),
        "champion": _score(spec, champion, holdout, y) if champion else None,
    }
    return report


def _score(spec: ModelSpec, bundle: ModelBundle, holdout: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
    records = holdout[bundle.spec.model_inputs].to_dict("records")
    proba = bundle.predict_proba(records)
    overall, _ = holdout_metrics(bundle.spec, bundle.classes, y, proba)
    slices: dict[str, dict[str, dict[str, float | None]]] = {}
    for column in spec.evaluation.slices:
        slices[column] = {}
        values = holdout[column].astype(str).to_numpy()
        for value in sorted(set(values)):
            rows = values == value
            slices[column][value] = {
                "rows": int(rows.sum()),
                spec.evaluation.metric: _slice_metric(spec, bundle, y[rows], proba[rows]),
            }
    return {"version": bundle.version, "overall": overall, "slices": slices, "trained": bundle.info}


def _slice_metric(spec: ModelSpec, bundle: ModelBundle, y: np.ndarray, proba: np.ndarray) -> float | None:
    """The main metric on one slice, or None where it is not judged: too few rows, one class."""
    if len(y) < spec.evaluation.min_slice_rows or len(set(y.tolist())) < 2:
        return None
    metrics, _ = holdout_metrics(bundle.spec, bundle.classes, y, proba)
    return metrics[bundle.spec.evaluation.metric]


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable summary: the two models side by side."""
    metric = report["metric"]
    contender, champion = report["contender"], report["champion"]
    lines = [
        f"# Evaluation: {report['model']} version {contender['version']}"
        + (f" vs champion version {champion['version']}" if champion else " (no champion)"),
        "",
        f"Holdout: {report['holdout_rows']:,} rows (the newest labeled production data). "
        f"Main metric: **{metric}** ({'higher' if report['higher_is_better'] else 'lower'} is better); "
        f"promotion margin {report['promotion_margin']}, slice tolerance {report['slice_tolerance']}.",
        "",
        "| metric | contender | champion | change |",
        "|---|---|---|---|",
    ]
    for name, value in contender["overall"].items():
        old = champion["overall"].get(name) if champion else None
        lines.append(f"| {name} | {_fmt(value)} | {_fmt(old)} | {_delta(value, old)} |")
    for column in report["slices"]:
        lines += ["", f"## {metric} by {column}", "", "| value | rows | contender | champion | change |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for value, cell in contender["slices"].get(column, {}).items():
            old = (champion["slices"].get(column, {}).get(value) or {}).get(metric) if champion else None
            new = cell[metric]
            lines.append(f"| {value} | {cell['rows']:,} | {_fmt(new)} | {_fmt(old)} | {_delta(new, old)} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _delta(new: float | None, old: float | None) -> str:
    return "-" if new is None or old is None else f"{new - old:+.4f}"


# -- inputs ----------------------------------------------------------------------------------


def load_bundle(path: Path | str) -> ModelBundle:
    """A model from model.joblib, a model.tar.gz (as training jobs write it), or a folder
    holding either."""
    path = Path(path)
    if path.is_dir():
        joblib_file = path / BUNDLE_FILE
        archives = sorted(path.glob("*.tar.gz"))
        if joblib_file.is_file():
            return ModelBundle.load(joblib_file)
        if not archives:
            raise EvaluationError(f"no {BUNDLE_FILE} or model.tar.gz in {path}")
        path = archives[0]
    if not path.is_file():
        raise EvaluationError(f"model not found: {path}")
    if path.name.endswith(".tar.gz"):
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(path) as tar:
            member = next((m for m in tar.getmembers() if Path(m.name).name == BUNDLE_FILE), None)
            if member is None:
                raise EvaluationError(f"{path} holds no {BUNDLE_FILE}")
            tar.extract(member, tmp, filter="data")
            return ModelBundle.load(Path(tmp) / member.name)
    return ModelBundle.load(path)


def write_report(report: dict[str, Any], out_dir: Path | str) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / EVALUATION_JSON, out / EVALUATION_MD
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a contender and the champion on one holdout.")
    parser.add_argument("--holdout", default=str(PROCESSING / "holdout"))
    parser.add_argument("--contender", default=str(PROCESSING / "contender"))
    parser.add_argument("--champion", default=str(PROCESSING / "champion"))
    parser.add_argument("--out", default=str(PROCESSING / "evaluation"))
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        contender = load_bundle(args.contender)
        champion_path = Path(args.champion)
        has_champion = champion_path.is_file() or (champion_path.is_dir() and any(champion_path.iterdir()))
        champion = load_bundle(champion_path) if has_champion else None
        holdout = load_training_data(args.holdout)
        report = evaluate(holdout, contender, champion)
    except (EvaluationError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    json_path, _ = write_report(report, args.out)
    metric = report["metric"]
    log.info(
        "%s: contender %s %.4f, champion %s -> %s",
        metric,
        report["contender"]["version"],
        report["contender"]["overall"][metric],
        _fmt(report["champion"]["overall"][metric]) if champion else "none",
        json_path,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
