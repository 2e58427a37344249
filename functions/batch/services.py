"""What the batch logic works with: AWS clients, resource names and limits, passed in as one
value so handlers build it from the environment and tests build it on moto."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batch.settings import SEVEN_DAYS
from inferline.spec import ModelSpec, load_spec


@dataclass(frozen=True)
class Services:
    s3: Any
    bucket: str  # the data bucket: uploads, parts, results
    jobs: Any  # boto3 Table
    ses: Any
    email_sender: str
    outbox_dir: str | None = None
    sqs: Any = None
    chunks_queue_url: str | None = None
    features: Any = None  # boto3 Table
    predictions: Any = None  # boto3 Table
    runtime: Any = None  # sagemaker-runtime client
    resource_prefix: str = "inferline"
    link_expiry_seconds: int = SEVEN_DAYS
    chunk_max_rows: int = 50_000
    chunk_max_bytes: int = 8 * 1024 * 1024
    load_spec: Callable[[str], ModelSpec] = load_spec
    # the chunk worker: rows per endpoint request, requests in flight, and the stored
    # features this process keeps for the job it is working on (None: fetched per chunk)
    endpoint_max_rows: int = 5_000
    endpoint_concurrency: int = 2
    feature_cache: Any = None
