"""`inferline up`: the whole platform on 127.0.0.1, started and stopped as one.

In order: the embedded AWS (moto server), the tables and buckets the CDK stack defines,
the demo model (trained on first run) with its stored features seeded, one model server
per model, then the local API Gateway in the foreground. Ctrl-C (or `inferline down`)
stops all of it. Logs go to $INFERLINE_HOME/logs/, process ids to $INFERLINE_HOME/run/.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import boto3
import httpx
from rich.console import Console

from inferline.resources import bucket_name, table_name
from inferline.spec import available_models, load_spec
from local_runtime.bootstrap import bootstrap, bootstrap_batch
from local_runtime.config import HOST, REGION, LocalConfig

console = Console(stderr=True)
DEMO_MODEL = "purchase-propensity"
DEMO_SEED = 7


class StartupError(RuntimeError):
    pass


# -- helpers --------------------------------------------------------------------------


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) != 0


def wait_for(url: str, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StartupError(f"{what} exited with code {proc.returncode}; see its log")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise StartupError(f"{what or url} did not become ready in {timeout:.0f} s")


def start_process(
    config: LocalConfig, name: str, args: list[str], env: dict | None = None
) -> subprocess.Popen:
    log = config.path("logs", f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ | (env or {}),
        cwd=Path(__file__).resolve().parents[1],
    )
    config.path("run", f"{name}.pid").write_text(str(proc.pid))
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def local_client(config: LocalConfig, service: str):
    return boto3.client(service, **_local_session(config))


def local_resource(config: LocalConfig, service: str):
    return boto3.resource(service, **_local_session(config))


def _local_session(config: LocalConfig) -> dict:
    return dict(
        endpoint_url=config.aws_url,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


# -- the demo model and its data ---------------------------------------------------------


def model_dir(config: LocalConfig, model: str) -> Path:
    return config.path("models", model, "current")


def ensure_demo_model(config: LocalConfig) -> Path:
    """Train the demo model from generated data, once; later runs reuse it."""
    target = model_dir(config, DEMO_MODEL)
    if (target / "model.joblib").is_file():
        return target
    import pandas as pd

    from model_artifacts.demo_data import write_demo_files
    from model_artifacts.train import train

    with console.status(f"[bold]Generating {config.demo_rows:,} rows of demo data..."):
        files = write_demo_files(config.path("demo-data"), rows=config.demo_rows, seed=DEMO_SEED)
    with console.status(f"[bold]Training {DEMO_MODEL} (first run only)..."):
        bundle = train(load_spec(DEMO_MODEL), pd.read_csv(files["train"]), version="1")
        bundle.save(target)
    metrics = ", ".join(f"{k}={v:.3f}" for k, v in bundle.metrics.items() if isinstance(v, float))
    console.print(f"  trained {DEMO_MODEL} version {bundle.version}: {metrics}")
    return target


def seed_features(config: LocalConfig) -> int:
    """Load the demo users' stored features through the bulk loader."""
    from inferline.features import load_features_csv

    users_csv = config.path("demo-data", "users.csv")
    if not users_csv.is_file():
        from model_artifacts.demo_data import write_demo_files

        write_demo_files(config.path("demo-data"), rows=config.demo_rows, seed=DEMO_SEED)
    table = local_resource(config, "dynamodb").Table(table_name(config.prefix, "features"))
    report = load_features_csv(table, load_spec(DEMO_MODEL), users_csv.read_text())
    return report.loaded


# -- up / down -----------------------------------------------------------------------------


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def served_models(config: LocalConfig) -> list[str]:
    """Every model with a spec and a trained bundle; the demo model is trained if missing."""
    models = []
    for name in available_models():
        if name == DEMO_MODEL:
            ensure_demo_model(config)
        if (model_dir(config, name) / "model.joblib").is_file():
            models.append(name)
        else:
            console.print(
                f"[yellow]  {name}: no trained model in {model_dir(config, name)}; "
                f"train it with `inferline train {name} --data FILE.csv` (not served)"
            )
    return models


