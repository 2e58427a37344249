"""The `inferline` command: run the platform locally and talk to it.

  inferline up [--detach]            start everything on 127.0.0.1 (foreground by default)
  inferline down                     stop a detached platform
  inferline demo                     start it if needed and walk through the online loop
  inferline demo-retrain             start it if needed and walk through a retraining cycle
  inferline predict MODEL --instance JSON | --file FILE.jsonl
  inferline feedback PREDICTION_ID ACTUAL | --file FILE.csv (prediction_id,actual)
  inferline features load MODEL FILE.csv
  inferline batch MODEL FILE.csv --email ADDRESS   submit, upload and follow a batch job
  inferline train MODEL [--data FILE.csv | --rows N --drift D] [--version V] [--current]
  inferline retrain MODEL [--param KEY=VALUE]      run the retraining workflow locally
  inferline models MODEL [--aws]                   registered versions, and which one serves
  inferline rollback MODEL [--to VERSION] [--aws]  serve a previous approved version again
  inferline monitor MODEL [--since T] [--until T] [--json] [--aws]   one monitoring run
  inferline demo-monitor                          drift, the alarm, early retraining, healthy again
The API URL and key come from INFERLINE_API_URL / INFERLINE_API_KEY, else the local runtime.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from local_runtime.api_client import api_client
from local_runtime.config import LocalConfig

console = Console()
err = Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = LocalConfig()
    try:
        return args.run(args, config) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a CLI reports, it does not dump a traceback on the user
        if os.environ.get("INFERLINE_DEBUG"):
            raise
        err.print("[bold red]error:[/]", escape(describe(exc)))
        return 1


def describe(exc: Exception) -> str:
    """An error in words a user can act on."""
    import httpx

    if isinstance(exc, httpx.TransportError):
        where = exc.request.url if hasattr(exc, "_request") and exc._request is not None else "the API"
        return f"could not reach {where}: {exc or type(exc).__name__}"
    if isinstance(exc, KeyError):  # never expected: the API answered something the CLI cannot read
        return f"the API's answer lacked {exc} (set INFERLINE_DEBUG=1 for the traceback)"
    return str(exc) or type(exc).__name__


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="inferline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    s = sub.add_parser("up", help="start the platform on 127.0.0.1")
    s.add_argument("--detach", action="store_true", help="run in the background")
    s.set_defaults(run=cmd_up)

    sub.add_parser("down", help="stop a detached platform").set_defaults(run=cmd_down)

    s = sub.add_parser("demo", help="walk through predictions, a bad request and feedback")
    s.set_defaults(run=cmd_demo)

    s = sub.add_parser("demo-retrain", help="walk through a retraining cycle (promote, reject, rollback)")
    s.set_defaults(run=cmd_demo_retrain)

    s = sub.add_parser("predict", help="send a predict request")
    s.add_argument("model")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--instance", help="one instance as a JSON object")
    g.add_argument("--file", type=Path, help="JSON Lines file, one instance per line")
    s.set_defaults(run=cmd_predict)

    s = sub.add_parser("feedback", help="send ground truth for predictions")
    s.add_argument("prediction_id", nargs="?")
    s.add_argument("actual", nargs="?")
    s.add_argument("--file", type=Path, help="CSV with columns prediction_id,actual")
    s.set_defaults(run=cmd_feedback)

    s = sub.add_parser("features", help="feature store commands")
    fsub = s.add_subparsers(required=True, metavar="ACTION")
    f = fsub.add_parser("load", help="load a CSV of stored features into the feature table")
    f.add_argument("model")
    f.add_argument("file", type=Path)
    f.add_argument("--table", help="table name (default: the local runtime's features table)")
    f.set_defaults(run=cmd_features_load)

    s = sub.add_parser("batch", help="submit a CSV for batch predictions and follow the job")
    s.add_argument("model")
    s.add_argument("file", type=Path)
    s.add_argument("--email", required=True, help="where the results link is sent")
    s.add_argument("--timeout", type=float, default=3600, help="seconds to follow the job")
    s.set_defaults(run=cmd_batch)

    s = sub.add_parser("train", help="train a model version from a CSV (or demo data)")
    s.add_argument("model")
    s.add_argument("--data", type=Path, help="training CSV (default: generated demo data)")
    s.add_argument("--rows", type=int, default=20000, help="demo rows to generate")
    s.add_argument("--drift", type=float, default=0.0, help="demo data drift, 0..1")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--version", help="version label (default: derived from data and spec)")
    s.add_argument("--current", action="store_true", help="make it the version `up` serves")
    s.set_defaults(run=cmd_train)

    s = sub.add_parser("retrain", help="run the retraining workflow on the local platform")
    s.add_argument("model")
    s.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="estimator hyperparameter override for this run; repeatable",
    )  # fmt: skip
    s.set_defaults(run=cmd_retrain)

    s = sub.add_parser("models", help="list a model's registered versions")
    s.add_argument("model")
    s.add_argument(
        "--aws", action="store_true", help="the deployed stack (your AWS credentials), not the local one"
    )
    s.set_defaults(run=cmd_models)

    s = sub.add_parser("rollback", help="serve a previous approved version of a model again")
    s.add_argument("model")
    s.add_argument("--to", dest="to_version", help="the version (default: the newest older approved one)")
    s.add_argument(
        "--aws", action="store_true", help="the deployed stack (your AWS credentials), not the local one"
    )
    s.add_argument(
        "--timeout", type=float, help="seconds to wait for the endpoint (default 180 locally, 3600 on AWS)"
    )
    s.set_defaults(run=cmd_rollback)

    s = sub.add_parser("monitor", help="monitor a model: drift, data and live quality, a report")
    s.add_argument("model")
    s.add_argument("--since", help="window start, ISO 8601 (default: the spec's window before --until)")
    s.add_argument("--until", help="window end, ISO 8601 (default: now)")
    s.add_argument("--json", action="store_true", help="print the run's JSON result on stdout")
    s.add_argument(
        "--no-retrain", action="store_true", help="locally: do not start retraining when an alarm fires"
    )
    s.add_argument(
        "--aws", action="store_true", help="run the deployed stack's monitoring workflow (AWS credentials)"
    )
    s.add_argument("--timeout", type=float, default=3600, help="--aws: seconds to wait for the run")
    s.set_defaults(run=cmd_monitor)

    s = sub.add_parser("demo-monitor", help="walk through monitoring: drift, alarm, early retraining")
    s.set_defaults(run=cmd_demo_monitor)

    s = sub.add_parser("api-docs", help="write docs/openapi.json and docs/api.md from the API contract")
    s.add_argument("--check", action="store_true", help="only say whether they are up to date (1 if not)")
    s.set_defaults(run=cmd_api_docs)
    return p


def cmd_up(args, config: LocalConfig) -> int:
    from local_runtime import up

    if args.detach:
        up.start_detached(config)
    else:
        up.up(config)
    return 0


def cmd_down(args, config: LocalConfig) -> int:
    from local_runtime import up

    console.print("inferline stopped" if up.down(config) else "inferline was not running (detached)")
    return 0


def cmd_demo(args, config: LocalConfig) -> int:
    from local_runtime import up
    from local_runtime.demo import run_demo

    up.start_detached(config)
    run_demo(config)
    return 0


def cmd_demo_retrain(args, config: LocalConfig) -> int:
    from local_runtime import up
    from local_runtime.demo_retrain import run_retrain_demo

    up.start_detached(config)
    run_retrain_demo(config)
    return 0


def _api(config: LocalConfig):

    url = os.environ.get("INFERLINE_API_URL") or config.api_url
    return api_client(url, config.api_key)


def _show(reply) -> int:
    console.print(f"HTTP {reply.status_code}", style="green" if reply.is_success else "red")
    try:
        console.print_json(reply.text)
    except ValueError:
        console.print(reply.text)
    return 0 if reply.is_success else 1


def cmd_predict(args, config: LocalConfig) -> int:
    if args.instance:
        instances = [json.loads(args.instance)]
    else:
        instances = [json.loads(line) for line in args.file.read_text().splitlines() if line.strip()]
    with _api(config) as api:
        return _show(api.post(f"/v1/models/{args.model}/predict", json={"instances": instances}))


def cmd_feedback(args, config: LocalConfig) -> int:
    if args.file:
        with args.file.open(newline="") as f:
            items = [
                {"prediction_id": r["prediction_id"], "actual": _actual(r["actual"])}
                for r in csv.DictReader(f)
            ]
    elif args.prediction_id and args.actual is not None:
        items = [{"prediction_id": args.prediction_id, "actual": _actual(args.actual)}]
    else:
        raise ValueError("give PREDICTION_ID ACTUAL, or --file FILE.csv")
    with _api(config) as api:
        return _show(api.post("/v1/feedback", json={"feedback": items}))


def _actual(text: str):
    """A command-line actual: a number when it looks like one, else the label as given."""
    return int(text) if text.lstrip("-").isdigit() else text


def cmd_features_load(args, config: LocalConfig) -> int:
    import boto3

    from inferline.features import load_features_csv
    from inferline.resources import table_name
    from inferline.spec import load_spec

    spec = load_spec(args.model)
    if args.table:
        table = boto3.resource("dynamodb").Table(args.table)  # the caller's AWS settings
    else:
        from local_runtime.up import local_resource

        table = local_resource(config, "dynamodb").Table(table_name(config.prefix, "features"))
    with console.status(f"Loading {args.file} into {table.name}..."):
        with args.file.open(newline="", encoding="utf-8") as f:
            report = load_features_csv(table, spec, f)
    console.print(f"loaded {report.loaded} row(s), rejected {len(report.rejected)}")
    for bad in report.rejected[:50]:
        console.print(f"  row {bad['row']}: {'; '.join(bad['problems'])}", style="yellow")
    if len(report.rejected) > 50:
        console.print(f"  ... and {len(report.rejected) - 50} more")
    return 0 if report.ok else 2


def cmd_batch(args, config: LocalConfig) -> int:
    from local_runtime.batch_client import follow_job, submit_file

    with _api(config) as api:
        job = submit_file(api, args.model, args.file, args.email, console)
        final = follow_job(api, job["job_id"], args.timeout, console)
    if final["status"] != "succeeded":
        console.print(f"[red]job {final['job_id']} {final['status']}:[/] {final.get('failure_reason')}")
        return 1
    console.print(
        f"job {final['job_id']}: {final['rows_ok']} row(s) predicted, {final['rows_failed']} failed"
    )
    console.print(f"results: {final['results_url']}\nerrors:  {final['errors_url']}")
    return 0


def cmd_train(args, config: LocalConfig) -> int:
    import pandas as pd

    from inferline.spec import load_spec
    from local_runtime.up import model_dir
    from model_artifacts.train import train

    spec = load_spec(args.model)
    if args.data:
        frame = pd.read_csv(args.data)
    elif args.model == "purchase-propensity":
        from model_artifacts.demo_data import generate_training_frame

        with console.status(f"Generating {args.rows:,} demo rows (drift {args.drift})..."):
            frame = generate_training_frame(args.rows, args.seed, args.drift)
    else:
        raise ValueError(f"{args.model} has no demo data: give --data FILE.csv")
    with console.status(f"Training {args.model} on {len(frame):,} rows..."):
        bundle = train(spec, frame, version=args.version)
    out = config.path("models", args.model, bundle.version)
    bundle.save(out)
    if args.current:
        bundle.save(model_dir(config, args.model))
    console.print(
        f"{args.model} version {bundle.version} saved to {out}"
        f"{' and made current (restart `inferline up` to serve it)' if args.current else ''}"
    )
    console.print_json(json.dumps(bundle.metrics))
    return 0


def _require_up(config: LocalConfig) -> None:
    from local_runtime import up

    if not up.is_up(config):
        raise RuntimeError("inferline is not running: start it with `inferline up --detach` (or `make up`)")


def cmd_retrain(args, config: LocalConfig) -> int:
    from local_runtime.retrain import LocalRetraining, local_services, write_outbox
    from model_artifacts.train import parse_hyperparameter

    _require_up(config)
    params = {}
    for pair in args.param:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--param {pair!r} is not KEY=VALUE")
        params[key.strip()] = parse_hyperparameter(value)
    with console.status("[bold]Retraining...") as status:
        runner = LocalRetraining(
            local_services(config), on_step=lambda name: status.update(f"[bold]Retraining: {name}...")
        )
        result = runner.run(args.model, params)
    console.print(f"steps: {' > '.join(result.path)}")
    console.print(result.notification.get("message", ""))
    note = write_outbox(config, result)
    if note:
        console.print(f"notification: {note}")
    return 1 if result.outcome == "failed" else 0


def _services(config: LocalConfig, on_aws: bool):
    from local_runtime.retrain import aws_services, local_services

    if on_aws:
        return aws_services(config.prefix)
    _require_up(config)
    return local_services(config)


def cmd_models(args, config: LocalConfig) -> int:
    print_models(config, args.model, _services(config, args.aws))
    return 0


def print_models(config: LocalConfig, model: str, svc=None) -> None:
    from rich.table import Table

    from inferline import endpoints
    from inferline.resources import endpoint_name, model_package_group
    from local_runtime.retrain import local_services
    from retrain import registry

    svc = svc or local_services(config)
    serving = endpoints.champion(svc.sagemaker, endpoint_name(svc.prefix, model), svc.s3)
    metric = svc.load_spec(model).evaluation.metric
    table = Table(title=f"{model}: registered versions")
    for column in ("version", "status", metric, "vs champion", "backend", "registered", "why"):
        table.add_column(column, overflow="fold")
    for v in registry.versions(svc.sagemaker, model_package_group(svc.prefix, model)):
        meta = v["metadata"]
        status = v["approval"] + (" (serving)" if v["version"] == serving["version"] else "")
        versus = (
            f"v{meta['champion_version']}: {meta.get(f'champion_{metric}', '-')[:6]}"
            if meta.get("champion_version")
            else "-"
        )
        table.add_row(
            v["version"], status, meta.get(f"contender_{metric}", "-")[:6], versus, meta.get("backend", "-"),
            v["created_at"][:16], v["description"].split(";")[0][:60],
        )  # fmt: skip
    console.print(table)
    console.print(f"serving: version {serving['version']} (endpoint config {serving['endpoint_config']})")


def cmd_rollback(args, config: LocalConfig) -> int:
    timeout = args.timeout or (3600 if args.aws else 180)  # AWS: blue/green with its bake time
    rollback(config, args.model, args.to_version, timeout, _services(config, args.aws))
    return 0


def rollback(
    config: LocalConfig, model: str, to_version: str | None = None, timeout: float = 180, svc=None
) -> None:
    """Roll back, wait for the endpoint to settle, check it serves the version asked for, and
    record the rollback in the registry."""
    import time

    from local_runtime.retrain import local_services
    from retrain import deploy, steps

    svc = svc or local_services(config)
    deployment = steps.rollback(model, svc, to_version)
    with console.status(f"Rolling {model} back to version {deployment['version']}..."):
        deadline = time.monotonic() + timeout
        while deploy.status(svc.sagemaker, deployment["endpoint"])["status"] in ("Updating", "Creating"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the endpoint was still updating after {timeout:.0f} s")
            time.sleep(0.5)
        deploy.verify(svc.sagemaker, deployment)
        steps.record_rollback(svc, deployment)
    console.print(
        f"{model}: version {deployment['version']} serves again "
        f"(was {deployment['rolled_back_from']}); the registry records the rollback"
    )



def cmd_monitor(args, config: LocalConfig) -> int:
    if args.aws:
        from local_runtime.monitor_aws import run_on_aws

        result, report = run_on_aws(config.prefix, args.model, args.since, args.until, args.timeout, err)
    else:
        from local_runtime.monitor import run_monitoring

        _require_up(config)
        with err.status("[bold]Monitoring...") as status:
            run = run_monitoring(
                config, args.model, args.since, args.until, trigger="cli", retrain=not args.no_retrain,
                on_step=lambda name: status.update(f"[bold]Monitoring: {name}..."),
            )  # fmt: skip
        result, report = run.result, str(run.report)
        if run.notification:
            err.print(f"alarm notification: {run.notification}")
        if run.retraining:
            show_retraining(run.retraining, run.retrain_run)
    if args.json:
        print(json.dumps(result))
    else:
        show_monitoring(result)
    err.print(f"report: {report}", soft_wrap=True, highlight=False)
    return 0


def show_monitoring(result: dict) -> None:
    """The run's summary, its alarms and where the report is, for a person at a terminal."""
    from rich.table import Table

    summary = result["summary"]
    style = {"healthy": "green", "alarm": "red"}.get(summary["status"], "yellow")
    err.print(f"[bold {style}]{summary['status'].upper()}[/] {summary['headline']}")
    for line in summary["findings"]:
        err.print(f"  - {line}")
    for line in summary["actions"]:
        err.print(f"  [bold]>[/] {line}")
    table = Table(title="alarms")
    for column in ("alarm", "state", "value", "threshold"):
        table.add_column(column)
    for key, alarm in result["alarms"].items():
        value = "-" if alarm["value"] is None else f"{alarm['value']:.4g}"
        state = alarm["state"] + (" (fired)" if alarm.get("fired") else "")
        color = "red" if alarm["state"] == "ALARM" else "green" if alarm["state"] == "OK" else "dim"
        table.add_row(key, f"[{color}]{state}[/]", value, f"{alarm['threshold']:.4g}")
    err.print(table)


def show_retraining(outcome: dict, run) -> None:
    if outcome["action"] == "started":
        err.print(f"[bold]retraining started by the alarm:[/] {outcome['reason']}")
        if run is not None:
            err.print(f"retraining: {run.outcome} ({' > '.join(run.path)})")
            err.print(run.notification.get("message", "").rstrip())
    else:
        err.print(f"retraining not started: the last one ({outcome['last']['started_at']}) is within the "
                  f"cool-down, until {outcome['until']}")  # fmt: skip


def cmd_demo_monitor(args, config: LocalConfig) -> int:
    from local_runtime import up
    from local_runtime.demo_monitor import run_monitor_demo

    up.start_detached(config)
    run_monitor_demo(config)
    return 0


def cmd_api_docs(args, config: LocalConfig) -> int:
    from local_runtime import api_docs

    stale = api_docs.write(check=args.check)
    for path in stale:
        print(f"{path.relative_to(api_docs.REPO_ROOT)}: {'out of date' if args.check else 'written'}")
    if not stale:
        print("docs/openapi.json and docs/api.md match the API contract")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
