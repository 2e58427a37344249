"""Monitoring on the running local platform, through its own command: traffic and its ground
truth through the API, then `inferline monitor MODEL --since T --json` in a subprocess. An
empty window gives a report that says so; shifted traffic fires the drift alarm, which writes
its notification and starts the retraining workflow (run to its end, then rolled back so the
other tests find the version they expect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from test_online_api import GOOD, PREDICT, wait_until_served
from test_retraining_cycle import local_config, served_version

from inferline.monitoring import ALARMS, RESULT_FORMAT
from inferline.resources import bucket_name, retrain_trigger_key
from local_runtime.cli import rollback
from local_runtime.demo_retrain import MODEL, send_traffic, shifted_traffic
from local_runtime.monitor import local_services

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def monitor(target, *args: str) -> tuple[dict, str]:
    """`inferline monitor MODEL ARGS --json` against the target: (result, stderr)."""
    config = local_config(target)
    env = os.environ | {
        "INFERLINE_HOME": str(config.home),
        "INFERLINE_API_PORT": str(config.api_port),
        "INFERLINE_SERVING_PORT": str(config.serving_port),
        "INFERLINE_AWS_PORT": str(config.aws_port),
        "INFERLINE_API_KEY": config.api_key,
    }
    done = subprocess.run(
        [sys.executable, "-m", "local_runtime.cli", "monitor", MODEL, "--json", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), done.stderr


def test_an_empty_window_gives_a_report_that_says_so(local_target):
    assert wait_until_served(local_target) == 200
    since = (datetime.now(UTC) - timedelta(milliseconds=1)).isoformat()
    result, stderr = monitor(local_target, "--since", since, "--no-retrain")
    assert result["format"] == RESULT_FORMAT and result["model"] == MODEL
    assert result["summary"]["status"] == "no_data"
    assert "No predictions" in result["summary"]["headline"]
    assert result["judged"]["rows"] == 0 and result["drift"] is None
    assert all(a["state"] != "ALARM" for a in result["alarms"].values())
    report = stderr.rsplit("report: ", 1)[1].split()[0]
    assert "nothing to judge" in open(report, encoding="utf-8").read()


def test_shifted_traffic_fires_the_drift_alarm_which_starts_retraining(local_target):
    assert wait_until_served(local_target) == 200
    config = local_config(local_target)
    before = served_version(local_target)
    since = datetime.now(UTC).isoformat()
    requests, actuals = shifted_traffic(1500, seed=777, drift=1.0)
    with local_target.client() as api:
        assert send_traffic(api, requests, actuals) == 1500
        refused = api.post(PREDICT, json={"instances": [GOOD | {"price": -1, "device": "watch"}]})
        assert refused.status_code == 400

    result, stderr = monitor(local_target, "--since", since)

    # the JSON result: this window's traffic only, judged against the serving version
    assert result["champion"]["version"] == before
    assert result["judged"] == {"drift": True, "rows": 1500, "reason": None}
    assert result["service"]["predictions"]["serving_version"] == 1500
    assert result["quality"]["labeled"] == 1500 and result["quality"]["live"]["roc_auc"] > 0.6
    drifted = set(result["drift"]["drifted"])
    assert {"device", "country", "session_pages"} <= drifted, drifted
    assert result["data_quality"]["refusals"]["online_requests"] == 1
    assert {(p["field"], p["count"]) for p in result["data_quality"]["refusals"]["by_field"]} == {
        ("price", 1),
        ("device", 1),
    }
    assert set(result["alarms"]) == {a.key for a in ALARMS}
    alarm = result["alarms"]["drifted_features"]
    assert alarm["state"] == "ALARM" and alarm["fired"] and alarm["value"] >= len(drifted) >= 3
    assert result["summary"]["status"] == "alarm"

    # the alarm: its notification links the report; the figures went out as EMF
    notification = (config.home / "outbox" / f"alarm-{MODEL}-{result['run_id']}.txt").read_text()
    assert "drifted-features" in notification and str(config.home / "monitoring") in notification
    emf = [json.loads(line) for line in (config.home / "logs" / "metrics.log").read_text().splitlines()]
    mine = [d for d in emf if d.get("model") == MODEL and d.get("DriftedFeatures") == [alarm["value"]]]
    assert mine, "the run's figures are in the EMF log"

    # the retraining it started: claimed, run, and told why
    assert "retraining started by the alarm" in stderr
    svc = local_services(config)
    data = bucket_name(config.prefix, "data")
    claim = json.loads(svc.s3.get_object(Bucket=data, Key=retrain_trigger_key(MODEL))["Body"].read())
    assert "drifted_features" in claim["reason"]
    notes = sorted((config.home / "outbox").glob(f"retrain-{MODEL}-*.txt"), key=lambda p: p.stat().st_mtime)
    assert "Started early by monitoring: drift alarm drifted_features" in notes[-1].read_text()

    # a second run over the same window: the alarm stays in ALARM (not fired again), so no
    # second retraining; the cool-down would hold one back anyway
    again, stderr = monitor(local_target, "--since", since)
    assert again["alarms"]["drifted_features"]["state"] == "ALARM"
    assert not again["alarms"]["drifted_features"]["fired"]
    assert "retraining started" not in stderr

    if served_version(local_target) != before:  # promoted: serve the version the other tests expect
        rollback(config, MODEL)
    assert served_version(local_target) == before
