"""The demo data generator: seeded, valid against the spec, learnable, and drift-able."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from inferline.spec import ModelSpec, load_spec
from model_artifacts import demo_data
from model_artifacts.demo_data import (
    generate_requests,
    generate_training_frame,
    generate_users,
    purchase_probability,
    write_demo_files,
)


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return load_spec("purchase-propensity")


@pytest.fixture(scope="module")
def users() -> list[dict]:
    return generate_users(300, seed=1)


@pytest.fixture(scope="module")
def frames() -> dict[float, pd.DataFrame]:
    return {drift: generate_training_frame(4000, seed=5, drift=drift) for drift in (0.0, 1.0)}


def request_problems(spec: ModelSpec, record: dict) -> list[str]:
    """Every way `record` breaks the spec's request field rules (checked here, independently
    of the platform's validator)."""
    problems = [f"unexpected field {name}" for name in record if name not in spec.request.fields]
    for name, field in spec.request.fields.items():
        if name not in record:
            if field.required:
                problems.append(f"{name}: missing")
            continue
        value = record[name]
        ok_type = {
            "string": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
            "bool": isinstance(value, bool),
        }[field.type]
        if not ok_type:
            problems.append(f"{name}: {value!r} is not a {field.type}")
            continue
        if field.min is not None and value < field.min:
            problems.append(f"{name}: {value} < {field.min}")
        if field.max is not None and value > field.max:
            problems.append(f"{name}: {value} > {field.max}")
        if field.allowed is not None and value not in field.allowed:
            problems.append(f"{name}: {value!r} not allowed")
        if field.max_length is not None and len(value) > field.max_length:
            problems.append(f"{name}: longer than {field.max_length}")
    return problems


def test_same_seed_gives_identical_output(users):
    assert generate_users(300, seed=1) == users
    assert generate_requests(500, seed=2, users=users) == generate_requests(500, seed=2, users=users)
    pd.testing.assert_frame_equal(
        generate_training_frame(800, seed=3, drift=0.5),
        generate_training_frame(800, seed=3, drift=0.5),
    )


def test_different_seed_gives_different_output(users):
    assert generate_users(300, seed=2) != users
    assert generate_requests(500, seed=2, users=users) != generate_requests(500, seed=3, users=users)
    a, b = generate_training_frame(800, seed=3), generate_training_frame(800, seed=4)
    assert not a["price"].equals(b["price"])
    assert not a["purchased"].equals(b["purchased"])


@pytest.mark.parametrize("drift", [0.0, 0.5, 1.0])
def test_every_request_satisfies_the_spec(spec, users, drift):
    requests = generate_requests(3000, seed=4, drift=drift, users=users)
    assert len(requests) == 3000
    problems = [f"row {i}: {p}" for i, r in enumerate(requests) for p in request_problems(spec, r)]
    assert problems == []
    # every allowed value shows up, so the demo exercises the whole vocabulary
    for name, field in spec.request.fields.items():
        if field.allowed:
            assert {r[name] for r in requests} == set(field.allowed), name
    # JSON round trip: what a client sends is what we generated
    assert json.loads(json.dumps(requests[:50])) == requests[:50]


def test_the_spec_check_itself_catches_bad_requests(spec, users):
    good = generate_requests(1, seed=4, users=users)[0]
    assert request_problems(spec, good) == []
    for bad in (
        {**good, "device": "phone"},
        {**good, "hour_of_day": 24},
        {**good, "session_pages": 2.5},
        {**good, "price": -1.0},
        {k: v for k, v in good.items() if k != "price"},
    ):
        assert request_problems(spec, bad), bad


def test_stored_features_fit_the_spec(spec, users):
    assert [u["user_id"] for u in users[:3]] == ["u00000", "u00001", "u00002"]
    for user in users:
        assert set(user) == {"user_id", *spec.stored_features}
        for name, feature in spec.stored_features.items():
            value = user[name]
            assert isinstance(value, int if feature.type == "int" else int | float), (name, value)
            assert feature.min is None or value >= feature.min
            assert feature.max is None or value <= feature.max
    assert len({u["user_id"] for u in users}) == len(users)


