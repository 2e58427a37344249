"""Feedback under concurrency, against the embedded AWS as `inferline up` runs it (its own
process, a threaded server): 50 identical feedbacks for one prediction at once write it once,
and 50 alternating ones end with the same actual in DynamoDB and S3, in every one of 20 trials
each. And a failure between the two stores is repaired by the retry."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config
from embedded_aws import running_embedded_aws

from inferline.ground_truth import MARKER, latest_actuals, record_feedback
from inferline.prediction_log import prediction_record, write_prediction_log
from inferline.resources import bucket_name, table_name
from inferline.spec import load_spec
from local_runtime.bootstrap import bootstrap

MODEL, PREFIX = "purchase-propensity", "concurrency"
SENDERS, TRIALS = 50, 20


@pytest.fixture(scope="module")
def embedded_aws():
    with running_embedded_aws() as url:
        session = boto3.session.Session(aws_access_key_id="l", aws_secret_access_key="l",
                                        region_name="us-east-1")  # fmt: skip
        kwargs = {"endpoint_url": url, "config": Config(max_pool_connections=SENDERS + 10)}
        bootstrap(PREFIX, session.client("dynamodb", **kwargs), session.client("s3", **kwargs))
        yield session, kwargs


def stores(session, kwargs):
    """A thread's own table and S3 client (boto3 resources are not shared across threads)."""
    table = session.resource("dynamodb", **kwargs).Table(table_name(PREFIX, "predictions"))
    return table, session.client("s3", **kwargs)


def predicted(pid: str) -> dict:
    """A logged online prediction's record."""
    return prediction_record(
        prediction_id=pid, request_id=f"r-{pid}", model=MODEL, model_version="1",
        created_at=datetime.now(UTC),
        ttl_days=90, request={}, features={}, entity_known=True, output={"label": "purchase", "score": 0.7},
        latency_ms=1.0,
    )  # fmt: skip


def predict(session, kwargs, pid: str) -> None:
    table, s3 = stores(session, kwargs)
    write_prediction_log(table, s3, bucket_name(PREFIX, "data"), [predicted(pid)])


_senders = threading.local()  # each sender thread's own table and client, made once


@pytest.fixture(scope="module")
def pool():
    with ThreadPoolExecutor(SENDERS) as senders:
        yield senders


def send_at_once(session, kwargs, pool, pid: str, actuals: list) -> list[str]:
    """Every actual sent by its own thread, all released together; the statuses they got."""
    barrier = threading.Barrier(len(actuals))

    def send(actual) -> str:
        if not hasattr(_senders, "stores"):
            _senders.stores = stores(session, kwargs)
        table, s3 = _senders.stores
        barrier.wait()
        items = [{"prediction_id": pid, "actual": actual}]
        (result,) = record_feedback(table, s3, bucket_name(PREFIX, "data"), items, load_spec)
        return result["status"]

    return list(pool.map(send, actuals))


def both_stores(session, kwargs, pid: str) -> tuple[dict, list[dict]]:
    """The prediction's DynamoDB item, and every ground-truth line logged for it."""
    table, s3 = stores(session, kwargs)
    item = table.get_item(Key={"prediction_id": pid}, ConsistentRead=True)["Item"]
    data = bucket_name(PREFIX, "data")
    lines = [
        json.loads(line)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=data, Prefix="ground-truth/")
        for obj in page.get("Contents", [])
        for line in s3.get_object(Bucket=data, Key=obj["Key"])["Body"].read().splitlines()
    ]
    return item, [line for line in lines if line["prediction_id"] == pid]


def test_the_same_feedback_sent_50_times_at_once_is_written_once(embedded_aws, pool):
    session, kwargs = embedded_aws
    for trial in range(TRIALS):
        pid = f"same-{trial}"
        predict(session, kwargs, pid)
        statuses = Counter(send_at_once(session, kwargs, pool, pid, [1] * SENDERS))
        assert statuses == {"recorded": 1, "unchanged": SENDERS - 1}, (trial, statuses)
        item, lines = both_stores(session, kwargs, pid)
        assert len(lines) == 1 and lines[0]["actual"] == int(item["actual"]) == 1, (trial, lines)
        assert MARKER not in item


