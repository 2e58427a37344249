"""A model's runs over time: the summaries history keeps of them, and each alarm's state carried
from one run to the next as CloudWatch carries it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from inferline.monitoring import ALARMS_BY_KEY, evaluate, new_run_id
from inferline.objects import get_if_exists
from inferline.resources import monitoring_runs_prefix
from inferline.spec import ModelSpec

SUMMARY_FILE = "summary.json"
HISTORY_DAYS = 30
HISTORY_RUNS = 60


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
