"""Fixtures shared by the test tiers: an in-process moto AWS with inferline's resources."""

from __future__ import annotations

import os
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from inferline import aws as aws_clients
from inferline.resources import bucket_name, local_environment, table_name
from local_runtime.bootstrap import bootstrap

PREFIX = "test"


@dataclass
class AwsResources:
    prefix: str
    features: object  # boto3 Table
    predictions: object
    s3: object
    data_bucket: str


@pytest.fixture
def aws(monkeypatch) -> AwsResources:
    """moto in-process, bootstrapped from inferline.resources, with the Lambda environment set."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "inferline-tests",
        "POWERTOOLS_METRICS_NAMESPACE": "inferline-tests",
    } | local_environment(PREFIX)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        aws_clients.reset()
        bootstrap(PREFIX, boto3.client("dynamodb"), boto3.client("s3"))
        dynamodb = boto3.resource("dynamodb")
        yield AwsResources(
            prefix=PREFIX,
            features=dynamodb.Table(table_name(PREFIX, "features")),
            predictions=dynamodb.Table(table_name(PREFIX, "predictions")),
            s3=boto3.client("s3"),
            data_bucket=bucket_name(PREFIX, "data"),
        )
    aws_clients.reset()
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
