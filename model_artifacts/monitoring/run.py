"""One monitoring run: a model's window of production data against its serving version's
baseline, written as result.json (docs/monitoring.md has its schema), summary.json (the
compact line history reads) and a self-contained report.html.

The same function runs in the SageMaker processing job (model_artifacts.monitoring's entry
point, with boto3's S3) and on one machine (against the embedded AWS).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from inferline.monitoring import RESULT_FORMAT, new_run_id
from inferline.resources import (
    monitoring_latest_prefix,
    monitoring_run_prefix,
)
from inferline.spec import ModelSpec, load_spec
from model_artifacts.monitoring import report
from model_artifacts.monitoring.drift import drift_section
from model_artifacts.monitoring.history import SUMMARY_FILE, alarm_states, read_history, summary_line
from model_artifacts.monitoring.logs import read_refusals, read_window
from model_artifacts.monitoring.quality import data_quality, live_quality
from model_artifacts.monitoring.service import service_section
from model_artifacts.monitoring.summary import summarize, why_not_judged
from model_artifacts.monitoring.version import load_bundle, resolve_baseline

RESULT_FILE, REPORT_FILE = "result.json", "report.html"


@dataclass
class MonitoringRun:
    result: dict[str, Any]
    html: str
    uris: dict[str, str]  # result, summary, report -> s3:// URI (empty when not written)


def default_window(spec: ModelSpec, now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(hours=spec.monitoring.window_hours), now


def monitor(
    s3,
    *,
    model: str,
    data_bucket: str,
    champion: dict[str, Any],
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    trigger: str = "cli",
    spec: ModelSpec | None = None,
    write: bool = True,
) -> MonitoringRun:
    """Monitor `model` over [since, until) (default: the spec's window ending now) against the
    version `champion` names ({"version", "model_data_url", "serving_since"?})."""
    now = now or datetime.now(UTC)
    spec = spec or load_spec(model)
    default_since, default_until = default_window(spec, now)
    since, until = since or default_since, until or min(now, default_until)
    if since >= until:
        raise ValueError(
            f"the window is empty: since {since.isoformat()} is not before until {until.isoformat()}"
        )
    run_id = run_id or new_run_id(now)

    bundle = load_bundle(s3, champion["model_data_url"])
    version = str(champion.get("version") or bundle.version)
    baseline, baseline_info = resolve_baseline(s3, data_bucket, spec, bundle, version)
    window = read_window(s3, data_bucket, spec, since, until, now)
    refusals = read_refusals(s3, data_bucket, spec, since, until)
    mask = window.mask(version)
    n = int(mask.sum())
    enough = n >= spec.monitoring.min_rows
    judged = enough and baseline is not None

    drift = (
        drift_section(
            spec, baseline, window.numeric, window.categorical, window.score, window.label, mask, judged
        )
        if baseline is not None and n
        else None
    )
    quality = data_quality(spec, baseline, window, mask, refusals, judged=enough)
    live = live_quality(spec, baseline, window, mask, judged_rows=judged)
    champion_info = {
        "version": version,
        "model_data_url": champion.get("model_data_url"),
        "trained_at": bundle.info.get("trained_at"),
        "serving_since": champion.get("serving_since"),
    }
    service = service_section(window, mask, refusals, champion_info, now)
    figures: dict[str, float | None] = {}
    for section in (drift, quality, live, service):
        figures |= (section or {}).get("figures", {})

    history = read_history(s3, data_bucket, model, now)
    alarms = alarm_states(spec, figures, history)
    result: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "run_id": run_id,
        "model": model,
        "created_at": now.isoformat(timespec="seconds"),
        "trigger": trigger,
        "window": {
            "since": since.isoformat(timespec="seconds"),
            "until": until.isoformat(timespec="seconds"),
            "hours": round((until - since).total_seconds() / 3600, 2),
        },
        "champion": service["champion"] | {"model_data_url": champion.get("model_data_url")},
        "baseline": baseline_info,
        "thresholds": {
            "min_rows": spec.monitoring.min_rows,
            "min_labeled_rows": spec.monitoring.min_labeled_rows,
            "drift_p_value": spec.monitoring.drift_p_value,
            "drift_min_psi": spec.monitoring.drift_min_psi,
            "alarms": spec.monitoring.alarms.model_dump(),
            "retrain_on_alarm": spec.monitoring.retrain_on_alarm,
            "retrain_cooldown_hours": spec.monitoring.retrain_cooldown_hours,
        },
        "judged": {
            "drift": bool(judged),
            "rows": n,
            "reason": why_not_judged(spec, baseline_info) if not judged else None,
        },
        "drift": drift,
        "data_quality": quality,
        "quality": live,
        "service": service,
        "figures": figures,
        "alarms": alarms,
        "ground_truth": {"lines": window.ground_truth_lines, "unmatched": window.ground_truth_unmatched},
    }
    result = finite(result)
    result["summary"] = summarize(spec, result)
    result["history"] = [*history, summary_line(result)]
    uris: dict[str, str] = {}
    prefix = monitoring_run_prefix(model, run_id)
    result["report"] = f"s3://{data_bucket}/{prefix}{REPORT_FILE}"
    html = report.render(result)
    if write:
        uris = write_run(s3, data_bucket, model, prefix, result, html)
    return MonitoringRun(result=result, html=html, uris=uris)


def write_run(s3, bucket: str, model: str, prefix: str, result: dict, html: str) -> dict[str, str]:
    """result.json, summary.json and report.html under the run's prefix, and the result and
    report again under latest/ (what alarms link to)."""
    body = json.dumps(result, indent=1, default=_jsonable).encode()
    summary = json.dumps(result["history"][-1], default=_jsonable).encode()
    page = html.encode()
    objects = {
        prefix + RESULT_FILE: (body, "application/json"),
        prefix + SUMMARY_FILE: (summary, "application/json"),
        prefix + REPORT_FILE: (page, "text/html; charset=utf-8"),
        monitoring_latest_prefix(model) + RESULT_FILE: (body, "application/json"),
        monitoring_latest_prefix(model) + REPORT_FILE: (page, "text/html; charset=utf-8"),
    }
    for key, (data, content_type) in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    return {name: f"s3://{bucket}/{prefix}{name}" for name in (RESULT_FILE, SUMMARY_FILE, REPORT_FILE)}


def finite(value: Any) -> Any:
    """The result as plain JSON: numpy scalars as Python numbers, NaN and infinities as null
    (JSON has neither, and a browser's JSON.parse refuses them)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
