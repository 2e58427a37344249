"""The batch Lambda handlers: SQS events in, partial batch responses out, settings checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_batch import HEADER, good_row, sent_mail
from test_batch import batch as batch  # noqa: F401  (the fixture, shared)

from batch import handlers
from inferline import jobs
from inferline.resources import local_environment
from local_runtime.online_workflow import context_for


def sqs_event(*bodies: str) -> dict:
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


@pytest.fixture
def wired(batch, monkeypatch):  # noqa: F811
    services = batch.services
    for name in ("split_services", "chunk_services", "dead_letter_services"):
        monkeypatch.setattr(handlers, name, lambda services=services: services)
    return batch


def test_poison_records_fail_alone_and_good_ones_go_through(wired):
    key = wired.upload((HEADER + "\n" + good_row(1) + "\n").encode())
    upload_event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": wired.aws.data_bucket}, "object": {"key": key}},
            }
        ]
    }
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent"}
    reply = handlers.split(
        sqs_event(json.dumps(test_event), "{not json", json.dumps(upload_event)), context_for("split")
    )
    assert reply == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    (chunk_body,) = wired.messages()

    missing = json.loads(chunk_body) | {"key": f"uploads/{wired.aws.prefix}/gone.csv"}
    no_job = json.loads(chunk_body) | {"job_id": "nope"}
    reply = handlers.chunk(
        sqs_event("[]", json.dumps(missing), json.dumps(no_job), chunk_body), context_for("chunk")
    )
    failed = [f["itemIdentifier"] for f in reply["batchItemFailures"]]
    assert failed == ["m0", "m1", "m2"]
    job = jobs.get_job(wired.services.jobs, json.loads(chunk_body)["job_id"])
    assert job["status"] == jobs.SUCCEEDED and job["rows_ok"] == 1
    assert len(sent_mail()) == 1

    reply = handlers.dead_letter(sqs_event(json.dumps(no_job), "junk"), context_for("dead_letter"))
    assert reply == {"batchItemFailures": []}


def test_a_missing_setting_fails_the_cold_start_naming_it():
    env = os.environ | local_environment("test") | {"AWS_DEFAULT_REGION": "us-east-1"}
    env["_HANDLER"] = "batch.handlers.chunk"
    env.pop("EMAIL_SENDER", None)
    out = subprocess.run(
        [sys.executable, "-c", "import batch.handlers"], env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "missing or invalid environment: EMAIL_SENDER" in out.stderr
    env |= {"EMAIL_SENDER": "a@b.example", "_HANDLER": "batch.handlers.split"}
    out = subprocess.run(
        [sys.executable, "-c", "import batch.handlers"], env=env, capture_output=True, text=True
    )
    assert "CHUNKS_QUEUE_URL" in out.stderr
    env["CHUNKS_QUEUE_URL"] = "http://localhost/q"
    code = (
        "import sys, batch.handlers\n"
        "print(sorted(m for m in ('sklearn', 'pandas', 'numpy', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_handlers_running_at_once_keep_their_failures_apart(monkeypatch):
    """The local runtime runs the handlers in threads of one process: one handler's failed
    record must not show up in (or vanish from) another call's response. Here a call runs
    inside another's record, the most a shared processor could interleave."""
    inner: list[dict] = []

    def record(rec) -> None:
        if rec.body == "poison":
            raise ValueError("poison")
        if rec.body == "nested":
            inner.append(handlers.chunk(sqs_event("poison", "fine"), context_for("chunk")))

    monkeypatch.setattr(handlers, "_chunk_record", record)
    monkeypatch.setattr(handlers.metrics, "namespace", "test")  # the inner call flushes metrics
    outer = handlers.chunk(sqs_event("nested", "fine"), context_for("chunk"))
    assert outer == {"batchItemFailures": []}
    assert inner == [{"batchItemFailures": [{"itemIdentifier": "m0"}]}]
