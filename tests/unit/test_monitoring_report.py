"""The monitoring report (model_artifacts/monitoring/report.py and charts.py) for real monitoring
runs on moto: a drifted run, a healthy one, an empty window and a version without a baseline.
Every section and chart is there, the page needs no network, and production strings are escaped.

`monitoring_runs()` is shared with test_monitoring_report_browser.py: it trains the demo model
once per test session and monitors traffic logged the way the platform logs it.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import os
import random
import tarfile
import tempfile
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from unittest import mock

import boto3
import pytest
from moto import mock_aws
from threadpoolctl import threadpool_limits

from inferline.prediction_log import prediction_record
from inferline.refusals import refusal_record
from inferline.resources import ground_truth_key, prediction_log_key, refusal_log_key
from inferline.spec import load_spec
from model_artifacts.demo_data import draw_labels, generate_requests, generate_training_frame, generate_users
from model_artifacts.monitoring.report import render
from model_artifacts.monitoring.run import MonitoringRun, monitor
from model_artifacts.train import train

MODEL = "purchase-propensity"
SPEC = load_spec(MODEL)
NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
DATA, ARTIFACTS = "inferline-data", "inferline-artifacts"
ROWS = 1500  # per window: above spec.monitoring.min_rows, with enough ground truth for the live metric
SECTIONS = {
    "header",
    "summary",
    "alarms",
    "drift",
    "trends",
    "quality",
    "data-quality",
    "service",
    "how-to-read",
}
ALWAYS_PLOTTED = {"trend-drift", "trend-quality", "calibration", "traffic"}
EVIL = "<script>alert(1)</script>"


# -- the runs -----------------------------------------------------------------------------------


@functools.cache
def monitoring_runs() -> dict[str, MonitoringRun]:
    """healthy: the first run (history of one); drifted: a day later, inputs drifted (history of
    two); empty: a window before any traffic; no_baseline: the drifted window, monitored with a
    version that carries no baseline and whose training data is gone."""
    users = generate_users(2000, 7)
    # One thread: HistGradientBoosting's OpenMP threads on a busy machine turn 2 s into 40.
    with threadpool_limits(1):
        bundle = train(SPEC, generate_training_frame(20000, 7, users=users), version="1")
    bundle.info["trained_at"] = "2026-12-01T09:30:00Z"  # a fixed age: the screenshot stays the same
    # moto answers only AWS's own endpoints: a developer's AWS_ENDPOINT_URL (the local runtime)
    # would send these calls elsewhere.
    with mock.patch.dict(os.environ, {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}):
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
            os.environ.pop(name, None)
        return _monitor_all(bundle, users)


def _monitor_all(bundle, users: list[dict]) -> dict[str, MonitoringRun]:
    with mock_aws(), tempfile.TemporaryDirectory() as tmp:
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (DATA, ARTIFACTS):
            s3.create_bucket(Bucket=bucket)
        champion = {
            "version": "1",
            "model_data_url": _upload(s3, bundle, Path(tmp) / "with", "models/1/model.tar.gz"),
            "serving_since": "2026-12-02T08:00:00Z",
        }
        _log(s3, bundle, users, drift=0.0, seed=11, start=NOW - timedelta(days=1, hours=20))
        _refuse(s3, NOW - timedelta(days=1, hours=3))
        _log(s3, bundle, users, drift=0.3, seed=12, start=NOW - timedelta(hours=20))
        _refuse(s3, NOW - timedelta(hours=2))

        def run(now: datetime, run_id: str, write: bool = False, **kwargs) -> MonitoringRun:
            kwargs = {"champion": champion} | kwargs
            return monitor(s3, model=MODEL, data_bucket=DATA, now=now, run_id=run_id, spec=SPEC, write=write,
                           **kwargs)  # fmt: skip

        runs = {"healthy": run(NOW - timedelta(days=1), "20261207T120000Z-healthy", write=True)}
        runs["drifted"] = run(NOW, "20261208T120000Z-drifted")
        runs["empty"] = run(NOW - timedelta(days=5), "20261203T120000Z-empty")
        bundle.baseline = {}
        without = _upload(s3, bundle, Path(tmp) / "without", "models/1b/model.tar.gz")
        no_baseline = champion | {"model_data_url": without}
        runs["no_baseline"] = run(NOW, "20261208T120000Z-nobaseline", champion=no_baseline)
    return runs


def _upload(s3, bundle, folder: Path, key: str) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(bundle.save(folder), arcname="model.joblib")
    s3.put_object(Bucket=ARTIFACTS, Key=key, Body=buffer.getvalue())
    return f"s3://{ARTIFACTS}/{key}"


def _log(s3, bundle, users: list[dict], *, drift: float, seed: int, start: datetime) -> None:
    """ROWS online predictions, ten per request, over about eight hours, as the platform logs
    them, with ground truth for half of them an hour later."""
    stored = {u["user_id"]: u for u in users}
    defaults = {name: f.default for name, f in SPEC.stored_features.items()}
    requests = generate_requests(ROWS, seed, drift, users=users)
    features = [
        {n: r[n] for n in SPEC.model_inputs if n in r}
        | {k: stored.get(r["user_id"], defaults)[k] for k in defaults}
        for r in requests
    ]
    scores = bundle.predict_proba(features)[:, 1]
    actual = draw_labels([r | f for r, f in zip(requests, features, strict=True)], seed, drift)
    latency = random.Random(seed)
    lines, truth = [], []
    for i, (request, feats, score) in enumerate(zip(requests, features, scores, strict=True)):
        record = prediction_record(
            prediction_id=str(uuid.UUID(int=seed * 10**6 + i)), request_id=f"r{seed}-{i // 10}", model=MODEL,
            model_version="1", created_at=start + timedelta(seconds=20 * i), ttl_days=90,
            request={k: v for k, v in request.items() if k != "email"}, features=feats,
            entity_known=request["user_id"] in stored,
            output={"label": "purchase" if score >= 0.5 else "no_purchase", "score": float(score)},
            latency_ms=latency.lognormvariate(1.2, 0.35),
        )  # fmt: skip
        lines.append(record)
        if i % 2 == 0:
            recorded = start + timedelta(seconds=20 * i, hours=1)
            truth.append({"prediction_id": record["prediction_id"], "model": MODEL, "model_version": "1",
                          "predicted_at": record["created_at"], "actual": int(actual[i]),
                          "recorded_at": recorded.isoformat()})  # fmt: skip
    for first in range(0, ROWS, 10):  # one object per online request, as postprocess writes them
        part = lines[first : first + 10]
        key = prediction_log_key(MODEL, datetime.fromisoformat(part[0]["created_at"]), part[0]["request_id"])
        s3.put_object(Bucket=DATA, Key=key, Body="".join(json.dumps(line) + "\n" for line in part).encode())
    body = "".join(json.dumps(t) + "\n" for t in truth).encode()
    s3.put_object(
        Bucket=DATA, Key=ground_truth_key(MODEL, start + timedelta(hours=9), f"fb{seed}"), Body=body
    )


def _refuse(s3, at: datetime) -> None:
    """Two refused requests, as preprocess logs them."""
    problems = [("price", "must be a number"), ("device", "must be one of desktop, mobile, tablet")]
    for n, (field, problem) in enumerate(problems):
        record = refusal_record(
            spec=SPEC, source="online", request_id=f"refused-{at:%d}-{n}", created_at=at, status=422,
            error="invalid input", refused=1, problems=Counter({(field, problem): 1}),
        )  # fmt: skip
        key = refusal_log_key(MODEL, at, record["request_id"])
        s3.put_object(Bucket=DATA, Key=key, Body=(json.dumps(record) + "\n").encode())


@pytest.fixture(scope="module")
def runs() -> dict[str, MonitoringRun]:
    return monitoring_runs()


# -- reading the page -----------------------------------------------------------------------------


class Page(HTMLParser):
    """The page's tags, as (tag, attributes) in document order."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def ids(self) -> list[str]:
        return [a["id"] for _, a in self.tags if a.get("id")]

    def plots(self) -> list[tuple[str, str]]:
        """(data-plot, class) of each chart, in document order."""
        return [(a["data-plot"], a.get("class") or "") for _, a in self.tags if a.get("data-plot")]


