"""The online API over HTTP only: what a client of a deployed inferline sees.

Runs against the local runtime by default, or a deployed stack given INFERLINE_API_URL and
INFERLINE_API_KEY; tests that stop processes or read local files run locally only.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import boto3
import pytest

pytestmark = pytest.mark.integration

MODEL = "purchase-propensity"
PREDICT = f"/v1/models/{MODEL}/predict"
GOOD = {
    "user_id": "u00012",
    "price": 29.99,
    "category": "books",
    "device": "mobile",
    "country": "GB",
    "session_pages": 7,
    "hour_of_day": 20,
    "discount_pct": 15.0,
    "email": "ada@example.com",
}


def test_predict_returns_one_answer_per_instance(target):
    instances = [GOOD, {k: v for k, v in GOOD.items() if k != "email"} | {"user_id": "never-seen"}]
    with target.client() as api:
        reply = api.post(PREDICT, json={"instances": instances})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == MODEL and body["model_version"]
    assert len(body["predictions"]) == 2
    for p in body["predictions"]:
        uuid.UUID(p["prediction_id"])
        assert p["label"] in ("purchase", "no_purchase")
        assert 0.0 <= p["score"] <= 1.0
        assert p["label"] == ("purchase" if p["score"] >= 0.5 else "no_purchase")
    assert body["predictions"][0]["prediction_id"] != body["predictions"][1]["prediction_id"]


def test_optional_fields_may_be_left_out(target):
    without_email = {k: v for k, v in GOOD.items() if k != "email"}
    with target.client() as api:
        reply = api.post(PREDICT, json={"instances": [without_email]})
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["predictions"]) == 1


def test_a_bad_request_lists_every_field_problem(target):
    bad = GOOD | {"price": -5, "category": "cars", "hour_of_day": 25}
    del bad["device"]
    with target.client() as api:
        reply = api.post(PREDICT, json={"instances": [GOOD, bad]})
    assert reply.status_code == 400
    body = reply.json()
    assert body["error"] == "invalid_request"
    assert {(d["instance"], d["field"]) for d in body["details"]} == {
        (1, "price"),
        (1, "category"),
        (1, "hour_of_day"),
        (1, "device"),
    }


BAD_BODIES = {
    "wrong type": ({"instances": [GOOD | {"session_pages": "seven"}]}, 400, "session_pages"),
    "out of range": ({"instances": [GOOD | {"discount_pct": 95}]}, 400, "discount_pct"),
    "missing field": ({"instances": [{k: v for k, v in GOOD.items() if k != "price"}]}, 400, "price"),
    "unknown category": ({"instances": [GOOD | {"category": "cars"}]}, 400, "category"),
    "unknown field": ({"instances": [GOOD | {"colour": "red"}]}, 400, "colour"),
    "not a list": ({"instances": GOOD}, 400, "instances"),
    "too many instances": ({"instances": [GOOD] * 101}, 413, "at most 100"),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
def test_every_bad_input_gets_a_4xx_that_names_the_problem(target, case):
    payload, status, named = BAD_BODIES[case]
    with target.client() as api:
        reply = api.post(PREDICT, json=payload)
    assert reply.status_code == status, reply.text
    assert named in reply.text


@pytest.mark.parametrize(
    ("content", "status", "named"),
    [(b"", 400, "empty"), (b"{not json", 400, "not valid JSON"), (b"x" * 200_000, 413, "too large")],
    ids=["empty body", "non-JSON", "huge body"],
)
def test_raw_bodies_that_are_not_requests_get_4xx(target, content, status, named):
    with target.client() as api:
        reply = api.post(PREDICT, content=content, headers={"Content-Type": "application/json"})
    assert reply.status_code == status, reply.text
    assert named in reply.text.replace("_", " ")


def test_unknown_model_is_404(target):
    with target.client() as api:
        reply = api.post("/v1/models/no-such-model/predict", json={"instances": [GOOD]})
    assert reply.status_code == 404
    assert reply.json()["error"] in ("unknown_model", "not_found")


def test_the_api_key_is_required(target):
    with target.client(api_key=None) as api:
        missing = api.post(PREDICT, json={"instances": [GOOD]})
    with target.client(api_key="wrong-key") as api:
        wrong = api.post(PREDICT, json={"instances": [GOOD]})
        feedback = api.post("/v1/feedback", json={"feedback": [{"prediction_id": "x", "actual": 1}]})
    if target.local:
        assert (missing.status_code, wrong.status_code, feedback.status_code) == (401, 403, 403)
    else:  # API Gateway answers 403 for a missing key too
        assert missing.status_code in (401, 403) and wrong.status_code == 403


def test_feedback_joins_to_the_logged_prediction(target):
    with target.client() as api:
        ids = [
            p["prediction_id"]
            for p in api.post(PREDICT, json={"instances": [GOOD, GOOD]}).json()["predictions"]
        ]
        items = [
            {"prediction_id": ids[0], "actual": 1},
            {"prediction_id": ids[1], "actual": "no_purchase"},
            {"prediction_id": str(uuid.uuid4()), "actual": 1},
        ]
        first = api.post("/v1/feedback", json={"feedback": items})
        again = api.post("/v1/feedback", json={"feedback": items})
        bad = api.post("/v1/feedback", json={"feedback": [{"prediction_id": ids[0]}]})
    assert first.status_code == 200
    assert [r["status"] for r in first.json()["results"]] == ["recorded", "recorded", "unknown_prediction_id"]
    assert [r["status"] for r in again.json()["results"]] == [
        "unchanged",
        "unchanged",
        "unknown_prediction_id",
    ]
    assert bad.status_code == 400 and "actual" in bad.text


# -- local only: the whole stack against the model itself, and failure of the model server ----


def test_scores_through_the_stack_equal_the_model_on_the_enriched_record(local_target):
    import pandas as pd

    from inferline.spec import load_spec
    from model_artifacts.bundle import ModelBundle

    spec = load_spec(MODEL)
    users = pd.read_csv(local_target.home / "demo-data" / "users.csv").set_index("user_id")
    stored = users.loc[GOOD["user_id"], list(spec.stored_features)].to_dict()
    record = {k: GOOD[k] for k in spec.model_inputs if k in GOOD} | stored
    bundle = ModelBundle.load(local_target.home / "models" / MODEL / "current")
    expected = float(bundle.predict_proba([record])[0, -1])
    with local_target.client() as api:
        body = api.post(PREDICT, json={"instances": [GOOD]}).json()
    assert body["model_version"] == bundle.version
    assert body["predictions"][0]["score"] == pytest.approx(expected, abs=1e-9)


def test_the_logs_hold_no_pii(local_target):
    from local_runtime.config import LocalConfig

    with local_target.client() as api:
        pid = api.post(PREDICT, json={"instances": [GOOD]}).json()["predictions"][0]["prediction_id"]
    endpoints = json.loads((local_target.home / "run" / "endpoints.json").read_text())
    session = dict(
        endpoint_url=endpoints["aws"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    prefix = LocalConfig().prefix
    item = (
        boto3.resource("dynamodb", **session)
        .Table(f"{prefix}-predictions")
        .get_item(Key={"prediction_id": pid})["Item"]
    )
    assert item["request"]["email"] == "*****"
    s3 = boto3.client("s3", **session)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=f"{prefix}-data", Prefix="predictions/")["Contents"]]
    logged = "".join(s3.get_object(Bucket=f"{prefix}-data", Key=k)["Body"].read().decode() for k in keys)
    assert pid in logged and GOOD["email"] not in logged
    for log in [local_target.home / "up.log", *(local_target.home / "logs").glob("*.log")]:
        assert GOOD["email"] not in log.read_text(errors="replace"), log


def test_model_server_down_is_503_with_a_retry_hint_and_feedback_still_works(local_target):
    """Runs last in this module: it kills the model server (the local endpoint then replaces
    it, as SageMaker replaces a failed instance)."""
    pid_file = local_target.home / "run" / f"serving-{MODEL}.pid"
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    with local_target.client() as api:
        reply = api.post(PREDICT, json={"instances": [GOOD]})
        invalid = api.post(PREDICT, json={"instances": [GOOD | {"price": -1}]})
        feedback = api.post("/v1/feedback", json={"feedback": [{"prediction_id": "x", "actual": 1}]})
    assert reply.status_code == 503
    assert reply.json()["error"] == "model_unavailable" and reply.headers["retry-after"] == "5"
    assert invalid.status_code == 400  # bad input never needed the model
    assert feedback.status_code == 200
    assert wait_until_served(local_target) == 200


def wait_until_served(target, timeout: float = 90) -> int:
    """The status of the first predict that is not a 503, waiting while the model server restarts."""
    deadline = time.monotonic() + timeout
    with target.client() as api:
        while True:
            status = api.post(PREDICT, json={"instances": [GOOD]}).status_code
            if status != 503 or time.monotonic() > deadline:
                return status
            time.sleep(0.5)
