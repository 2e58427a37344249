"""One monitoring run: a model's window of production data against its serving version's
baseline, written as result.json (docs/monitoring.md has its schema), summary.json (the
compact line history reads) and a self-contained report.html.

The same function runs in the SageMaker processing job (model_artifacts.monitoring's entry
point, with boto3's S3) and on one machine (against the embedded AWS).
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from inferline.monitoring import ALARMS_BY_KEY, RESULT_FORMAT, evaluate, new_run_id
from inferline.objects import get_if_exists
from inferline.resources import (
    base_training_key,
    monitoring_baseline_key,
    monitoring_latest_prefix,
    monitoring_run_prefix,
    monitoring_runs_prefix,
    retrain_run_prefix,
    retrain_version_claim_key,
    split_s3_uri,
)
from inferline.spec import ModelSpec, load_spec
from model_artifacts.bundle import BUNDLE_FILE, ModelBundle, to_frame
from model_artifacts.monitoring import report
from model_artifacts.monitoring.baseline import compute_baseline, is_current
from model_artifacts.monitoring.drift import drift_section
from model_artifacts.monitoring.logs import read_refusals, read_window
from model_artifacts.monitoring.quality import data_quality, live_quality
from model_artifacts.monitoring.service import service_section

log = logging.getLogger("inferline.monitor")

RESULT_FILE, SUMMARY_FILE, REPORT_FILE = "result.json", "summary.json", "report.html"
HISTORY_DAYS = 30
HISTORY_RUNS = 60


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
            "reason": _why_not_judged(spec, n, baseline_info) if not judged else None,
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


# -- the serving version and its baseline ---------------------------------------------------------


def load_bundle(s3, model_data_url: str) -> ModelBundle:
    """The version's model.joblib, from its model.tar.gz (or a model.joblib) in S3."""
    bucket, key = split_s3_uri(model_data_url)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tempfile.TemporaryDirectory(prefix="inferline-monitor-") as tmp:
        target = Path(tmp) / BUNDLE_FILE
        if key.endswith(".joblib"):
            target.write_bytes(body)
        else:
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
                member = next(m for m in tar.getmembers() if m.name.rsplit("/", 1)[-1] == BUNDLE_FILE)
                target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
        return ModelBundle.load(target)