def up(config: LocalConfig) -> None:
    """Run the platform in the foreground until interrupted."""
    for d in ("logs", "run", "outbox", "models"):
        config.path(d).mkdir(parents=True, exist_ok=True)
    models = served_models(config)
    busy = [p for p in [config.aws_port, config.api_port, config.serving_port] if not port_free(p)]
    if busy:
        raise StartupError(
            f"ports already in use on {HOST}: {busy} (is inferline already up? "
            "`inferline down`, or set INFERLINE_*_PORT)"
        )
    signal.signal(signal.SIGTERM, _interrupt)  # `inferline down` stops children too
    with ExitStack() as stack:
        aws_args = ["-m", "local_runtime.aws_server", "-H", HOST, "-p", str(config.aws_port)]
        aws = start_process(config, "aws", aws_args)
        stack.callback(stop_process, aws)
        with console.status("[bold]Starting the embedded AWS (moto)..."):
            wait_for(f"{config.aws_url}/moto-api/", 30, aws, "moto server")
            created = bootstrap(config.prefix, local_client(config, "dynamodb"), local_client(config, "s3"))
            loaded = seed_features(config)
            queues = bootstrap_batch(
                config.prefix,
                local_client(config, "sqs"),
                local_client(config, "s3"),
                local_client(config, "ses"),
                config.email_sender,
            )
        console.print(
            f"  embedded AWS at {config.aws_url}: tables "
            f"{[table_name(config.prefix, t) for t in ('features', 'predictions')]}, buckets "
            f"{[bucket_name(config.prefix, b) for b in ('data', 'artifacts')]}"
            f"{' (created)' if created['tables'] else ''}; {loaded} users' features loaded"
        )

        endpoints = start_endpoints(config, models, stack)
        router_url = config.serving_url()
        serving_urls = {model: router_url for model in models}

        import uvicorn

        from local_runtime.gateway import create_app

        # The batch workers reach the models the way the chunk Lambda does: sagemaker-runtime,
        # here pointed at the local endpoints' front door.
        os.environ.update(
            {
                "CHUNKS_QUEUE_URL": queues["batch-chunks"]["url"],
                "UPLOADS_QUEUE_URL": queues["batch-uploads"]["url"],
                "EMAIL_SENDER": config.email_sender,
                "OUTBOX_DIR": str(config.path("outbox")),
            }
            | {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": router_url}
        )
        app = create_app(config, serving_urls)
        stop_workers = start_batch_workers(config, queues)
        stack.callback(stop_workers.set)
        from local_runtime.monitor import start_schedule

        monitoring = start_schedule(config, models)  # cdk.json's monitorSchedule, as the Scheduler runs it
        if monitoring is not None:
            stack.callback(monitoring.set)
        for index in range(config.batch_workers):  # more chunk workers, as Lambda scales out
            worker = start_process(config, f"batch-worker-{index}", ["-m", "local_runtime.batch_worker"])
            stack.callback(stop_process, worker)
        config.path("run", "endpoints.json").write_text(
            json.dumps(
                {
                    "api": config.api_url,
                    "aws": config.aws_url,
                    "sagemaker": router_url,
                    "serving": serving_urls,
                }
            )
        )
        console.print(
            f"[bold green]inferline is up:[/] API at {config.api_url} "
            f"(x-api-key: {config.api_key}); Ctrl-C to stop"
        )
        del endpoints  # held by the router's thread until shutdown
        uvicorn.run(app, host=HOST, port=config.api_port, log_level="warning")


def start_endpoints(config: LocalConfig, models: list[str], stack: ExitStack):
    """One SageMaker endpoint per model, as the CDK stack leaves it (Model, EndpointConfig,
    the version Approved in its registry group), served by a local model server behind the
    endpoints' front door on the serving port."""
    import threading

    import uvicorn

    from inferline.resources import endpoint_name
    from local_runtime.bootstrap import bootstrap_model
    from local_runtime.sagemaker_local import LOCAL_IMAGE, LocalEndpoints, router_app
    from model_artifacts.bundle import ModelBundle

    sagemaker, s3 = local_client(config, "sagemaker"), local_client(config, "s3")
    endpoints = LocalEndpoints(config, sagemaker, s3)
    stack.callback(endpoints.stop_all)
    for model in models:
        with console.status(f"[bold]Starting the endpoint for {model}..."):
            bundle = ModelBundle.load(model_dir(config, model))
            base = config.path("demo-data", "train.csv") if model == DEMO_MODEL else None
            config_name = bootstrap_model(
                config.prefix, model, bundle.version, model_dir(config, model), LOCAL_IMAGE, sagemaker, s3,
                base.read_bytes() if base and base.is_file() else None,
            )  # fmt: skip
            endpoints.create(endpoint_name(config.prefix, model), model, config_name)
        console.print(f"  endpoint {endpoint_name(config.prefix, model)}: {model} version {bundle.version}")
    server = uvicorn.Server(
        uvicorn.Config(router_app(endpoints), host=HOST, port=config.serving_port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="sagemaker-endpoints", daemon=True)
    thread.start()
    stack.callback(setattr, server, "should_exit", True)
    wait_for(f"{config.serving_url()}/ping", 30, None, "local SageMaker endpoints")
    console.print(f"  SageMaker endpoints (runtime and control) at {config.serving_url()}")
    return endpoints


def start_batch_workers(config: LocalConfig, queues: dict[str, dict[str, str]]):
    """The batch Lambdas on their queues, as Lambda's event source mappings run them."""
    from batch import handlers
    from local_runtime.event_sources import SqsEventSource, start_event_sources

    sqs = local_client(config, "sqs")
    uploads, chunks = queues["batch-uploads"], queues["batch-chunks"]
    sources = [
        SqsEventSource(sqs, uploads["url"], uploads["arn"], handlers.split, "batch-split"),
        SqsEventSource(sqs, chunks["url"], chunks["arn"], handlers.chunk, "batch-chunk", batch_size=1),
        SqsEventSource(
            sqs, uploads["dlq_url"], uploads["dlq_arn"], handlers.dead_letter, "batch-dlq-uploads"
        ),
        SqsEventSource(sqs, chunks["dlq_url"], chunks["dlq_arn"], handlers.dead_letter, "batch-dlq-chunks"),
    ]
    stop, _ = start_event_sources(sources)
    return stop


def start_detached(config: LocalConfig, timeout: float = 300) -> None:
    """Start `inferline up` in the background and wait until its API answers."""
    if is_up(config):
        console.print(f"inferline is already up at {config.api_url}")
        return
    for d in ("logs", "run"):
        config.path(d).mkdir(parents=True, exist_ok=True)
    log = config.path("logs", "up.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_runtime.cli", "up"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    config.path("run", "up.pid").write_text(str(proc.pid))
    with console.status("[bold]Starting inferline (first run trains the demo model)..."):
        try:
            wait_for(f"{config.api_url}/_local/health", timeout, proc, "inferline up")
        except StartupError as exc:
            raise StartupError(
                f"{exc}\n--- {config.path('logs', 'up.log')} ---\n"
                f"{config.path('logs', 'up.log').read_text()[-3000:]}"
            ) from None
    console.print(f"[bold green]inferline is up[/] at {config.api_url} (logs in {config.path('logs')})")


def is_up(config: LocalConfig) -> bool:
    try:
        return httpx.get(f"{config.api_url}/_local/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def down(config: LocalConfig) -> bool:
    """Stop a detached `inferline up` and everything it started."""
    pid_file = config.path("run", "up.pid")
    if not pid_file.is_file():
        return False
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink()
        return False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True