# One chart per model input, the score and the predicted label, besides those always drawn.
EXPECTED_PLOTS = ALWAYS_PLOTTED | {"score", "predicted"} | {f"feature-{name}" for name in SPEC.model_inputs}


# -- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["drifted", "healthy", "empty", "no_baseline"])
def test_every_section_is_there_and_the_page_is_self_contained(runs, name):
    run = runs[name]
    page = Page(run.html)
    assert SECTIONS <= set(page.ids()), f"missing sections: {SECTIONS - set(page.ids())}"
    assert len(page.ids()) == len(set(page.ids())), "ids repeat (inline SVGs must not share ids)"
    assert ALWAYS_PLOTTED <= {key for key, _ in page.plots()}
    # No network: nothing loaded from elsewhere, no script at all.
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "img"), f"<{tag}> in a self-contained page"
        for attr in ("src", "href", "xlink:href"):
            value = attrs.get(attr)
            assert value is None or value.startswith("#"), f"<{tag} {attr}={value!r}> points outside the page"
    assert "http://" not in run.html and "https://" not in run.html and "@import" not in run.html


def test_a_drifted_run_shows_the_alarm_and_puts_drifted_inputs_first(runs):
    result, page = runs["drifted"].result, Page(runs["drifted"].html)
    drift = result["drift"]
    assert result["summary"]["status"] == "alarm" and drift["drifted"], "the fixture should drift"
    plots = page.plots()
    assert EXPECTED_PLOTS <= {key for key, _ in plots}
    assert {f"slice-{field}" for field in SPEC.evaluation.slices} <= {key for key, _ in plots}
    features = [(key.removeprefix("feature-"), cls) for key, cls in plots if key.startswith("feature-")]
    flagged = [name for name, cls in features if "drifted" in cls.split()]
    assert sorted(flagged) == sorted(drift["drifted"])
    assert [name for name, _ in features[: len(flagged)]] == flagged, "drifted inputs come first"
    summary = next(a for _, a in page.tags if a.get("id") == "summary")
    assert "tone-bad" in summary["class"]
    text = " ".join(page.text)
    assert result["summary"]["headline"] in text
    for line in result["summary"]["findings"] + result["summary"]["actions"]:
        assert line in text
    assert "drifted features" in text and "prediction drift" in text  # the alarms in the table
    assert len(result["history"]) == 2


