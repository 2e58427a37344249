"""AWS clients, made in one place, lazily, once per process (so a Lambda reuses them across
invocations) and resettable (so tests and the local runtime can point them elsewhere).

Endpoints come from boto3's own settings: AWS_ENDPOINT_URL for the embedded AWS locally, and
AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME for the local model server.
"""

from __future__ import annotations

from functools import cache

import boto3
from botocore.config import Config

CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=20,
)


# Presigned S3 links in SigV4 everywhere (boto3 still signs SigV2 links in us-east-1).
S3_CONFIG = CONFIG.merge(Config(signature_version="s3v4"))


@cache
def client(service: str):
    return boto3.client(service, config=S3_CONFIG if service == "s3" else CONFIG)


@cache
def resource(service: str):
    return boto3.resource(service, config=CONFIG)


def table(name: str):
    return resource("dynamodb").Table(name)


def reset() -> None:
    """Forget every client, so the next call reads the environment again."""
    client.cache_clear()
    resource.cache_clear()