def resolve_baseline(
    s3, bucket: str, spec: ModelSpec, bundle: ModelBundle, version: str
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The version's baseline and where it came from (status "version": its own; "kept": computed
    by an earlier run; "computed": computed now from its training data, found by the data hash
    the version recorded, and kept), or None with status "missing" and the reason."""

    def info(status: str, baseline: dict | None, message: str | None = None) -> dict[str, Any]:
        return {
            "status": status,
            "source": (baseline or {}).get("source"),
            "rows": (baseline or {}).get("rows"),
            "reference_rows": (baseline or {}).get("reference_rows"),
            "message": message,
        }

    if is_current(bundle.baseline):
        return bundle.baseline, info("version", bundle.baseline)
    key = monitoring_baseline_key(spec.name, version)
    found = get_if_exists(s3, bucket, key)
    kept = json.loads(found["Body"].read()) if found else None
    if is_current(kept):
        return kept, info("kept", kept)
    frame, where, why = find_training_data(s3, bucket, spec, bundle, version)
    if frame is None:
        return None, info("missing", None, why)
    baseline = baseline_from_training_data(spec, bundle, frame, where)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(baseline).encode(), ContentType="application/json")
    log.info("computed the baseline of %s version %s from %s", spec.name, version, where)
    return baseline, info("computed", baseline)


def find_training_data(
    s3, bucket: str, spec: ModelSpec, bundle: ModelBundle, version: str
) -> tuple[pd.DataFrame | None, str, str]:
    """The version's training data, proven by its sha256 (recorded at training): the train.csv
    of the retraining run that claimed the version, or the base training set."""
    from model_artifacts.train import frame_sha256

    expected = bundle.info.get("data_sha256")
    candidates = []
    found = get_if_exists(s3, bucket, retrain_version_claim_key(spec.name, version))
    try:
        run_id = json.loads(found["Body"].read())["run_id"] if found else None
    except (KeyError, ValueError):
        run_id = None
    if run_id:
        candidates.append(f"{retrain_run_prefix(spec.name, run_id)}train/train.csv")
    candidates.append(base_training_key(spec.name))
    for key in candidates:
        found = get_if_exists(s3, bucket, key)
        if found is None:
            continue
        frame = pd.read_csv(io.BytesIO(found["Body"].read()))
        if expected and frame_sha256(frame) == expected:
            return frame, f"s3://{bucket}/{key}", ""
    tried = ", ".join(f"s3://{bucket}/{k}" for k in candidates)
    why = (
        f"version {version} was trained before versions carried a monitoring baseline, and its "
        f"training data (sha256 {str(expected)[:12]}...) is not at {tried}: drift, the estimated "
        f"metric and the training ranges need a baseline. Retrain it (inferline retrain "
        f"{spec.name}): every new version carries its own."
    )
    return None, "", why


def baseline_from_training_data(
    spec: ModelSpec, bundle: ModelBundle, frame: pd.DataFrame, where: str
) -> dict:
    """The baseline training would have written: the same holdout split (same target and seed)."""
    from model_artifacts.train import holdout_split, target_values

    y = target_values(spec, frame)
    inputs = to_frame(spec, frame[spec.model_inputs].to_dict("records"))
    _, held_out = holdout_split(spec, y, int(bundle.info.get("seed", spec.training.seed)))
    return compute_baseline(
        spec, bundle.pipeline, inputs=inputs, reference=inputs.iloc[held_out].reset_index(drop=True),
        reference_y=y[held_out],
        source=f"computed when first monitored, from its training data ({where}, sha256 verified)",
    )  # fmt: skip


# -- alarms, history and the summary --------------------------------------------------------------


def alarm_states(spec: ModelSpec, figures: dict[str, float | None], history: list[dict]) -> dict[str, Any]:
    """Each alarm's state after this run, as CloudWatch keeps it: a figure the run could not
    judge leaves the previous state; `fired` marks a change into ALARM."""
    previous = (history[-1].get("alarm_states") or {}) if history else {}
    states = evaluate(spec, figures)
    for key, state in states.items():
        alarm = ALARMS_BY_KEY[key]
        before = previous.get(key, "INSUFFICIENT_DATA")
        if state["state"] == "INSUFFICIENT_DATA" and before != "INSUFFICIENT_DATA":
            state["state"] = before
            state["kept"] = True
        state |= {
            "previous": before,
            "fired": state["state"] == "ALARM" and before != "ALARM",
            "kind": alarm.kind,
            "metric": alarm.metric,
            "description": alarm.description,
            "retrains": alarm.retrains and spec.monitoring.retrain_on_alarm,
        }
    return states


def read_history(s3, bucket: str, model: str, now: datetime) -> list[dict[str, Any]]:
    """The summaries of the model's runs in the HISTORY_DAYS before `now` (at most HISTORY_RUNS;
    a run dated in the past does not see the runs after it)."""
    prefix = monitoring_runs_prefix(model)
    start = prefix + f"{now - timedelta(days=HISTORY_DAYS):%Y%m%dT%H%M%SZ}"
    end = prefix + new_run_id(now)  # run ids sort by time: this run's would sort here
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, StartAfter=start):
        keys += [
            o["Key"]
            for o in page.get("Contents", [])
            if o["Key"].endswith("/" + SUMMARY_FILE) and o["Key"] < end
        ]
    out = []
    for key in sorted(keys)[-HISTORY_RUNS:]:
        found = get_if_exists(s3, bucket, key)
        if found is None:
            continue
        try:
            out.append(json.loads(found["Body"].read()))
        except ValueError:  # a summary being rewritten: the next run reads it
            continue
    return out


def summary_line(result: dict[str, Any]) -> dict[str, Any]:
    """What history keeps of a run: enough for the report's trends."""
    drift = result.get("drift") or {}
    quality = result["quality"]
    return {
        "run_id": result["run_id"],
        "created_at": result["created_at"],
        "since": result["window"]["since"],
        "until": result["window"]["until"],
        "version": result["champion"]["version"],
        "rows": result["judged"]["rows"],
        "labeled": quality["labeled"],
        "status": result["summary"]["status"],
        "figures": result["figures"],
        "reference_metric": quality["reference"].get(quality["metric"]),
        "psi": {k: v["psi"] for k, v in (drift.get("features") or {}).items() if v},
        "alarm_states": {k: v["state"] for k, v in result["alarms"].items()},
    }


