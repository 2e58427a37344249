"""The monitoring workflow's Lambda-backed steps (Prepare, Publish; inferline.workflow) and the
retraining a monitoring alarm starts, each a plain function of its input and a Services.

handlers.py runs them in Lambda; local_runtime/monitor.py runs them on one machine against
the embedded AWS and the local endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from inferline import endpoints
from inferline.monitoring import ALARMS_BY_KEY, metric_unit, new_run_id, parse_alarm_name
from inferline.objects import get_if_exists
from inferline.resources import (
    endpoint_name,
    monitoring_latest_prefix,
    monitoring_run_prefix,
    retrain_trigger_key,
    split_s3_uri,
)
from inferline.spec import ModelSpec, load_spec

STARTED, COOLING_DOWN, IGNORED = "started", "cooling_down", "ignored"


class MonitoringInputError(ValueError):
    """A monitoring run asked for something that cannot be: the message says what."""


@dataclass
class Services:
    s3: Any
    sagemaker: Any
    load_spec: Callable[[str], ModelSpec]
    data_bucket: str
    prefix: str
    models: list[str] = field(default_factory=list)
    stepfunctions: Any = None
    retrain_state_machine_arn: str | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @classmethod
    def from_settings(cls, settings, client: Callable[[str], Any]) -> Services:
        return cls(
            s3=client("s3"),
            sagemaker=client("sagemaker"),
            stepfunctions=client("stepfunctions"),
            load_spec=load_spec,
            data_bucket=settings.data_bucket,
            prefix=settings.resource_prefix,
            models=list(settings.models),
            retrain_state_machine_arn=settings.retrain_state_machine_arn,
        )


# -- Prepare ------------------------------------------------------------------------------------


def prepare(state: dict[str, Any], svc: Services) -> dict[str, Any]:
    """The run: its id, window, the version serving now, and the monitoring job's arguments."""
    model = state["model"]
    spec = svc.load_spec(model)
    now = svc.now()
    until = parse_time(state.get("until"), "until") or now
    since = parse_time(state.get("since"), "since") or until - timedelta(hours=spec.monitoring.window_hours)
    if until > now:
        until = now
    if since >= until:
        raise MonitoringInputError(
            f"the window is empty: since {since.isoformat()} is not before until {until.isoformat()}"
        )
    endpoint = endpoint_name(svc.prefix, model)
    champion = endpoints.champion(svc.sagemaker, endpoint, svc.s3)
    serving_since = svc.sagemaker.describe_endpoint(EndpointName=endpoint).get("LastModifiedTime")
    if isinstance(serving_since, datetime):
        serving_since = serving_since.isoformat(timespec="seconds")
    run_id = new_run_id(now)
    trigger = str(state.get("trigger") or "manual")
    arguments = [
        "--model", model, "--since", since.isoformat(), "--until", until.isoformat(),
        "--run-id", run_id, "--data-bucket", svc.data_bucket, "--trigger", trigger,
        "--champion-version", str(champion["version"]), "--model-data-url", champion["model_data_url"],
    ]  # fmt: skip
    if serving_since:
        arguments += ["--serving-since", str(serving_since)]
    run_uri = f"s3://{svc.data_bucket}/{monitoring_run_prefix(model, run_id)}"
    return {
        "run_id": run_id,
        "model": model,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "trigger": trigger,
        "champion": {
            "version": champion["version"],
            "model_data_url": champion["model_data_url"],
            "serving_since": serving_since,
        },
        "job_name": endpoints.resource_name(svc.prefix, model, "monitor", run_id),
        "arguments": arguments,
        "result_uri": run_uri + "result.json",
        "report_uri": run_uri + "report.html",
        "latest_report_uri": f"s3://{svc.data_bucket}/{monitoring_latest_prefix(model)}report.html",
    }


def parse_time(value: Any, name: str) -> datetime | None:
    """An ISO 8601 time from the run's input (UTC when it names no zone)."""
    if value in (None, ""):
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MonitoringInputError(f"{name} must be an ISO 8601 time such as 2026-12-01T00:00:00Z, "
                                   f"got {value!r}") from None  # fmt: skip
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# -- Publish ------------------------------------------------------------------------------------


def publish(state: dict[str, Any], svc: Services, emit: Callable[[str, str, dict[str, float]], None]) -> dict:
    """Read the run's result and hand its figures to `emit(model, version, figures)` (EMF through
    Powertools Metrics in Lambda); figures the run could not judge are left out, so the alarms
    keep their state."""
    result = json.loads(read(svc.s3, state["run"]["result_uri"]))
    figures = {k: float(v) for k, v in result["figures"].items() if v is not None}
    emit(result["model"], str(result["champion"]["version"]), figures)
    summary = result["summary"]
    return {
        "status": summary["status"],
        "headline": summary["headline"],
        "in_alarm": summary["in_alarm"],
        "report_uri": state["run"]["report_uri"],
        "figures": figures,
    }


