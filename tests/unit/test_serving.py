"""The serving container's model server: SageMaker's contract, input checks, micro-batching.

The server runs for real (a subprocess on a free loopback port) on a tiny model trained here,
so these tests need nothing from the training code. Start-up, load failures and model
failures use the ASGI app in-process with a loader the test controls.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import boto3
import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from botocore.config import Config

from inferline.spec import ModelSpec, load_spec
from model_artifacts import compiled
from model_artifacts.bundle import ModelBundle, to_frame
from model_artifacts.pipeline import build_pipeline
from model_artifacts.serving.app import create_app
from model_artifacts.serving.batching import MicroBatcher
from model_artifacts.serving.model import ServedModel
from model_artifacts.serving.payload import InputSchema, Refusal, Rows
from model_artifacts.serving.settings import ServingSettings, SettingsError

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / "model_artifacts" / "serving"
MAX_INSTANCES = 200
MAX_BODY_BYTES = 120_000


# -- a tiny model, made here ------------------------------------------------------------------


def make_records(spec: ModelSpec, count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(count):
        record: dict = {}
        for name in spec.model_inputs:
            field = spec.request.fields.get(name)
            if name in spec.categorical_inputs:
                record[name] = str(rng.choice(field.allowed))
            elif rng.random() < 0.5:
                record[name] = int(rng.integers(0, 60))  # ints are numbers too
            else:
                record[name] = round(float(rng.uniform(0, 60)), 3)
        records.append(record)
    return records


def train_bundle(spec: ModelSpec, version: str = "test-1") -> ModelBundle:
    records = make_records(spec, 400, seed=1)
    frame = to_frame(spec, records)
    signal = frame[spec.numeric_inputs[0]] + 20 * (frame[spec.categorical_inputs[0]] == "books")
    thirds = np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3]))  # 0, 1 or 2
    labels = np.array(spec.target.classes)[thirds % len(spec.target.classes)]
    pipeline = build_pipeline(spec, {"max_iter": 15, "max_leaf_nodes": 7})
    return ModelBundle(spec=spec, version=version, pipeline=pipeline.fit(frame, labels))


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return load_spec("purchase-propensity")


@pytest.fixture(scope="module")
def bundle(spec) -> ModelBundle:
    return train_bundle(spec)


@pytest.fixture(scope="module")
def multiclass_bundle(spec) -> ModelBundle:
    data = spec.model_dump(mode="json")
    data["task"] = "multiclass"
    data["target"]["classes"] = ["low", "mid", "high"]
    data["output"] = {"top_k": 2}
    return train_bundle(ModelSpec.model_validate(data), version="multi-1")


@pytest.fixture(scope="module")
def model_dir(bundle, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model")
    bundle.save(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dir):
    """The real server process, as `make up` and the container start it."""
    port = free_port()
    command = [
        sys.executable, "-m", "model_artifacts.serving", "--model-dir", str(model_dir),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--max-instances", str(MAX_INSTANCES), "--max-body-bytes", str(MAX_BODY_BYTES),
    ]  # fmt: skip
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the model server exited: {proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the model server did not become ready: {proc.stdout.read()}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=10) as http:
        yield http


def positive_scores(bundle: ModelBundle, records: list[dict]) -> list[float]:
    return bundle.predict_proba(records)[:, -1].tolist()


def to_csv(spec: ModelSpec, records: list[dict], header: bool = True) -> str:
    lines = [",".join(spec.model_inputs)] if header else []
    lines += [",".join(str(r[n]) for n in spec.model_inputs) for r in records]
    return "\n".join(lines) + "\n"


def post_json(client: httpx.Client, body, path: str = "/invocations") -> httpx.Response:
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(path, content=content, headers={"content-type": "application/json"})


# -- the container contract -------------------------------------------------------------------


def test_ping_is_ok_once_the_model_is_loaded(client, bundle):
    reply = client.get("/ping")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ready", "model": "purchase-propensity", "model_version": "test-1",
                            "backend": "scikit-learn"}  # a bundle made here, never compiled  # fmt: skip


# -- the compiled backend: ONNX Runtime when the bundle's ONNX model passed its check ------------


def compiled_bundle(spec: ModelSpec, records: list[dict]) -> ModelBundle:
    bundle = train_bundle(spec, version="onnx-1")
    compiled.compile_bundle(bundle, records)
    return bundle


def test_a_compiled_model_is_served_by_onnx_runtime_with_the_same_scores(spec):
    bundle = compiled_bundle(spec, make_records(spec, 300, seed=8))
    assert bundle.info["compiled"]["backend"] == "onnxruntime", bundle.info["compiled"]
    records = make_records(spec, 50, seed=9)
    with serve_in_thread(create_app(ServingSettings(), load=lambda: bundle)) as http:
        wait_ready(http)
        assert http.get("/ping").json()["backend"] == "onnxruntime"
        reply = http.post("/invocations", json={"instances": records})
        csv_reply = http.post("/invocations", content=to_csv(spec, records, True),
                              headers={"content-type": "text/csv"})  # fmt: skip
    assert reply.headers["x-inferline-backend"] == "onnxruntime"
    np.testing.assert_allclose(reply.json()["scores"], positive_scores(bundle, records), atol=1e-9, rtol=0)
    assert csv_reply.json()["scores"] == reply.json()["scores"]


def test_a_compiled_model_survives_saving_and_loading(spec, tmp_path):
    bundle = compiled_bundle(spec, make_records(spec, 100, seed=8))
    bundle.save(tmp_path)
    assert (tmp_path / "model.onnx").read_bytes() == bundle.onnx
    loaded = ModelBundle.load(tmp_path)
    assert loaded.onnx == bundle.onnx and compiled.served_backend(loaded) == "onnxruntime"


def test_an_onnx_model_that_scores_wrong_at_load_falls_back_to_scikit_learn(spec):
    """The bundle claims a passed check, but its ONNX model is another model's: the server sees
    it on its check row and serves scikit-learn, saying why."""
    bundle = compiled_bundle(spec, make_records(spec, 100, seed=8))
    other = train_bundle(spec)
    other.pipeline.steps[-1][1].set_params(max_iter=2)
    other.pipeline.fit(to_frame(spec, make_records(spec, 200, seed=12)), [0, 1] * 100)
    bundle.onnx = compiled.convert(other)
    records = make_records(spec, 20, seed=10)
    with serve_in_thread(create_app(ServingSettings(), load=lambda: bundle)) as http:
        wait_ready(http)
        ping = http.get("/ping").json()
        reply = http.post("/invocations", json={"instances": records})
    assert ping["backend"] == "scikit-learn" and "check row" in ping["fallback_reason"]
    assert reply.headers["x-inferline-backend"] == "scikit-learn"
    np.testing.assert_allclose(reply.json()["scores"], positive_scores(bundle, records), atol=1e-9, rtol=0)


def test_a_model_that_does_not_convert_is_served_by_scikit_learn_saying_why(spec, monkeypatch):
    def refuse(bundle):
        raise compiled.ConversionFailed("MissingShapeCalculator: no converter for this estimator")

    monkeypatch.setattr(compiled, "convert", refuse)
    bundle = compiled_bundle(spec, make_records(spec, 50, seed=8))
    assert bundle.onnx is None
    reason = "not converted: MissingShapeCalculator: no converter for this estimator"
    assert bundle.info["compiled"] == {"backend": "scikit-learn", "reason": reason}
    with serve_in_thread(create_app(ServingSettings(), load=lambda: bundle)) as http:
        wait_ready(http)
        ping = http.get("/ping").json()
    assert ping["backend"] == "scikit-learn" and ping["fallback_reason"].startswith("not converted")


def test_json_invocation_returns_the_positive_class_scores(client, spec, bundle):
    records = make_records(spec, 7, seed=2)
    records[0]["email"] = "extra keys are ignored"
    reply = post_json(client, {"instances": records})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["model"] == "purchase-propensity"
    assert body["model_version"] == "test-1"
    assert body["classes"] == [0, 1]
    np.testing.assert_allclose(body["scores"], positive_scores(bundle, records), atol=1e-6, rtol=0)


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_csv_invocation(client, spec, bundle, header):
    records = make_records(spec, 5, seed=3)
    body = to_csv(spec, records, header)
    reply = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["scores"], positive_scores(bundle, records), atol=1e-6)


def test_csv_header_may_order_columns_freely_and_add_others(client, spec, bundle):
    records = make_records(spec, 3, seed=4)
    names = ["user_id", *reversed(spec.model_inputs)]
    lines = [",".join(names)] + [",".join(str(r.get(n, "u1")) for n in names) for r in records]
    reply = client.post(
        "/invocations", content="\r\n".join(lines), headers={"content-type": "text/csv; charset=utf-8"}
    )
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["scores"], positive_scores(bundle, records), atol=1e-6)


def test_multiclass_scores_are_one_probability_list_per_instance(multiclass_bundle):
    app = create_app(ServingSettings(), load=lambda: multiclass_bundle)
    records = make_records(multiclass_bundle.spec, 4, seed=5)
    with serve_in_thread(app) as http:
        wait_ready(http)
        body = http.post("/invocations", json={"instances": records}).json()
    assert body["classes"] == multiclass_bundle.classes
    expected = multiclass_bundle.predict_proba(records)
    assert np.array(body["scores"]).shape == (4, 3)
    np.testing.assert_allclose(body["scores"], expected, atol=1e-6, rtol=0)


# -- bad input: a 4xx naming the problem, never a 500 -----------------------------------------

BAD_JSON = [
    ("empty body", b"", 400, "empty_body", "empty"),
    ("whitespace body", b"  \n", 400, "empty_body", "empty"),
    ("not JSON", b"price=3", 400, "invalid_json", "not valid JSON"),
    ("truncated JSON", b'{"instances": [', 400, "invalid_json", "not valid JSON"),
    ("not UTF-8", b'{"instances": ["\xff"]}', 400, "invalid_json", "UTF-8"),
    ("a list", b"[]", 400, "invalid_payload", "JSON object"),
    ("no instances", b'{"rows": []}', 400, "invalid_payload", '"instances"'),
    ("instances not a list", b'{"instances": {}}', 400, "invalid_payload", "list of objects"),
    ("no instances to score", b'{"instances": []}', 400, "invalid_payload", "no instances"),
]


@pytest.mark.parametrize(
    ("body", "status", "error", "says"), [b[1:] for b in BAD_JSON], ids=[b[0] for b in BAD_JSON]
)
def test_bad_json_bodies_are_4xx(client, body, status, error, says):
    reply = post_json(client, body)
    assert reply.status_code == status
    assert reply.json()["error"] == error
    assert says in reply.json()["message"]


def test_every_problem_in_the_instances_is_named(client, spec):
    good = make_records(spec, 1, seed=6)[0]
    instances = [
        good,
        {k: v for k, v in good.items() if k != "price"},
        good | {"price": "12.5"},
        good | {"category": 3},
        good | {"session_pages": True},
        good | {"discount_pct": None},
        "not an object",
    ]
    reply = post_json(client, {"instances": instances})
    assert reply.status_code == 400
    body = reply.json()
    assert body["error"] == "invalid_instances"
    assert body["details"] == [
        {"instance": 1, "field": "price", "problem": "missing"},
        {"instance": 2, "field": "price", "problem": 'expected a number, got string "12.5"'},
        {"instance": 3, "field": "category", "problem": "expected a string, got number 3"},
        {"instance": 4, "field": "session_pages", "problem": "expected a number, got boolean true"},
        {"instance": 5, "field": "discount_pct", "problem": "expected a number, got null"},
        {"instance": 6, "problem": "expected an object, got string"},
    ]
    assert body["message"].startswith("6 problems in the instances: instance 1 field 'price': missing")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused(client, spec, literal):
    good = json.dumps(make_records(spec, 1, seed=7)[0] | {"price": 0.5})
    body = '{"instances": [' + good.replace('"price": 0.5', f'"price": {literal}') + "]}"
    reply = post_json(client, body)
    assert reply.status_code == 400
    assert reply.json()["details"][0]["field"] == "price"
    assert "finite number" in reply.json()["details"][0]["problem"]


def test_huge_integers_are_out_of_range_not_a_crash(client, spec):
    record = make_records(spec, 1, seed=7)[0] | {"price": 10**400}
    reply = post_json(client, {"instances": [record]})
    assert reply.status_code == 400
    assert reply.json()["details"] == [
        {"instance": 0, "field": "price", "problem": f"the number {10**400} is out of range"}
    ]


def test_details_are_capped_but_the_count_is_told(client, spec):
    reply = post_json(client, {"instances": [{}] * 10})
    body = reply.json()
    total = 10 * len(spec.model_inputs)
    assert reply.status_code == 400
    assert len(body["details"]) == 50
    assert body["message"].startswith(f"{total} problems")


BAD_CSV = [
    ("header lacks inputs", "price,category\n1,books\n", "invalid_csv", "lacks model inputs"),
    ("header only", "{header}\n", "empty_body", "no data rows"),
    ("not UTF-8", b"\xff\xfe,1\n", "invalid_csv", "UTF-8"),
]


@pytest.mark.parametrize(("body", "error", "says"), [b[1:] for b in BAD_CSV], ids=[b[0] for b in BAD_CSV])
def test_bad_csv_bodies_are_400(client, spec, body, error, says):
    if isinstance(body, str):
        body = body.format(header=",".join(spec.model_inputs))
    reply = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert reply.status_code == 400
    assert reply.json()["error"] == error
    assert says in reply.json()["message"]


def test_csv_rows_name_the_row_and_field(client, spec):
    good = to_csv(spec, make_records(spec, 1, seed=8), header=False).strip()
    cells = good.split(",")
    price, category = spec.model_inputs.index("price"), spec.model_inputs.index("category")
    bad_number = ",".join(cells[:price] + ["cheap"] + cells[price + 1 :])
    empty = ",".join(cells[:category] + [""] + cells[category + 1 :])
    short = ",".join(cells[:-1])
    body = "\n".join([good, bad_number, empty, short]) + "\n"
    reply = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert reply.status_code == 400
    assert reply.json()["details"] == [
        {"row": 1, "field": "price", "problem": 'expected a number, got "cheap"'},
        {"row": 2, "field": "category", "problem": "missing"},
        {"row": 3, "problem": f"expected {len(cells)} values, got {len(cells) - 1}"},
    ]


def test_unsupported_content_type_is_415(client, spec):
    reply = client.post("/invocations", content="x", headers={"content-type": "text/plain"})
    assert reply.status_code == 415
    assert reply.json()["error"] == "unsupported_media_type"
    assert "application/json or text/csv" in reply.json()["message"]


def test_an_accept_header_that_excludes_json_is_406(client, spec):
    reply = client.post(
        "/invocations",
        json={"instances": make_records(spec, 1, seed=9)},
        headers={"accept": "text/csv"},
    )
    assert reply.status_code == 406


def test_too_many_instances_is_413(client, spec):
    records = make_records(spec, 1, seed=10) * (MAX_INSTANCES + 1)
    reply = post_json(client, {"instances": records})
    assert reply.status_code == 413
    assert reply.json()["error"] == "too_many_instances"
    assert str(MAX_INSTANCES) in reply.json()["message"]
    csv_reply = client.post(
        "/invocations", content=to_csv(spec, records), headers={"content-type": "text/csv"}
    )
    assert csv_reply.status_code == 413


def test_a_body_over_the_limit_is_413(client):
    reply = post_json(client, b'{"instances": [' + b" " * MAX_BODY_BYTES + b"]}")
    assert reply.status_code == 413
    assert reply.json()["error"] == "payload_too_large"


def test_a_chunked_body_over_the_limit_is_413(client):
    def chunks():
        for _ in range(MAX_BODY_BYTES // 10_000 + 2):
            yield b" " * 10_000

    reply = client.post("/invocations", content=chunks(), headers={"content-type": "application/json"})
    assert reply.status_code == 413


def test_unknown_routes_and_methods_are_json(client):
    assert client.get("/nope").status_code == 404
    assert client.get("/nope").json()["error"] == "not_found"
    assert client.get("/invocations").status_code == 405
    assert client.get("/invocations").json()["error"] == "method_not_allowed"


# -- micro-batching ---------------------------------------------------------------------------


def test_concurrent_requests_get_exactly_their_own_scores(client, spec, bundle):
    """Requests batched together on the server score as if each were alone."""
    requests = [make_records(spec, 1 + i % 5, seed=100 + i) for i in range(48)]

    def call(records):
        return post_json(client, {"instances": records})

    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(call, requests))
    for records, reply in zip(requests, replies, strict=True):
        assert reply.status_code == 200, reply.text
        np.testing.assert_allclose(
            reply.json()["scores"], positive_scores(bundle, records), atol=1e-6, rtol=0
        )


@pytest.mark.parametrize("inline", [False, True], ids=["predict-thread", "inline"])
def test_the_batcher_combines_queued_requests_and_splits_the_results(inline):
    calls = []

    def predict(rows: Rows) -> np.ndarray:
        calls.append(rows.count)
        time.sleep(0.02)
        return np.column_stack([-rows.columns["x"], rows.columns["x"]])

    def rows(*values: float) -> Rows:
        return Rows({"x": np.array(values, dtype=np.float64)}, len(values))

    async def scenario():
        batcher = MicroBatcher(predict, max_rows=4, inline=inline)
        batcher.start()
        alone = await batcher.predict(rows(1.0))  # nothing queued: scored at once, by itself
        jobs = [rows(float(i)) for i in range(10)] + [rows(*range(100, 106))]
        results = await asyncio.gather(*(batcher.predict(j) for j in jobs))
        await batcher.stop()
        return alone, jobs, results

    alone, jobs, results = asyncio.run(scenario())
    np.testing.assert_array_equal(alone, [[-1.0, 1.0]])
    for job, result in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(result[:, 1], job.columns["x"])
    # one call alone, then queued requests in calls of up to 4 rows; 6 rows is still scored whole
    assert calls == [1, 4, 4, 2, 6]


@pytest.mark.parametrize("inline", [False, True], ids=["predict-thread", "inline"])
def test_a_request_that_breaks_the_model_fails_alone(inline):
    def predict(rows: Rows) -> np.ndarray:
        if (rows.columns["x"] < 0).any():
            raise ValueError("negative")
        return np.column_stack([1 - rows.columns["x"], rows.columns["x"]])

    async def scenario():
        batcher = MicroBatcher(predict, max_rows=100, inline=inline)
        batcher.start()
        jobs = [Rows({"x": np.array([v])}, 1) for v in (0.1, -1.0, 0.3)]
        results = await asyncio.gather(*(batcher.predict(j) for j in jobs), return_exceptions=True)
        await batcher.stop()
        return results

    good, bad, other = asyncio.run(scenario())
    assert isinstance(bad, ValueError)
    assert good[0, 1] == 0.1 and other[0, 1] == 0.3


def test_the_predict_thread_runs_the_model_on_the_configured_threads():
    from threadpoolctl import threadpool_info

    def openmp_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "openmp"]

    async def scenario():
        batcher = MicroBatcher(lambda rows: np.zeros((rows.count, 2)), max_rows=10, threads=1)
        try:
            return await batcher.call(openmp_threads)
        finally:
            await batcher.stop()

    assert set(asyncio.run(scenario())) == {1}  # scikit-learn (imported here) loads OpenMP


def test_the_fast_frame_is_the_frame_to_frame_builds(spec, bundle, multiclass_bundle):
    for model_bundle in (bundle, multiclass_bundle):
        served = ServedModel(model_bundle, max_instances=1000)
        records = make_records(model_bundle.spec, 300, seed=11)
        rows = served.schema.from_json(json.dumps({"instances": records}).encode())
        pd.testing.assert_frame_equal(served.frame(rows), to_frame(model_bundle.spec, records))
        np.testing.assert_allclose(
            served.predict_proba(rows), model_bundle.predict_proba(records), atol=1e-6, rtol=0
        )


def test_bool_stored_features_are_categorical_true_or_false(spec):
    data = spec.model_dump(mode="json")
    data["stored_features"]["is_member"] = {"type": "bool", "default": False}
    schema = InputSchema(ModelSpec.model_validate(data), max_instances=10)
    record = make_records(spec, 1, seed=12)[0]
    rows = schema.from_json(json.dumps({"instances": [record | {"is_member": True}]}).encode())
    assert rows.columns["is_member"].tolist() == [True]
    with pytest.raises(Refusal) as refused:
        schema.from_json(json.dumps({"instances": [record | {"is_member": "yes"}]}).encode())
    assert refused.value.details == [
        {"instance": 0, "field": "is_member", "problem": 'expected true or false, got string "yes"'}
    ]
    csv_body = ",".join([*spec.model_inputs, "is_member"]) + "\n"
    csv_body += ",".join([*(str(record[n]) for n in spec.model_inputs), "TRUE"]) + "\n"
    assert schema.from_csv(csv_body.encode()).columns["is_member"].tolist() == [True]


# -- start-up and model failures (in-process, with a loader the test controls) ----------------


@contextmanager
def serve_in_thread(app) -> Iterator[httpx.Client]:
    """The app on uvicorn in a thread of this process: the same server, a test-made loader."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{config.port}", timeout=10) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(10)


