"""The model server's settings: SageMaker's environment variables, inferline's limits, CLI overrides.

Read once at start-up; a bad value stops the server with a message naming the variable,
not a traceback on the first request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# SageMaker's hosting contract: the model is unpacked into /opt/ml/model and the container
# answers on port 8080 (SAGEMAKER_BIND_TO_PORT when SageMaker picks another one).
DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_PORT = 8080
# SageMaker's own InvokeEndpoint payload limit is 6 MB.
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024

# Setting name -> environment variable. The SM_/SAGEMAKER_ names are SageMaker's.
ENV_VARS = {
    "model_dir": "SM_MODEL_DIR",
    "host": "INFERLINE_SERVING_HOST",
    "port": "SAGEMAKER_BIND_TO_PORT",
    "workers": "SAGEMAKER_MODEL_SERVER_WORKERS",
    "max_instances": "INFERLINE_SERVING_MAX_INSTANCES",
    "max_body_bytes": "INFERLINE_SERVING_MAX_BODY_BYTES",
    "max_batch_rows": "INFERLINE_SERVING_MAX_BATCH_ROWS",
    "model_threads": "INFERLINE_SERVING_MODEL_THREADS",
}


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the environment variable."""


class ServingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    # Loopback unless told otherwise: the container image sets 0.0.0.0.
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    # One worker process per vCPU unless told otherwise, as SageMaker's own serving toolkits do.
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    # Per request: more instances, or a larger body, is a 413.
    max_instances: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1)
    # Micro-batching: the most rows one predict_proba call gathers from queued requests.
    # A single request larger than this is still scored whole, in a batch of its own.
    max_batch_rows: int = Field(default=1024, ge=1)
    # Threads scikit-learn's OpenMP and BLAS code may use per worker process. One: the batches
    # are small enough that a second thread costs more than it saves (bench/RESULTS.md), and
    # a worker per core scales without the workers' thread pools fighting over the cores.
    model_threads: int = Field(default=1, ge=1, le=256)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ServingSettings:
        """Settings from the environment, then `overrides` (CLI flags; None means not given)."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {
            name: environ[var] for name, var in ENV_VARS.items() if environ.get(var, "") != ""
        }
        values |= {name: value for name, value in overrides.items() if value is not None}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                name = str(err["loc"][0]) if err["loc"] else "?"
                source = "--" + name.replace("_", "-")
                if name not in overrides or overrides[name] is None:
                    source = ENV_VARS.get(name, name)
                problems.append(f"{source}={err.get('input')!r}: {err['msg']}")
            raise SettingsError("invalid serving settings: " + "; ".join(problems)) from None

    def export(self, environ: MutableMapping[str, str]) -> None:
        """Write these settings to `environ`, where uvicorn's worker processes read them back."""
        for name, var in ENV_VARS.items():
            environ[var] = str(getattr(self, name))
