"""`inferline demo-monitor`: monitoring closes the loop, against the running platform.

A normal day's traffic and its ground truth, and a monitoring run that finds the serving
version healthy; then the world shifts (the demo generator's drift knob), and the next run's
report shows the drift, its alarm fires (a notification in the outbox) and starts retraining
early, which promotes a contender; a last run over the new champion's traffic finds it healthy.
Each run covers the traffic of its own step (--since), so earlier demos' traffic stays out.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from rich.console import Console

from inferline.resources import bucket_name, retrain_trigger_key
from local_runtime.api_client import api_client
from local_runtime.cli import print_models, show_monitoring, show_retraining
from local_runtime.config import LocalConfig
from local_runtime.demo_retrain import MODEL, send_traffic, shifted_traffic, step
from local_runtime.monitor import LocalMonitoringRun, local_services, run_monitoring

console = Console()
DRIFT = 1.0
NORMAL_ROWS, SHIFTED_ROWS, AFTER_ROWS = 1500, 3000, 1500
SEEDS = (4101, 4102, 4103)


def run_monitor_demo(config: LocalConfig) -> None:
    api = api_client(config.api_url, config.api_key)
    svc = local_services(config)

    step(1, "What serves now")
    print_models(config, MODEL)
    data = bucket_name(config.prefix, "data")
    if svc.s3.list_objects_v2(Bucket=data, Prefix=retrain_trigger_key(MODEL)).get("KeyCount"):
        # An earlier demo's alarm started retraining within the cool-down (72 h): this demo
        # starts the clock afresh so its alarm can retrain too. A real alarm would wait.
        svc.s3.delete_object(Bucket=data, Key=retrain_trigger_key(MODEL))
        console.print("[dim]demo: an earlier demo's retraining cool-down was cleared[/]")

    step(2, f"A normal day: {NORMAL_ROWS:,} requests like the training data, then their ground truth")
    since = traffic(api, NORMAL_ROWS, SEEDS[0], drift=0.0)
    show(run_monitoring(config, MODEL, since=since, trigger="demo"))

    step(3, f"The world shifts (drift {DRIFT}): {SHIFTED_ROWS:,} requests and their ground truth")
    since = traffic(api, SHIFTED_ROWS, SEEDS[1], drift=DRIFT)
    console.print("[dim]monitoring; a drift alarm retrains before it returns (a minute or so)...[/]")
    show(run_monitoring(config, MODEL, since=since, trigger="demo"))
    print_models(config, MODEL)

    step(4, f"The new champion: {AFTER_ROWS:,} more requests from the shifted world")
    since = traffic(api, AFTER_ROWS, SEEDS[2], drift=DRIFT)
    show(run_monitoring(config, MODEL, since=since, trigger="demo"))
    console.print(
        f"\n[bold green]Done.[/] Reports: {config.path('monitoring', MODEL)}; notifications (alarm and "
        f"retraining): {config.path('outbox')}; metrics as CloudWatch would get them: "
        f"{config.path('logs', 'metrics.log')}."
    )


def traffic(api: httpx.Client, rows: int, seed: int, drift: float) -> str:
    """Send the requests and their outcomes; returns when they started (the run's --since)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    requests, actuals = shifted_traffic(rows, seed=seed, drift=drift)
    with console.status(f"Sending {rows:,} predictions and their feedback..."):
        recorded = send_traffic(api, requests, actuals)
    console.print(f"{rows:,} predictions logged, {recorded:,} ground-truth records joined by prediction_id")
    return started


def show(run: LocalMonitoringRun) -> LocalMonitoringRun:
    console.print(f"[dim]steps: {' > '.join(run.steps)}[/]")
    show_monitoring(run.result)
    if run.notification:
        console.print(f"alarm notification: {run.notification}")
    if run.retraining:
        show_retraining(run.retraining, run.retrain_run)
    console.print(f"report: [link=file://{run.report}]{run.report}[/link]")
    return run