def add_figures(
    metrics, model: str, version: str, figures: dict[str, float], flush: Callable[[], None]
) -> None:
    """The figures on a Powertools Metrics object, twice: by model (what the alarms watch) and by
    model and version (to compare versions); `flush` publishes each set."""
    from aws_lambda_powertools.metrics import MetricUnit

    from inferline.monitoring import MODEL_DIMENSION, VERSION_DIMENSION

    for dimensions in ({MODEL_DIMENSION: model}, {MODEL_DIMENSION: model, VERSION_DIMENSION: version}):
        for name, value in dimensions.items():
            metrics.add_dimension(name=name, value=value)
        for name, value in figures.items():
            metrics.add_metric(name=name, unit=MetricUnit(metric_unit(name)), value=value)
        flush()


# -- a monitoring alarm starts retraining ------------------------------------------------------------


def on_alarm(event: dict[str, Any], svc: Services) -> dict[str, Any]:
    """A CloudWatch alarm changed state (an EventBridge event): a monitoring alarm of a served
    model that retrains, now in ALARM, starts the retraining workflow, once per cool-down."""
    detail = event.get("detail") or {}
    name = str(detail.get("alarmName", ""))
    state = (detail.get("state") or {}).get("value")
    parsed = parse_alarm_name(svc.prefix, name, svc.models)
    if parsed is None:
        return {"action": IGNORED, "reason": f"{name!r} is not a monitoring alarm of this stack"}
    model, alarm = parsed
    if state != "ALARM":
        return {"action": IGNORED, "reason": f"{name} is {state}, not ALARM"}
    spec = svc.load_spec(model)
    if not (alarm.retrains and spec.monitoring.retrain_on_alarm):
        return {"action": IGNORED, "reason": f"{name} does not start retraining"}
    why = (detail.get("state") or {}).get("reason") or alarm.description
    reason = f"{alarm.kind.replace('_', ' ')} alarm {name}: {why}"
    report = f"s3://{svc.data_bucket}/{monitoring_latest_prefix(model)}report.html"

    def start(run_input: dict[str, Any]) -> str:
        execution = svc.stepfunctions.start_execution(
            stateMachineArn=svc.retrain_state_machine_arn, input=json.dumps(run_input)
        )
        return execution["executionArn"]

    return start_retraining(svc.s3, svc.data_bucket, spec, reason, svc.now(), start, report)


def start_retraining(
    s3,
    bucket: str,
    spec: ModelSpec,
    reason: str,
    now: datetime,
    start: Callable[[dict[str, Any]], str],
    report_uri: str | None = None,
) -> dict[str, Any]:
    """Start retraining unless another alarm did within the spec's cool-down: the claim is a
    conditional write, so two alarms at once start one run. The run's input says why."""
    claimed, record = claim_cooldown(s3, bucket, spec, now, reason)
    if not claimed:
        return {
            "action": COOLING_DOWN,
            "reason": reason,
            "last": record,
            "until": record and record.get("cooldown_until"),
        }
    run_input = {
        "model": spec.name,
        "trigger": "monitoring",
        "reason": reason,
        "monitoring_report": report_uri,
    }
    execution = start(run_input)
    return {"action": STARTED, "reason": reason, "execution": execution, "claim": record}


def claim_cooldown(s3, bucket: str, spec: ModelSpec, now: datetime, reason: str) -> tuple[bool, dict | None]:
    """(True, the new claim) when no retraining was started within the cool-down and this call
    wrote the claim first; else (False, the claim in force)."""
    key = retrain_trigger_key(spec.name)
    current = get_if_exists(s3, bucket, key)
    last, etag = (json.loads(current["Body"].read()), current["ETag"]) if current else (None, None)
    if last and now < datetime.fromisoformat(last["cooldown_until"]):
        return False, last
    hours = spec.monitoring.retrain_cooldown_hours
    record = {
        "model": spec.name,
        "started_at": now.isoformat(timespec="seconds"),
        "cooldown_until": (now + timedelta(hours=hours)).isoformat(timespec="seconds"),
        "reason": reason,
    }
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode(),
                      ContentType="application/json", **condition)  # fmt: skip
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise
        winner = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        return False, winner
    return True, record


def retrain_reasons(result: dict[str, Any]) -> list[str]:
    """The fired alarms of a run that start retraining, in words (the local runtime's rule)."""
    out = []
    for key, state in result["alarms"].items():
        if state.get("fired") and state.get("retrains"):
            alarm = ALARMS_BY_KEY[key]
            out.append(f"{alarm.kind.replace('_', ' ')} alarm {key}: {alarm.metric} = {state['value']:.4g} "
                       f"(threshold {state['threshold']:.4g})")  # fmt: skip
    return out


def read(s3, uri: str) -> bytes:
    bucket, key = split_s3_uri(uri)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
