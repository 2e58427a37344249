"""Monitoring on one machine: the monitoring workflow's states (inferline.workflow), in order,
with the same functions, against the embedded AWS and the local endpoints; and what AWS does
around them, the same way:

  metrics        the Publish step's EMF lines (Powertools) go to $INFERLINE_HOME/logs/metrics.log,
                 where CloudWatch would ingest them
  alarms         the same table and thresholds (inferline.monitoring), with CloudWatch's state
                 rule: each run's result carries every alarm's state and whether it fired
  notification   a fired alarm writes $INFERLINE_HOME/outbox/alarm-<model>-<run>.txt, as the
                 alarm topic would email it, linking the report
  retraining     a fired drift or quality alarm starts the retraining workflow through the same
                 cool-down claim as the on_alarm Lambda (monitor.steps.start_retraining)
  the report     copied to $INFERLINE_HOME/monitoring/<model>/<run_id>/report.html
  the schedule   `inferline up` runs every model's monitoring on cdk.json's monitorSchedule
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferline.monitoring import METRICS_SERVICE, MONITOR_SCHEDULES
from inferline.resources import bucket_name
from inferline.spec import load_spec
from inferline.workflow import MONITOR_JOB, MONITOR_PREPARE, MONITOR_PUBLISH, MONITOR_RESULT_PATHS
from local_runtime.config import LocalConfig, stack_settings
from monitor import steps

log = logging.getLogger("inferline.monitor")


@dataclass
class LocalMonitoringRun:
    state: dict[str, Any]  # the workflow's state, as Step Functions would hold it
    result: dict[str, Any]  # result.json
    steps: list[str]
    report: Path
    notification: Path | None = None
    retraining: dict[str, Any] | None = None  # start_retraining's outcome
    retrain_run: Any = None  # the local retraining run it started (local_runtime.retrain.RunResult)
    fired: list[str] = field(default_factory=list)


def local_services(config: LocalConfig) -> steps.Services:
    from local_runtime.sagemaker_local import LocalSageMaker
    from local_runtime.up import local_client

    return steps.Services(
        s3=local_client(config, "s3"),
        sagemaker=LocalSageMaker(local_client(config, "sagemaker"), config.serving_url()),
        load_spec=load_spec,
        data_bucket=bucket_name(config.prefix, "data"),
        prefix=config.prefix,
    )


def run_monitoring(
    config: LocalConfig,
    model: str,
    since: str | None = None,
    until: str | None = None,
    trigger: str = "manual",
    retrain: bool = True,
    on_step: Callable[[str], None] | None = None,
    svc: steps.Services | None = None,
) -> LocalMonitoringRun:
    """One monitoring run of `model`; a fired drift or quality alarm starts retraining (run
    here, to the end) unless `retrain` is False."""
    from model_artifacts.monitoring.__main__ import run as run_job

    svc = svc or local_services(config)
    state: dict[str, Any] = {"model": model, "since": since, "until": until, "trigger": trigger}
    visited: list[str] = []

    def visit(name: str) -> None:
        visited.append(name)
        (on_step or (lambda _: None))(name)

    visit(MONITOR_PREPARE)
    state[_key(MONITOR_PREPARE)] = steps.prepare(state, svc)
    visit(MONITOR_JOB)
    # The processing job's entry point with the arguments Prepare gave it, in this process.
    done = run_job(state["run"]["arguments"], s3=svc.s3)
    state[_key(MONITOR_JOB)] = {"job_name": state["run"]["job_name"], "status": "Completed"}
    visit(MONITOR_PUBLISH)
    state[_key(MONITOR_PUBLISH)] = steps.publish(state, svc, local_emitter(config))

    result = done.result
    folder = config.path("monitoring", model, result["run_id"])
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "report.html"
    report.write_text(done.html, encoding="utf-8")
    (folder / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    outcome = LocalMonitoringRun(state=state, result=result, steps=visited, report=report)
    outcome.fired = [k for k, a in result["alarms"].items() if a.get("fired")]
    if outcome.fired:
        outcome.notification = write_alarm_notification(config, result, report)
    reasons = steps.retrain_reasons(result)
    if retrain and reasons:
        outcome.retraining, outcome.retrain_run = start_local_retraining(config, svc, model, reasons, report)
    return outcome


def start_local_retraining(
    config: LocalConfig, svc: steps.Services, model: str, reasons: list[str], report: Path
) -> tuple[dict[str, Any], Any]:
    """The on_alarm rule: the cool-down claim, then the retraining workflow, run here."""
    from local_runtime.retrain import LocalRetraining, write_outbox
    from local_runtime.retrain import local_services as retrain_services

    ran: dict[str, Any] = {}

    def start(run_input: dict[str, Any]) -> str:
        runner = LocalRetraining(retrain_services(config))
        result = runner.run(
            model, trigger=run_input["trigger"], reason=run_input["reason"],
            monitoring_report=run_input["monitoring_report"],
        )  # fmt: skip
        write_outbox(config, result)
        ran["run"] = result
        return (result.state.get("dataset") or {}).get("run_id") or "local"

    outcome = steps.start_retraining(
        svc.s3, svc.data_bucket, svc.load_spec(model), "; ".join(reasons), svc.now(), start, str(report)
    )
    return outcome, ran.get("run")


def local_emitter(config: LocalConfig) -> Callable[[str, str, dict[str, float]], None]:
    """Publish's emit: Powertools builds the EMF documents, appended to logs/metrics.log."""
    from aws_lambda_powertools.metrics import EphemeralMetrics

    metrics = EphemeralMetrics(namespace=config.prefix, service=METRICS_SERVICE)
    path = config.path("logs", "metrics.log")
    path.parent.mkdir(parents=True, exist_ok=True)

    def flush() -> None:
        document = metrics.serialize_metric_set()
        metrics.clear_metrics()
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(document, separators=(",", ":")) + "\n")

    def emit(model: str, version: str, figures: dict[str, float]) -> None:
        steps.add_figures(metrics, model, version, figures, flush)

    return emit


