"""Save the benchmark's pipeline as an MLflow model. Runs in bench/.venv-mlflow, not the project venv.

    bench/.venv-mlflow/bin/python bench/mlflow_model.py PIPELINE.joblib EXAMPLE.json OUT_DIR

EXAMPLE.json: {"columns", "numeric", "categorical", "records"}: the model inputs
and a few records; the frame is built the way model_artifacts.bundle.to_frame builds it, so
MLflow's signature holds the dtypes the pipeline was trained on. The pyfunc answers
predict_proba, the same probabilities the inferline server returns.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import joblib
import mlflow.sklearn
import pandas as pd
import skops.io
from mlflow.models import infer_signature


def main(pipeline_path: str, example_path: str, out_dir: str) -> None:
    pipeline = joblib.load(pipeline_path)
    example = json.loads(Path(example_path).read_text())
    columns = example["columns"]
    frame = pd.DataFrame.from_records(example["records"], columns=columns)
    for name in example["numeric"]:
        frame[name] = frame[name].astype("float64")
    for name in example["categorical"]:
        frame[name] = frame[name].astype(object)
    signature = infer_signature(frame, pipeline.predict_proba(frame))
    # MLflow saves with skops, which refuses types it cannot vouch for (the gradient boosting
    # tree predictor): this pipeline was trained moments ago by the benchmark itself.
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    mlflow.sklearn.save_model(
        pipeline,
        out_dir,
        signature=signature,
        input_example=frame.head(2),
        pyfunc_predict_fn="predict_proba",
        skops_trusted_types=trusted,
    )
    print(f"saved MLflow model to {out_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