def wait_ready(http: httpx.Client, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while http.get("/ping").status_code != 200:
        assert time.monotonic() < deadline, "the model never became ready"
        time.sleep(0.02)


def test_ping_is_503_until_the_model_has_loaded(bundle, spec):
    release = threading.Event()

    def slow_load() -> ModelBundle:
        release.wait(10)
        return bundle

    with serve_in_thread(create_app(ServingSettings(), load=slow_load)) as http:
        assert http.get("/ping").status_code == 503
        assert http.get("/ping").json()["error"] == "model_not_ready"
        reply = http.post("/invocations", json={"instances": make_records(spec, 1, seed=13)})
        assert reply.status_code == 503
        release.set()
        wait_ready(http)
        assert (
            http.post("/invocations", json={"instances": make_records(spec, 1, seed=13)}).status_code == 200
        )


def test_the_loaded_model_is_frozen_out_of_the_cyclic_gc(bundle):
    app = create_app(ServingSettings(), load=lambda: bundle, load_before_serving=True)

    async def scenario() -> int:
        async with app.router.lifespan_context(app):
            return gc.get_freeze_count()

    gc.unfreeze()  # other in-process apps in this session may have frozen objects already
    try:
        assert gc.get_freeze_count() == 0
        assert asyncio.run(scenario()) > 0
    finally:
        gc.unfreeze()


def test_a_model_that_fails_to_load_keeps_ping_at_503_with_the_reason(tmp_path):
    with serve_in_thread(create_app(ServingSettings(model_dir=tmp_path))) as http:
        deadline = time.monotonic() + 10
        while "still loading" in http.get("/ping").json()["message"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        reply = http.get("/ping")
    assert reply.status_code == 503
    assert "failed to load" in reply.json()["message"]
    assert "model.joblib" in reply.json()["message"]


class PoisonedPipeline:
    """Scores like the real pipeline, but raises on a price of 666 (a model bug)."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.classes_ = pipeline.classes_

    def predict_proba(self, frame):
        if (frame["price"] == 666).any():
            raise ValueError("the model cannot handle a price of 666")
        return self.pipeline.predict_proba(frame)


def test_a_model_failure_is_a_500_json_error_and_a_424_model_error_for_sagemaker(bundle, spec):
    poisoned = ModelBundle(spec=spec, version="poisoned", pipeline=PoisonedPipeline(bundle.pipeline))
    record = make_records(spec, 1, seed=14)[0]
    with serve_in_thread(create_app(ServingSettings(), load=lambda: poisoned)) as http:
        wait_ready(http)
        reply = http.post("/invocations", json={"instances": [record | {"price": 666}]})
        assert reply.status_code == 500
        assert reply.json()["error"] == "model_error"
        assert "price of 666" in reply.json()["message"]

        front = http.post(
            "/endpoints/purchase-propensity/invocations", json={"instances": [record | {"price": 666}]}
        )
        assert front.status_code == 424
        assert front.headers["x-amzn-errortype"] == "ModelError"
        assert front.json()["OriginalStatusCode"] == 500
        assert "price of 666" in front.json()["OriginalMessage"]

        assert http.post("/invocations", json={"instances": [record]}).status_code == 200


# -- boto3's sagemaker-runtime client, pointed at the server ----------------------------------


@pytest.fixture(scope="module")
def runtime(server):
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=server,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_boto3_invoke_endpoint_reaches_the_server(runtime, spec, bundle):
    records = make_records(spec, 3, seed=15)
    reply = runtime.invoke_endpoint(
        EndpointName="inferline-purchase-propensity",
        ContentType="application/json",
        Accept="application/json",
        Body=json.dumps({"instances": records}).encode(),
    )
    assert reply["ContentType"] == "application/json"
    assert reply["InvokedProductionVariant"] == "AllTraffic"
    scores = json.loads(reply["Body"].read())["scores"]
    np.testing.assert_allclose(scores, positive_scores(bundle, records), atol=1e-6)

    csv_reply = runtime.invoke_endpoint(
        EndpointName="inferline-purchase-propensity", ContentType="text/csv", Body=to_csv(spec, records)
    )
    np.testing.assert_allclose(json.loads(csv_reply["Body"].read())["scores"], scores, atol=1e-6)


def test_boto3_gets_a_model_error_carrying_the_containers_400(runtime, spec):
    """As on SageMaker: a 4xx from the container is a ModelError with OriginalStatusCode."""
    record = make_records(spec, 1, seed=16)[0]
    del record["country"]
    with pytest.raises(runtime.exceptions.ModelError) as raised:
        runtime.invoke_endpoint(
            EndpointName="inferline-purchase-propensity",
            ContentType="application/json",
            Body=json.dumps({"instances": [record]}).encode(),
        )
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400
    original = json.loads(error["OriginalMessage"])
    assert original["details"] == [{"instance": 0, "field": "country", "problem": "missing"}]
    assert "Received client error (400)" in error["Error"]["Message"]


# -- settings, entry points and the container image -------------------------------------------


def test_settings_come_from_sagemakers_environment_then_flags():
    env = {
        "SM_MODEL_DIR": "/models/a",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
        "SAGEMAKER_BIND_TO_PORT": "9000",
    }
    settings = ServingSettings.from_env(env, port=8081, host=None)
    assert (str(settings.model_dir), settings.workers, settings.port, settings.host) == (
        "/models/a",
        3,
        8081,
        "127.0.0.1",
    )
    assert ServingSettings.from_env({}).port == 8080
    assert ServingSettings.from_env({}).workers == (os.cpu_count() or 1)  # one per vCPU
    assert str(ServingSettings.from_env({}).model_dir) == "/opt/ml/model"
    with pytest.raises(SettingsError, match="SAGEMAKER_MODEL_SERVER_WORKERS"):
        ServingSettings.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "many"})


def test_serve_script_runs_the_server_module():
    serve = SERVING / "serve"
    assert os.access(serve, os.X_OK)
    text = serve.read_text()
    assert text.startswith("#!/bin/sh")
    assert "-m model_artifacts.serving" in text
    reply = subprocess.run(
        [str(serve), "serve", "--help"], cwd=REPO, env=os.environ | {"PYTHON": sys.executable},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert reply.returncode == 0, reply.stderr
    assert "--model-dir" in reply.stdout


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (SERVING / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_dockerfile_runs_serve_on_8080_from_the_repo_root():
    instructions = dockerfile_instructions()
    values = {}
    for name, value in instructions:
        values.setdefault(name.upper(), []).append(value)
    assert values["EXPOSE"] == ["8080"]
    assert json.loads(values["ENTRYPOINT"][-1]) == ["serve"]
    assert json.loads(values["CMD"][-1]) == ["serve"]
    assert any(v.startswith("BASE_IMAGE=nvidia/cuda:") for v in values["ARG"])
    assert values["FROM"][0] == "${BASE_IMAGE}"
    copied = []
    for value in values["COPY"]:
        parts = [p for p in value.split() if not p.startswith("--")]
        copied += parts[:-1]
    assert copied, "the Dockerfile copies nothing"
    for source in copied:
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which does not exist"
    for needed in ("functions/inferline", "model_artifacts/serving", "model_artifacts/bundle.py"):
        assert any(needed.startswith(c.rstrip("/")) for c in copied), f"{needed} is not copied"


def test_the_image_copies_every_module_the_server_training_and_jobs_import():
    """model_artifacts modules imported, transitively, by what runs in the image (the server,
    training, evaluation, monitoring): each one copied (a missing one fails only in the image)."""
    import ast

    copied = [p for name, value in dockerfile_instructions() if name.upper() == "COPY"
              for p in [q for q in value.split() if not q.startswith("--")][:-1]]  # fmt: skip
    entry = [*SERVING.glob("*.py"), REPO / "model_artifacts/train.py", REPO / "model_artifacts/evaluate.py",
             *(REPO / "model_artifacts/monitoring").glob("*.py")]  # fmt: skip
    seen, todo = set(), list(entry)
    while todo:
        path = todo.pop()
        if path in seen or not path.exists():
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("model_artifacts"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                target = REPO / (name.replace(".", "/") + ".py")
                package = REPO / name.replace(".", "/") / "__init__.py"
                todo += [p for p in (target, package) if p.exists()]
    for path in sorted(seen):
        source = str(path.relative_to(REPO))
        assert any(source == c or source.startswith(c.rstrip("/") + "/") for c in copied), (
            f"{source} is imported in the image but not copied by the Dockerfile"
        )


def test_container_requirements_are_the_locked_versions():
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = {(p["name"], p["version"]) for p in lock["package"]}
    pinned = {}
    for line in (SERVING / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)\s*(;.*)?", line)
            assert match, f"not an exact pin: {line}"
            name, version = match.group(1).lower(), match.group(2)
            assert (name, version) in locked, f"{name}=={version} is not the version in uv.lock"
            pinned[name] = version
    for needed in (
        "scikit-learn",
        "numpy",
        "pandas",
        "joblib",
        "scipy",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "pydantic",
        "boto3",  # the monitoring job reads S3
        "matplotlib",  # the monitoring report's charts
    ):
        assert needed in pinned, f"{needed} is missing from the container requirements"
    for not_needed in ("moto", "aws-lambda-powertools", "aws-cdk-lib"):
        assert not_needed not in pinned


def test_several_workers_each_serve_and_stop_together(model_dir, bundle, spec):
    """--workers N: N processes on SO_REUSEPORT sockets; SIGTERM stops every one of them."""
    records = make_records(spec, 16, seed=5)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "model_artifacts.serving", "--model-dir", str(model_dir),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "no worker became ready"
            time.sleep(0.1)
        workers = subprocess.run(["pgrep", "-f", "multiprocessing.spawn", "-P", str(proc.pid)],
                                 capture_output=True, text=True).stdout.split()
        assert len(workers) == 2
        with ThreadPoolExecutor(8) as pool:  # fresh connections: the kernel spreads them
            replies = list(pool.map(lambda r: httpx.post(f"{url}/invocations", json={"instances": [r]},
                                                         timeout=30), records[:16]))
        assert [r.status_code for r in replies] == [200] * 16
        got = [r.json()["scores"][0] for r in replies]
        assert np.allclose(got, positive_scores(bundle, records[:16]), atol=1e-9)
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "a worker outlived the server"
