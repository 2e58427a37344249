"""Lambda's SQS event source mapping, on one machine: poll a queue, hand the handler the
same SQS event Lambda would, and delete only the messages it did not report as failed
(partial batch responses). A failed message becomes visible again and, after the queue's
maxReceiveCount, moves to its dead-letter queue, as in AWS."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from local_runtime.online_workflow import context_for

log = logging.getLogger("inferline.event_sources")


class SqsEventSource:
    def __init__(
        self,
        sqs,
        queue_url: str,
        queue_arn: str,
        handler: Callable[[dict, Any], Any],
        function_name: str,
        batch_size: int = 10,
        region: str = "us-east-1",
    ):
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.handler = handler
        self.function_name = function_name
        self.batch_size = batch_size
        self.region = region

    def poll_once(self, wait_seconds: int = 1) -> int:
        """Receive up to one batch, run the handler on it; returns how many messages came."""
        reply = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = reply.get("Messages", [])
        if not messages:
            return 0
        event = {"Records": [self._record(m) for m in messages]}
        try:
            result = self.handler(event, context_for(self.function_name)) or {}
        except Exception:  # Lambda failed as a whole: every message is retried
            log.exception("%s failed on a batch of %d", self.function_name, len(messages))
            return len(messages)
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + 10])
                ],
            )
        if failed:
            log.warning("%s reported %d failed message(s)", self.function_name, len(failed))
        return len(messages)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("polling %s failed", self.queue_url)
                time.sleep(1)

    def _record(self, message: dict) -> dict:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }


def start_event_sources(sources: list[SqsEventSource]) -> tuple[threading.Event, list[threading.Thread]]:
    stop = threading.Event()
    threads = [
        threading.Thread(target=s.run, args=(stop,), name=s.function_name, daemon=True) for s in sources
    ]
    for thread in threads:
        thread.start()
    return stop, threads
