"""`python -m model_artifacts.serving`: run the model server (the container's `serve`).

    python -m model_artifacts.serving --model-dir DIR --host 127.0.0.1 --port 8080 --workers 1

Flags override the environment (SM_MODEL_DIR, SAGEMAKER_BIND_TO_PORT,
SAGEMAKER_MODEL_SERVER_WORKERS, INFERLINE_SERVING_*); see settings.py.
"""

from __future__ import annotations

import argparse
import os
import sys

from model_artifacts.serving.processes import serve, serve_workers
from model_artifacts.serving.settings import ServingSettings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_artifacts.serving",
        description="Serve one inferline model bundle on SageMaker's container contract "
        "(GET /ping, POST /invocations).",
    )
    parser.add_argument("--model-dir", help="folder holding model.joblib (SM_MODEL_DIR)")
    parser.add_argument("--host", help="address to bind (INFERLINE_SERVING_HOST; 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (SAGEMAKER_BIND_TO_PORT; 8080)")
    parser.add_argument("--workers", type=int, help="processes (SAGEMAKER_MODEL_SERVER_WORKERS; 1 per vCPU)")
    parser.add_argument("--max-instances", type=int, help="instances per request (10000)")
    parser.add_argument("--max-body-bytes", type=int, help="request body bytes (6 MiB)")
    parser.add_argument("--max-batch-rows", type=int, help="rows per micro-batch (1024)")
    parser.add_argument("--model-threads", type=int, help="OpenMP/BLAS threads per worker (1)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    try:
        settings = ServingSettings.from_env(
            model_dir=args.model_dir,
            host=args.host,
            port=args.port,
            workers=args.workers,
            max_instances=args.max_instances,
            max_body_bytes=args.max_body_bytes,
            max_batch_rows=args.max_batch_rows,
            model_threads=args.model_threads,
        )
    except SettingsError as exc:
        parser.error(str(exc))
    # Worker processes build their app from the environment: hand them these settings.
    settings.export(os.environ)

    if settings.workers == 1:
        serve(settings, args.access_log)
    else:
        serve_workers(settings, args.access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