def test_alternating_feedback_sent_at_once_ends_the_same_in_both_stores(embedded_aws, pool):
    session, kwargs = embedded_aws
    for trial in range(TRIALS):
        pid = f"alternating-{trial}"
        predict(session, kwargs, pid)
        statuses = Counter(send_at_once(session, kwargs, pool, pid, [i % 2 for i in range(SENDERS)]))
        item, lines = both_stores(session, kwargs, pid)
        newest = latest_actuals(lines)[pid]
        assert newest["actual"] == int(item["actual"]) and newest["seq"] == item["actual_seq"], (
            trial,
            statuses,
        )
        assert MARKER not in item
        # exactly the writes DynamoDB accepted were logged
        assert len(lines) == statuses["recorded"] + statuses["updated"], (trial, statuses)
        assert statuses["recorded"] == 1 and sum(statuses.values()) == SENDERS


def logged_prediction(aws, pid: str) -> None:
    write_prediction_log(aws.predictions, aws.s3, aws.data_bucket, [predicted(pid)])


def lines_of(aws, pid: str) -> list[dict]:
    objects = aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix="ground-truth/").get("Contents", [])
    return [
        line
        for obj in objects
        for line in map(
            json.loads, aws.s3.get_object(Bucket=aws.data_bucket, Key=obj["Key"])["Body"].iter_lines()
        )
        if line["prediction_id"] == pid
    ]


def test_a_failed_s3_write_takes_the_dynamodb_write_back(aws, monkeypatch):
    """Both stores or neither: the accepted actual is taken back and the request fails; the
    retry records it in both."""
    from botocore.exceptions import ClientError

    logged_prediction(aws, "p1")
    record_feedback(
        aws.predictions, aws.s3, aws.data_bucket, [{"prediction_id": "p1", "actual": 1}], load_spec
    )
    real_put = aws.s3.put_object

    def failing_put(**kwargs):
        if kwargs["Key"].startswith("ground-truth/"):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "PutObject")
        return real_put(**kwargs)

    before = aws.predictions.get_item(Key={"prediction_id": "p1"})["Item"]
    monkeypatch.setattr(aws.s3, "put_object", failing_put)
    with pytest.raises(ClientError, match="injected"):
        record_feedback(
            aws.predictions, aws.s3, aws.data_bucket, [{"prediction_id": "p1", "actual": 0}], load_spec
        )
    monkeypatch.setattr(aws.s3, "put_object", real_put)
    after = aws.predictions.get_item(Key={"prediction_id": "p1"})["Item"]
    assert after == before, "the item is as it was: actual 1, its sequence, no marker"
    assert [line["actual"] for line in lines_of(aws, "p1")] == [1]

    send = [{"prediction_id": "p1", "actual": 0}]
    (retry,) = record_feedback(aws.predictions, aws.s3, aws.data_bucket, send,
                               load_spec)  # fmt: skip
    assert retry["status"] == "updated"
    item = aws.predictions.get_item(Key={"prediction_id": "p1"})["Item"]
    assert latest_actuals(lines_of(aws, "p1"))["p1"]["actual"] == item["actual"] == 0 and MARKER not in item


def test_a_killed_writers_marker_is_repaired_once_it_cannot_be_live(aws):
    """DynamoDB took the actual, and the writer was killed before S3 (a Lambda timeout): the next
    feedback within the grace period leaves it (the writer may be alive), after it logs it."""
    from inferline import ground_truth

    logged_prediction(aws, "p2")
    now = datetime.now(UTC)
    prediction = ground_truth._get_predictions(aws.predictions, ["p2"])["p2"]
    outcome, _ = ground_truth._claim(aws.predictions, prediction, 1, f"{now.isoformat()}#killed#00000", now)
    assert outcome == ground_truth.CLAIMED and lines_of(aws, "p2") == []

    send = [{"prediction_id": "p2", "actual": 1}]
    (soon,) = record_feedback(aws.predictions, aws.s3, aws.data_bucket, send,
                              load_spec, now=now + timedelta(seconds=5))  # fmt: skip
    assert soon["status"] == "unchanged" and lines_of(aws, "p2") == []
    later = now + ground_truth.MARKER_GRACE + timedelta(seconds=1)
    (repaired,) = record_feedback(aws.predictions, aws.s3, aws.data_bucket, send,
                                  load_spec, now=later)  # fmt: skip
    assert repaired["status"] == "unchanged"
    (line,) = lines_of(aws, "p2")
    item = aws.predictions.get_item(Key={"prediction_id": "p2"})["Item"]
    assert (line["actual"], line["seq"]) == (1, item["actual_seq"]) and MARKER not in item
