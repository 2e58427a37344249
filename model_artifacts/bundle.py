"""The trained model as one file, `model.joblib`: the fitted Pipeline plus what it was built from.

Training writes it; the serving container, evaluation and drift checks read it. It holds the
spec the model was trained against (so a served model never depends on the spec in the
repo changing under it), the version, holdout metrics and per-feature baseline statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from inferline.spec import ModelSpec

BUNDLE_FILE = "model.joblib"
ONNX_FILE = "model.onnx"  # the pipeline compiled to ONNX, beside it when it passed its check
FORMAT = 1


@dataclass
class ModelBundle:
    spec: ModelSpec
    version: str
    pipeline: Pipeline
    metrics: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # trained_at, rows, seed, versions, compiled
    onnx: bytes | None = None  # model_artifacts.compiled: the ONNX model that scores as the pipeline does

    @property
    def classes(self) -> list:
        return [c.item() if hasattr(c, "item") else c for c in self.pipeline.classes_]

    def frame(self, records: list[dict[str, Any]]) -> pd.DataFrame:
        return to_frame(self.spec, records)

    def predict_proba(self, records: list[dict[str, Any]]) -> np.ndarray:
        """Class probabilities, one row per record, columns in `classes` order."""
        return self.pipeline.predict_proba(self.frame(records))

    def save(self, model_dir: Path | str) -> Path:
        path = Path(model_dir) / BUNDLE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "onnx"}
        payload |= {"spec": self.spec.model_dump(mode="json"), "format": FORMAT}
        joblib.dump(payload, path)
        compiled = path.parent / ONNX_FILE
        if self.onnx is not None:
            compiled.write_bytes(self.onnx)
        elif compiled.exists():
            compiled.unlink()
        return path

    @classmethod
    def load(cls, model_dir: Path | str) -> ModelBundle:
        path = Path(model_dir)
        if path.is_dir():
            path = path / BUNDLE_FILE
        payload = joblib.load(path)
        if payload.get("format") != FORMAT:
            raise ValueError(f"{path}: unsupported model bundle format {payload.get('format')!r}")
        payload.pop("format")
        payload["spec"] = ModelSpec.model_validate(payload["spec"])
        compiled = path.parent / ONNX_FILE
        payload["onnx"] = compiled.read_bytes() if compiled.is_file() else None
        return cls(**payload)


def to_frame(spec: ModelSpec, records: list[dict[str, Any]]) -> pd.DataFrame:
    """The model's input frame: spec.model_inputs columns, numbers as float, the rest as str.

    Training and serving both build their frames here, so they cannot disagree on column
    order or dtypes.
    """
    frame = pd.DataFrame.from_records(records, columns=spec.model_inputs)
    for name in spec.numeric_inputs:
        frame[name] = frame[name].astype("float64")
    for name in spec.categorical_inputs:
        frame[name] = frame[name].astype(object)
    return frame