def test_some_requests_name_unknown_users_and_email_is_optional(users):
    requests = generate_requests(6000, seed=6, users=users)
    known = {u["user_id"] for u in users}
    unknown = [r["user_id"] for r in requests if r["user_id"] not in known]
    assert 0.03 < len(unknown) / len(requests) < 0.07
    assert all(re.fullmatch(r"u\d{5,}", u) for u in unknown)
    emails = [r["email"] for r in requests if "email" in r]
    assert 0.7 < len(emails) / len(requests) < 0.9
    assert all(re.fullmatch(r"user\d+@example\.com", e) for e in emails)


def test_training_frame_columns_and_unknown_user_defaults(spec, frames):
    frame = frames[0.0]
    assert set(spec.model_inputs) | {spec.target.name, "event_time"} <= set(frame.columns)
    assert "email" not in frame.columns  # PII is never trained on
    assert set(frame["purchased"].unique()) == {0, 1}
    times = pd.to_datetime(frame["event_time"], utc=True)
    assert (times.dt.hour == frame["hour_of_day"]).all()
    assert frame["event_time"].str.endswith("Z").all()
    assert pd.to_datetime(frames[1.0]["event_time"]).min() > times.max()  # drift is later
    unknown = frame["user_id"].str[1:].astype(int) >= 400
    assert 0.03 < unknown.mean() < 0.07  # 4000 rows -> 400 known users, u00000..u00399
    defaults = {n: f.default for n, f in spec.stored_features.items()}
    assert (frame.loc[unknown, list(defaults)] == pd.Series(defaults)).all().all()


def test_label_rate_and_learnability(frames):
    for drift, frame in frames.items():
        rate = frame["purchased"].mean()
        assert 0.15 < rate < 0.35, (drift, rate)
        # the true probability ranks the labels well but not perfectly: learnable, noisy
        auc = roc_auc_score(frame["purchased"], purchase_probability(frame, drift))
        assert 0.72 < auc < 0.92, (drift, auc)


def test_drift_shifts_inputs_and_the_relationship(frames):
    base, shifted = frames[0.0], frames[1.0]
    assert shifted["price"].median() > 1.15 * base["price"].median()
    assert (shifted["device"] == "mobile").mean() > (base["device"] == "mobile").mean() + 0.15
    assert shifted["session_pages"].mean() < base["session_pages"].mean() - 1
    assert (shifted["country"] == "IN").mean() > (base["country"] == "IN").mean() + 0.05
    assert shifted["days_since_last_visit"].mean() > base["days_since_last_visit"].mean()
    # concept drift: the same rows are scored differently by the drifted world
    old, new = purchase_probability(shifted, 0.0), purchase_probability(shifted, 1.0)
    assert np.mean(np.abs(old - new)) > 0.05
    assert np.corrcoef(old, new)[0, 1] < 0.95


def test_drift_must_be_between_zero_and_one():
    with pytest.raises(ValueError, match="drift"):
        generate_users(10, seed=0, drift=1.5)


def test_write_demo_files_and_cli(spec, tmp_path):
    paths = write_demo_files(tmp_path / "a", rows=600, users=80, seed=9, drift=0.2, requests=40)
    train = pd.read_csv(paths["train"])
    users = pd.read_csv(paths["users"])
    requests = [json.loads(line) for line in paths["requests"].read_text().splitlines()]
    assert len(train) == 600 and len(users) == 80 and len(requests) == 40
    assert list(users.columns) == ["user_id", *spec.stored_features]
    assert set(train["user_id"]) - set(users["user_id"])  # some unknown users in training too
    # known users' stored features in train.csv are the feature store's values
    joined = train.merge(users, on="user_id", suffixes=("", "_store"))
    for name in spec.stored_features:
        assert np.allclose(joined[name], joined[f"{name}_store"]), name
    assert all(request_problems(spec, r) == [] for r in requests)

    demo_data.main(
        [
            "--out",
            str(tmp_path / "b"),
            "--rows",
            "600",
            "--users",
            "80",
            "--seed",
            "9",
            "--drift",
            "0.2",
            "--requests",
            "40",
        ]
    )
    for name in ("train.csv", "users.csv", "requests.jsonl"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()