def write_alarm_notification(config: LocalConfig, result: dict[str, Any], report: Path) -> Path:
    """What the alarm topic would send: each alarm that fired, with its figure and the report."""
    model, run_id = result["model"], result["run_id"]
    fired = {k: a for k, a in result["alarms"].items() if a.get("fired")}
    lines = [
        f"{len(fired)} monitoring alarm(s) of {model} went into ALARM (run {run_id}, version "
        f"{result['champion']['version']}, window {result['window']['since']} .. "
        f"{result['window']['until']}).",
        "",
    ]
    for key, alarm in fired.items():
        lines.append(
            f"- {config.prefix}-monitor-{model}-{key.replace('_', '-')}: {alarm['metric']} = "
            f"{alarm['value']:.4g} (threshold {alarm['threshold']:.4g}). {alarm['description']}"
            + (" Starts retraining." if alarm.get("retrains") else "")
        )
    lines += ["", result["summary"]["headline"], *result["summary"]["findings"], "", f"Report: {report}"]
    path = config.path("outbox", f"alarm-{model}-{run_id}.txt")
    path.parent.mkdir(parents=True, exist_ok=True)
    subject = f"[inferline] ALARM: {model} monitoring ({', '.join(fired)})"
    path.write_text(f"Subject: {subject}\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- the schedule -----------------------------------------------------------------------------


def schedule_seconds(config: LocalConfig) -> int | None:
    """How often `up` monitors each model: cdk.json's monitorSchedule (hourly, daily, or empty
    for never), overridden by INFERLINE_MONITOR_SCHEDULE (also a number of seconds)."""
    value = os.environ.get("INFERLINE_MONITOR_SCHEDULE")
    if value is None:
        value = stack_settings().monitor_schedule or ""
    value = value.strip().lower()
    if value in ("", "off", "none"):
        return None
    if value.isdigit():
        return max(1, int(value))
    if value not in MONITOR_SCHEDULES:
        choices = ", ".join(MONITOR_SCHEDULES)
        raise ValueError(f"monitorSchedule must be one of {choices} or empty, got {value!r}")
    return MONITOR_SCHEDULES[value]


def start_schedule(config: LocalConfig, models: list[str]) -> threading.Event | None:
    """Run every model's monitoring every schedule_seconds, in a thread; the Event stops it."""
    every = schedule_seconds(config)
    if every is None:
        return None
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            for model in models:
                try:
                    run = run_monitoring(config, model, trigger="schedule")
                    log.info("monitored %s: %s (%s)", model, run.result["summary"]["status"], run.report)
                except Exception:  # a failed run is logged; the next one runs on time
                    log.exception("monitoring %s failed", model)

    threading.Thread(target=loop, name="monitor-schedule", daemon=True).start()
    return stop


def _key(step: str) -> str:
    return MONITOR_RESULT_PATHS[step].removeprefix("$.")