def test_a_healthy_run_with_one_run_of_history(runs):
    result, page = runs["healthy"].result, Page(runs["healthy"].html)
    assert result["summary"]["status"] == "healthy"
    assert len(result["history"]) == 1, "the trends draw single points"
    assert EXPECTED_PLOTS <= {key for key, _ in page.plots()}
    assert not [key for key, cls in page.plots() if "drifted" in cls.split()]
    assert "Healthy" in " ".join(page.text)


def test_an_empty_window_says_so(runs):
    result, page = runs["empty"].result, Page(runs["empty"].html)
    assert result["summary"]["status"] == "no_data" and result["drift"] is None
    text = " ".join(page.text)
    assert "No data" in text and "No predictions of the serving version in this window" in text
    assert not [key for key, _ in page.plots() if key.startswith("feature-")]


def test_a_version_without_a_baseline_says_why(runs):
    result, page = runs["no_baseline"].result, Page(runs["no_baseline"].html)
    assert result["drift"] is None and result["baseline"]["status"] == "missing"
    assert result["judged"]["rows"] == ROWS
    assert "No baseline to compare with" in " ".join(page.text)
    assert result["baseline"]["message"] in " ".join(page.text)


def test_strings_from_production_are_escaped(runs):
    result = copy.deepcopy(runs["drifted"].result)
    drift, dq, quality = result["drift"], result["data_quality"], result["quality"]
    name = next(iter(drift["features"]))
    drift["features"][EVIL] = drift["features"].pop(name)
    drift["drifted"] = [EVIL, *drift["drifted"]]
    dq["features"][EVIL] = dq["features"].pop(name)
    categorical = next(t for t in drift["features"].values() if t and t["kind"] == "categorical")
    categorical["categories"]["values"][0] = EVIL + "$x$^{"  # also not matplotlib mathtext
    first_slice = next(iter(quality["slices"].values()))
    first_slice[0]["value"] = EVIL
    quality["slices"][EVIL] = quality["slices"].pop("device")
    dq["refusals"]["by_field"] = [{"field": EVIL, "problem": EVIL, "count": 3}]
    dq["refusals"]["by_status"] = {EVIL: 3}
    result["summary"]["findings"].append(EVIL)
    result["model"] = result["baseline"]["message"] = EVIL
    result["history"][-1]["version"] = EVIL
    page = render(result)
    assert EVIL not in page and "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10
    assert f'data-plot="feature-{"&lt;script&gt;alert(1)&lt;/script&gt;"}"' in page


def test_a_result_with_every_piece_missing_still_renders():
    result = {
        "summary": {"status": "alarm"},
        "drift": {"features": {"x": None}, "score": None},
        "history": [{}],
    }
    page = Page(render(result))
    assert SECTIONS <= set(page.ids())
    nulls = copy.deepcopy(monitoring_runs()["drifted"].result)
    nulls["quality"] |= {
        "live": None,
        "drop": None,
        "estimated": {},
        "calibration": {},
        "label_delay_hours": {},
    }
    nulls["service"] |= {"latency_ms": {}, "per_hour": {}, "champion": {}}
    nulls["history"] = [{"figures": {}, "psi": {}}, *nulls["history"]]
    for alarm in nulls["alarms"].values():
        alarm["value"] = None
    nulls["drift"]["judged"] = False  # too few rows: tests shown, nothing called drifted
    for test in [*nulls["drift"]["features"].values(), nulls["drift"]["score"], nulls["drift"]["predicted"]]:
        test["drifted"] = False
    nulls["drift"]["features"]["price"] = None  # an input that was missing in every row
    page = Page(render(nulls))
    assert SECTIONS <= set(page.ids())
    assert "Shown, not judged" in " ".join(page.text)
    assert "feature-price" in {key for key, _ in page.plots()}


def test_the_page_stays_small(runs):
    size = len(runs["drifted"].html.encode())
    assert size < 2_000_000 / 12 * len(SPEC.model_inputs), f"{size:,} bytes"
