"""bench/bench_monitoring.py, small: its day of logs in the platform's formats, one monitoring
run over them against in-process moto and on the S3 stand-in, and its report, so that the
benchmark cannot rot."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from inferline.ground_truth import latest_actuals
from inferline.resources import bucket_name

ROWS = 5_000


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[2] / "bench" / "bench_monitoring.py"
    spec = importlib.util.spec_from_file_location("bench_monitoring", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def day(bench, tmp_path_factory):
    """5,000 predictions: 500 online in requests of 10, the rest in 2 batch jobs of 1,000-row chunks."""
    composition = bench.Composition(rows=ROWS, batch_jobs=2, chunk_rows=1_000)
    return composition, bench.Pack.build(tmp_path_factory.mktemp("cache") / "day", composition, 3_000)


def test_the_day_is_in_the_platforms_layouts_and_formats(bench, day):
    composition, pack = day
    facts = pack.facts
    assert facts["online_predictions"] + facts["batch_predictions"] == ROWS
    assert facts["online_objects"] == facts["online_requests"] == ROWS // 10 // 10
    assert facts["batch_jobs"] == 2 and facts["batch_chunk_rows_max"] <= composition.chunk_rows
    keys = list(pack.objects)
    online = [k for k in keys if k.startswith("predictions/") and "/batch-" not in k]
    batch = [k for k in keys if k.startswith("predictions/") and "/batch-" in k]
    assert len(online) == facts["online_objects"] and len(batch) == facts["batch_objects"]
    assert all(k.startswith("predictions/model=purchase-propensity/dt=2026-03-02/") for k in online + batch)

    line = json.loads(pack.read(online[0]).splitlines()[0])
    assert list(line) == [
        "prediction_id", "request_id", "model", "model_version", "source", "client", "created_at",
        "expires_at", "request", "features", "entity_known", "output", "latency_ms",
    ]  # fmt: skip
    assert line["source"] == "online" and "email" not in line["features"]
    assert line["request"].get("email") in (None, "*****")  # PII erased, as redact() does
    chunk = [json.loads(x) for x in pack.read(batch[0]).splitlines()]
    assert {x["source"] for x in chunk} == {"batch"} and len({x["created_at"] for x in chunk}) == 1
    request_id = chunk[0]["request_id"]
    assert request_id.startswith("batch-") and request_id.endswith("-000000")
    job = request_id.removeprefix("batch-").rsplit("-", 1)[0]
    assert chunk[0]["prediction_id"].startswith(f"batch-{job}-0-")

    truth = [k for k in keys if k.startswith("ground-truth/")]
    lines = [json.loads(x) for k in truth for x in pack.read(k).splitlines()]
    assert len(lines) == facts["ground_truth_lines"]
    assert max(len(pack.read(k).splitlines()) for k in truth) <= 1000
    assert len(latest_actuals(lines)) == len(lines)
    assert all(x["predicted_at"] < x["recorded_at"] for x in lines)
    refusals = [json.loads(pack.read(k)) for k in keys if k.startswith("refusals/")]
    assert sum(r["refused"] for r in refusals if r["source"] == "online") == facts["refused_online_requests"]
    assert sum(r["refused"] for r in refusals if r["source"] == "batch") == facts["refused_batch_rows"]


def test_one_monitoring_run_against_moto_and_on_the_stand_in_and_the_report(bench, day, monkeypatch):
    _, pack = day
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        s3 = boto3.client("s3")
        bench.load_day(s3, boto3.client("dynamodb"), pack, threads=4)
        on_moto = bench.monitored_run(s3)
        written = s3.list_objects_v2(Bucket=bucket_name(bench.PREFIX, "data"), Prefix="monitoring/")
    local = bench.monitored_run(bench.FolderS3(pack))

    facts = pack.facts
    for run in (on_moto, local):
        assert run["rows"] == ROWS
        assert run["labeled"] == run["ground_truth_lines"] == facts["ground_truth_lines"]
        assert run["objects"] == facts["online_objects"] + facts["batch_objects"]
        assert run["refused"]["online_requests"] == facts["refused_online_requests"]
        assert run["refused"]["batch_rows"] == facts["refused_batch_rows"]
        assert {label for _, _, label in bench.STAGES} <= set(run["stages_s"])
        assert run["fetch"]["read predictions"]["objects"] == run["objects"]
    assert local["figures"] == on_moto["figures"]  # the stand-in serves what S3 does
    names = {o["Key"].rsplit("/", 1)[1] for o in written["Contents"]}
    assert names >= {"result.json", "summary.json", "report.html"}
    from model_artifacts.monitoring import run as run_module

    assert run_module.read_window.__name__ == "read_window"  # the timers are taken off again

    measured = {"wall_s": 9.0, "peak_rss_mb": 300.0, "cpu_s": 8.0, "import_s": 5.0}
    results = {
        "run": {"when": "now", "machine": "test", "python": "3", "command": "bench/bench_monitoring.py",
                "load_average_before": (0.5, 0, 0), "load_average_after": (0.5, 0, 0)},
        "composition": bench.dataclasses.asdict(day[0]),
        "data": facts,
        "rounds": [{"moto": on_moto | measured | {"moto_cpu_s": 2.0}, "local": local | measured}],
    }  # fmt: skip
    results["summary"] = bench.summarize(results)
    results["ratios"] = bench.ratios(results["summary"])
    assert results["ratios"]["wall_s"]["met"] and results["ratios"]["peak_rss_mb"]["met"]
    text = bench.markdown(results)
    assert "| **median, against moto** | **9.0**" in text and "read predictions" in text
