"""The local runtime's SQS event source and batch bootstrap, on moto in-process."""

import json
from urllib.parse import unquote_plus

import boto3

from inferline.resources import bucket_name, queue_name
from local_runtime.bootstrap import bootstrap_batch
from local_runtime.event_sources import SqsEventSource


def make_queue(sqs, name, visibility=0, dlq_arn=None, max_receive=2):
    attributes = {"VisibilityTimeout": str(visibility)}
    if dlq_arn:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive}
        )
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def test_uploads_under_the_prefix_are_announced_on_the_uploads_queue(aws):
    sqs, ses = boto3.client("sqs"), boto3.client("ses")
    queues = bootstrap_batch(aws.prefix, sqs, aws.s3, ses, "batch@example.com")
    assert set(queues) == {"batch-uploads", "batch-chunks"}
    assert queues["batch-chunks"]["url"].endswith(queue_name(aws.prefix, "batch-chunks"))
    redrive = json.loads(
        sqs.get_queue_attributes(QueueUrl=queues["batch-chunks"]["url"], AttributeNames=["RedrivePolicy"])[
            "Attributes"
        ]["RedrivePolicy"]
    )
    assert redrive["deadLetterTargetArn"] == queues["batch-chunks"]["dlq_arn"]
    assert "batch@example.com" in ses.list_identities()["Identities"]

    bucket = bucket_name(aws.prefix, "data")
    aws.s3.put_object(Bucket=bucket, Key="uploads/purchase-propensity/a+b.csv", Body=b"x\n")
    aws.s3.put_object(Bucket=bucket, Key="predictions/other.jsonl", Body=b"{}\n")
    aws.s3.put_object(Bucket=bucket, Key="uploads/purchase-propensity/notes.txt", Body=b"x")
    bodies = [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=queues["batch-uploads"]["url"], MaxNumberOfMessages=10).get(
            "Messages", []
        )
    ]
    keys = [r["s3"]["object"]["key"] for b in bodies for r in b.get("Records", [])]
    assert [unquote_plus(k) for k in keys] == ["uploads/purchase-propensity/a+b.csv"]  # URL-encoded


def test_only_messages_reported_as_failed_come_back_and_end_in_the_dlq(aws):
    sqs = boto3.client("sqs")
    dlq_url, dlq_arn = make_queue(sqs, "t-dlq")
    url, arn = make_queue(sqs, "t", dlq_arn=dlq_arn, max_receive=2)
    for body in ("good-1", "poison", "good-2"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    seen = []

    def handler(event, context):
        assert all(r["eventSource"] == "aws:sqs" and r["eventSourceARN"] == arn for r in event["Records"])
        seen.extend(r["body"] for r in event["Records"])
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "poison"
            ]
        }

    source = SqsEventSource(sqs, url, arn, handler, "test")
    for _ in range(4):
        source.poll_once(wait_seconds=0)
    assert sorted(set(seen)) == ["good-1", "good-2", "poison"]
    assert seen.count("good-1") == 1 and seen.count("poison") == 2
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == ["poison"]


def test_a_handler_that_raises_leaves_every_message_for_a_retry(aws):
    sqs = boto3.client("sqs")
    url, arn = make_queue(sqs, "t2")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    calls = []

    def handler(event, context):
        calls.append(len(event["Records"]))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return {"batchItemFailures": []}

    source = SqsEventSource(sqs, url, arn, handler, "test")
    assert source.poll_once(wait_seconds=0) == 1
    assert source.poll_once(wait_seconds=0) == 1
    assert source.poll_once(wait_seconds=0) == 0
    assert calls == [1, 1]
