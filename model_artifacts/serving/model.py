"""The loaded model as the server uses it: its input schema, its backend, and the reply body.

The backend is ONNX Runtime when the bundle holds a compiled model that passed its check at
training (model_artifacts.compiled), scikit-learn otherwise; /ping and every reply name it.

`bundle.predict_proba(records)` builds its frame with `to_frame` (pandas `from_records`, then
casts), which costs more than the model itself for one row. The server already holds checked
columns, so it builds the same frame straight from them: float64 arrays for numbers, object
arrays for the rest. Loading checks once that the two frames, and so the predictions, agree.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from model_artifacts import compiled
from model_artifacts.bundle import ModelBundle, to_frame
from model_artifacts.serving.payload import BOOL, NUMBER, InputSchema, Rows


class ServedModel:
    def __init__(self, bundle: ModelBundle, max_instances: int, threads: int = 1):
        self.bundle = bundle
        self.backend = compiled.served_backend(bundle)
        self.fallback_reason = (bundle.info.get("compiled") or {}).get("reason")
        onnx = self.backend == compiled.ONNX_RUNTIME
        self._session = compiled.session(bundle.onnx, threads) if onnx else None
        self.spec = bundle.spec
        self.schema = InputSchema(bundle.spec, max_instances)
        self.classes = bundle.classes
        self.binary = bundle.spec.task == "binary"
        head = {"model": self.spec.name, "model_version": bundle.version, "classes": self.classes}
        # Every reply starts the same; only the scores are encoded per request.
        self._reply_head = json.dumps(head, separators=(",", ":"))[:-1].encode() + b',"scores":'

    def frame(self, rows: Rows) -> pd.DataFrame:
        """The frame `to_frame` builds for the same values: same columns, order and dtypes."""
        index = pd.RangeIndex(rows.count)
        data: dict[str, Any] = {}
        for name in self.schema.names:
            column = rows.columns[name]
            if column.dtype == object:
                # An explicit object Series: from a bare array pandas 3 would infer its "str"
                # dtype, and to_frame casts categorical columns back to object.
                column = pd.Series(column, index=index, dtype=object, copy=False)
            data[name] = column
        return pd.DataFrame(data, index=index, copy=False)

    def predict_proba(self, rows: Rows) -> np.ndarray:
        if self._session is not None:
            proba = self._session.run(["probabilities"], compiled.feeds(self.bundle, rows.columns))[0]
        else:
            proba = self.bundle.pipeline.predict_proba(self.frame(rows))
        if proba.shape != (rows.count, len(self.classes)):
            raise RuntimeError(
                f"the model returned probabilities of shape {proba.shape} for {rows.count} rows "
                f"and {len(self.classes)} classes"
            )
        return proba

    def reply(self, proba: np.ndarray) -> bytes:
        """The JSON reply: binary models score the positive (last) class, multiclass all."""
        scores = proba[:, -1].tolist() if self.binary else proba.tolist()
        return self._reply_head + json.dumps(scores, separators=(",", ":")).encode() + b"}"

    def check(self) -> None:
        """Warm the model up on one made-up row, and make sure the fast frame gives the same
        frame and probabilities as `bundle.predict_proba` does; raise if it does not."""
        record: dict[str, Any] = {}
        for name, kind in self.schema.kinds.items():
            if kind == NUMBER:
                record[name] = 0.0
            elif kind == BOOL:
                record[name] = False
            else:
                field = self.spec.request.fields.get(name)
                record[name] = str(field.allowed[0]) if field and field.allowed else "unknown"
        rows = self.schema.from_json(json.dumps({"instances": [record]}).encode())
        pd.testing.assert_frame_equal(self.frame(rows), to_frame(self.spec, [record]))
        expected = self.bundle.predict_proba([record])
        if self._session is not None:
            got = self.predict_proba(rows)
            tolerance = self.spec.training.onnx_tolerance
            if not np.allclose(got, expected, rtol=0, atol=tolerance):  # serve what scores right
                self._session, self.backend = None, compiled.SCIKIT_LEARN
                off = float(np.abs(got - expected).max())
                self.fallback_reason = f"the ONNX model scored the check row {off:.3g} off"
        np.testing.assert_allclose(self.predict_proba(rows), expected, rtol=0, atol=1e-9)
