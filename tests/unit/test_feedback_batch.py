"""Feedback on batch predictions: a batch prediction id names its (job, chunk, row), and the
chunk's index item in the predictions table says whether that row was predicted, by which
model version and when; the ground truth then lands where it does for online predictions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from test_batch import HEADER, MODEL, good_row
from test_batch import batch as batch  # noqa: F401  (the fixture, shared)

from feedback.logic import feedback
from inferline import jobs
from inferline.ground_truth import latest_actuals
from inferline.prediction_log import (
    batch_index_key,
    batch_prediction_id,
    parse_batch_prediction_id,
    prediction_record,
    write_prediction_log,
)
from inferline.spec import load_spec


def send(batch, items: list[dict]) -> list[dict]:  # noqa: F811
    reply = feedback(
        json.dumps({"feedback": items}), batch.aws.predictions, batch.aws.s3, batch.aws.data_bucket, load_spec
    )
    assert reply["statusCode"] == 200, reply
    return json.loads(reply["body"])["results"]


def ground_truth(batch, pid: str) -> dict:  # noqa: F811
    """The newest ground-truth line for `pid`, as monitoring and retraining read it."""
    s3, bucket = batch.aws.s3, batch.aws.data_bucket
    lines = [
        json.loads(line)
        for obj in s3.list_objects_v2(Bucket=bucket, Prefix=f"ground-truth/model={MODEL}/")["Contents"]
        for line in s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().splitlines()
    ]
    return latest_actuals(lines)[pid]


@pytest.fixture
def job(batch):  # noqa: F811
    rows = [good_row(i) for i in range(8)]
    rows[3] = "u1,cheap,books,mobile,US,2,3,5,"  # row 5: refused, never predicted
    batch.with_chunks(rows=3)
    job = batch.run((HEADER + "\n" + "\n".join(rows) + "\n").encode())
    assert job["status"] == jobs.SUCCEEDED and job["rows_ok"] == 7
    return job


def test_feedback_on_a_batch_prediction_is_recorded_beside_its_log(batch, job):  # noqa: F811
    results = batch.output(job, "results")
    first, later = results[0]["prediction_id"], results[-1]["prediction_id"]  # chunks 0 and 2
    assert parse_batch_prediction_id(later) == (job["job_id"], 2, 9)

    statuses = send(
        batch, [{"prediction_id": first, "actual": "purchase"}, {"prediction_id": later, "actual": 0}]
    )
    assert [r["status"] for r in statuses] == ["recorded", "recorded"]
    truth = ground_truth(batch, first)
    assert truth["prediction_id"] == first and truth["actual"] == 1 and truth["model"] == MODEL
    assert truth["model_version"] == "v7" and truth["predicted_at"] == job["started_at"]
    # the same join key as the prediction's log line
    item = batch.aws.predictions.get_item(Key={"prediction_id": first})["Item"]
    assert item["actual"] == 1 and item["source"] == "batch" and item["model_version"] == "v7"
    assert int(item["expires_at"]) > datetime.now(UTC).timestamp()

    # again: like feedback on an online prediction, nothing changes unless the actual does
    statuses = send(batch, [{"prediction_id": first, "actual": 1}, {"prediction_id": later, "actual": 1}])
    assert [r["status"] for r in statuses] == ["unchanged", "updated"]
    assert ground_truth(batch, later)["actual"] == 1


def test_batch_looking_ids_that_name_no_prediction_are_unknown(batch, job):  # noqa: F811
    job_id = job["job_id"]
    unknown = [
        batch_prediction_id(job_id, 1, 5),  # a refused row (errors.csv)
        batch_prediction_id(job_id, 0, 6),  # a predicted row (of chunk 1), under chunk 0
        batch_prediction_id(job_id, 2, 99),  # past the end of its chunk
        batch_prediction_id(job_id, 0, 1),  # the header
        batch_prediction_id(job_id, 7, 2),  # no such chunk
        batch_prediction_id("no-such-job", 0, 2),
        batch_index_key(job_id, 0),  # the index item itself
        "batch-oops",
    ]
    statuses = send(batch, [{"prediction_id": pid, "actual": 1} for pid in unknown])
    assert [r["status"] for r in statuses] == ["unknown_prediction_id"] * len(unknown)
    assert "Contents" not in batch.aws.s3.list_objects_v2(
        Bucket=batch.aws.data_bucket, Prefix="ground-truth/"
    )


def test_online_and_batch_ids_in_one_request(batch, job):  # noqa: F811
    now = datetime.now(UTC)
    online = prediction_record(
        prediction_id="3f1c0d1e-0000-4000-8000-000000000001",
        request_id="req-1",
        model=MODEL,
        model_version="v7",
        created_at=now,
        ttl_days=90,
        request={"user_id": "u1"},
        features={},
        entity_known=True,
        output={"label": "purchase", "score": 0.9},
        latency_ms=3.0,
    )
    write_prediction_log(batch.aws.predictions, batch.aws.s3, batch.aws.data_bucket, [online])
    pid = batch.output(job, "results")[1]["prediction_id"]
    statuses = send(
        batch,
        [
            {"prediction_id": online["prediction_id"], "actual": 1},
            {"prediction_id": pid, "actual": "no_purchase"},
            {"prediction_id": "3f1c0d1e-0000-4000-8000-000000000002", "actual": 1},
            {"prediction_id": pid, "actual": "purchase"},  # a later item sees the earlier one
            {"prediction_id": pid, "actual": "maybe"},
        ],
    )
    assert [r["status"] for r in statuses] == [
        "recorded",
        "recorded",
        "unknown_prediction_id",
        "updated",
        "invalid_actual",
    ]
    assert ground_truth(batch, online["prediction_id"])["actual"] == 1
    assert ground_truth(batch, pid)["actual"] == 1  # the later item's line wins
    objects = batch.aws.s3.list_objects_v2(Bucket=batch.aws.data_bucket, Prefix="ground-truth/")
    assert objects["KeyCount"] == 1, "one object per feedback request and model"


def test_batch_prediction_ids_decode_to_job_chunk_and_row():
    job_id = "5c1e8529-8653-4b9b-b6a2-b3f66ffe03e0"
    pid = batch_prediction_id(job_id, 12, 600002)
    assert len(pid) <= 64, "feedback accepts ids of at most 64 characters"
    assert parse_batch_prediction_id(pid) == (job_id, 12, 600002)
    assert parse_batch_prediction_id(job_id) is None
    assert parse_batch_prediction_id(batch_index_key(job_id, 12)) is None
