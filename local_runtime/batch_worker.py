"""One more batch chunk worker, as its own process: the batch-chunk Lambda handler polling the
embedded chunks queue, as Lambda runs several instances of a function for one queue.

`inferline up` starts INFERLINE_BATCH_WORKERS of these (default 0: its own worker thread
alone) and the batch benchmark starts its own. Settings come from INFERLINE_* like `up`.

    python -m local_runtime.batch_worker
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from inferline.resources import queue_name
from local_runtime.config import LocalConfig


def main() -> int:
    config = LocalConfig()
    os.environ.update(config.lambda_environment())
    from local_runtime.up import local_client

    sqs = local_client(config, "sqs")
    urls = {
        q: sqs.get_queue_url(QueueName=queue_name(config.prefix, q))["QueueUrl"]
        for q in ("batch-chunks", "batch-uploads")
    }
    arn = sqs.get_queue_attributes(QueueUrl=urls["batch-chunks"], AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    os.environ.update(
        {
            "CHUNKS_QUEUE_URL": urls["batch-chunks"],
            "UPLOADS_QUEUE_URL": urls["batch-uploads"],
            "EMAIL_SENDER": config.email_sender,
            "OUTBOX_DIR": str(config.path("outbox")),
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": config.serving_url(),
        }
    )
    from batch import handlers
    from local_runtime.event_sources import SqsEventSource

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    source = SqsEventSource(sqs, urls["batch-chunks"], arn, handlers.chunk, "batch-chunk", batch_size=1)
    while not stop.is_set():
        try:
            source.poll_once()
        except Exception as exc:  # as the event source's own loop: log, wait, poll again
            print(f"polling failed: {exc!r}", flush=True)
            time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