def summarize(spec: ModelSpec, result: dict[str, Any]) -> dict[str, Any]:
    """The report's first words: status, a headline, what changed, and what to do."""
    n = result["judged"]["rows"]
    version = result["champion"]["version"]
    quality, drift, dq = result["quality"], result.get("drift") or {}, result["data_quality"]
    metric = quality["metric"]
    findings: list[str] = []
    actions: list[str] = []
    in_alarm = [k for k, a in result["alarms"].items() if a["state"] == "ALARM"]
    if n == 0:
        status = "no_data"
        headline = (f"No predictions of version {version} between {result['window']['since']} and "
                    f"{result['window']['until']}: nothing to judge.")  # fmt: skip
        actions.append("Check that traffic reaches the endpoint, or look further back with --since.")
    elif not result["judged"]["drift"]:
        status = "insufficient"
        headline = f"{n:,} predictions of version {version}: {result['judged']['reason']}"
    else:
        status = "alarm" if in_alarm else "healthy"
        headline = ""
    for name in drift.get("drifted", []):
        findings.append(f"{name} drifted: {describe_shift(drift['features'][name])}.")
    for part in ("score", "predicted"):
        test = drift.get(part)
        if test and test.get("drifted"):
            what = "The score" if part == "score" else "The predicted label"
            findings.append(f"{what} drifted: {describe_shift(test)}.")
    live, estimated = quality.get("live"), quality.get("estimated") or {}
    ref = quality["reference"].get(metric)
    if live and live.get(metric) is not None:
        findings.append(
            f"{metric} on {quality['labeled']:,} predictions with ground truth: {live[metric]:.3f} "
            f"(reference {_num(ref)}; {_versus(quality['drop'])})."
        )
    elif n:
        findings.append(
            f"{quality['labeled']:,} of {n:,} predictions have ground truth so far "
            f"(the live metric needs {spec.monitoring.min_labeled_rows:,})."
        )
    if estimated.get("value") is not None:
        findings.append(
            f"Estimated {metric} from the scores alone (CBPE): {estimated['value']:.3f} "
            f"(reference {_num(ref)}; {_versus(estimated.get('drop'))})."
        )
    for key in in_alarm:
        alarm = result["alarms"][key]
        if alarm["kind"] == "data_quality" and alarm["value"] is not None:  # (not one kept from before)
            findings.append(f"Data quality: {alarm['metric']} is {_num(alarm['value'])} "
                            f"(threshold {_num(alarm['threshold'])}).")  # fmt: skip
    refused = dq["refusals"]
    if refused["online_requests"] or refused["batch_rows"]:
        top = refused["by_field"][0] if refused["by_field"] else None
        most = f"; most often {top['field'] or 'the request'}: {top['problem']}" if top else ""
        findings.append(f"Refused for invalid input: {refused['online_requests']:,} request(s) and "
                        f"{refused['batch_rows']:,} batch row(s){most}.")  # fmt: skip
    if status == "healthy":
        headline = (f"Version {version} looks healthy: no drift over {n:,} predictions"
                    + (f", {metric} {live[metric]:.3f}" if live and live.get(metric) is not None else "")
                    + ".")  # fmt: skip
    elif status == "alarm":
        kinds = sorted({result["alarms"][k]["kind"].replace("_", " ") for k in in_alarm})
        headline = (
            f"Version {version} needs attention: {' and '.join(kinds)} alarm(s) over {n:,} predictions."
        )
        retraining = [k for k in in_alarm if result["alarms"][k]["retrains"]]
        if retraining:
            actions.append(
                f"A {retraining[0].replace('_', ' ')} alarm starts retraining on the newest labeled data "
                f"(at most once every {spec.monitoring.retrain_cooldown_hours} h); check the contender "
                f"with `inferline models {spec.name}` when it finishes."
            )
        if drift.get("drifted"):
            actions.append("Check whether the drifted inputs changed upstream (a new client, a schema or "
                           "unit change) before trusting a retrained model.")  # fmt: skip
        if any(result["alarms"][k]["kind"] == "data_quality" for k in in_alarm):
            actions.append("Fix the data-quality issue at its source: retraining does not fix broken inputs.")
    if result["baseline"]["status"] == "missing":
        actions.append(f"Retrain {spec.name} (inferline retrain {spec.name}): every new version carries the "
                       "baseline drift and the estimated metric are judged against.")  # fmt: skip
    if not actions and status == "healthy":
        actions.append("Nothing to do.")
    return {"status": status, "headline": headline, "findings": findings, "actions": actions,
            "in_alarm": in_alarm}  # fmt: skip


def describe_shift(test: dict[str, Any]) -> str:
    """The largest visible change of a drifted distribution, in plain words."""
    if test["kind"] == "categorical":
        cats = test["categories"]
        deltas = [w - r for r, w in zip(cats["reference"], cats["window"], strict=True)]
        i = int(np.argmax(np.abs(deltas)))
        return (f"{cats['values'][i]} {cats['reference'][i]:.0%} -> {cats['window'][i]:.0%} "
                f"(PSI {test['psi']:.3f}, p={test['p_value']:.1e})")  # fmt: skip
    ref_mean = test.get("reference_mean")
    shift = f"mean {ref_mean:.3g} -> {test['window_mean']:.3g}, " if ref_mean is not None else ""
    return f"{shift}PSI {test['psi']:.3f}, KS p={test['p_value']:.1e}"


def _why_not_judged(spec: ModelSpec, n: int, baseline_info: dict[str, Any]) -> str:
    if baseline_info["status"] == "missing":
        return f"no baseline to compare with: {baseline_info['message']}"
    return (f"drift and data quality are judged from {spec.monitoring.min_rows:,} predictions "
            f"(spec monitoring.min_rows); shown, not judged.")  # fmt: skip


def _versus(drop: float | None) -> str:
    if drop is None:
        return "not compared"
    return f"{abs(drop):.3f} {'worse' if drop > 0 else 'better'}"


def _num(value: Any) -> str:
    if value is None:
        return "unknown"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


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
