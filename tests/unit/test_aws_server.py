"""The embedded AWS as `inferline up` starts it: moto's server with its package listing read
once and its per-request access log off; it must serve exactly as moto does."""

from __future__ import annotations

import boto3
from embedded_aws import running_embedded_aws


def test_the_embedded_aws_serves_s3_and_logs_no_line_per_request(tmp_path):
    with (tmp_path / "aws.log").open("w") as log, running_embedded_aws(log) as url:
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")  # fmt: skip
        s3.create_bucket(Bucket="embedded-aws-test")
        for i in range(20):
            s3.put_object(Bucket="embedded-aws-test", Key=f"k{i}", Body=b"x" * i)
        bodies = [s3.get_object(Bucket="embedded-aws-test", Key=f"k{i}")["Body"].read() for i in range(20)]
        assert bodies == [b"x" * i for i in range(20)]
        sqs = boto3.client("sqs", endpoint_url=url, region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local")  # fmt: skip
        assert sqs.create_queue(QueueName="q")["QueueUrl"].endswith("/q")  # another service routes too
    logged = (tmp_path / "aws.log").read_text()
    assert "GET /embedded-aws-test/k" not in logged, "no access log line per request (plain moto writes one)"


def test_its_package_listing_is_read_once_and_equals_motos(monkeypatch):
    from moto import backends

    real = list(backends.list_of_moto_modules())
    import local_runtime.aws_server as server

    monkeypatch.setattr(backends, "list_of_moto_modules", backends.list_of_moto_modules)
    monkeypatch.setattr(server, "moto_main", lambda argv: None)
    server.main([])
    assert sorted(backends.list_of_moto_modules()) == real and "s3" in backends.list_of_moto_modules()


def test_conditional_writes_are_serialized_as_the_real_services_make_them_atomic(monkeypatch):
    import importlib

    import local_runtime.aws_server as server

    originals = {}
    for module_name, class_name, methods in server.ATOMIC_WRITES.values():
        owner = getattr(importlib.import_module(module_name), class_name)
        for name in methods:
            originals[(owner, name)] = getattr(owner, name)
            monkeypatch.setattr(owner, name, originals[(owner, name)])  # restored after the test
    server.serialize_conditional_writes()
    for (owner, name), original in originals.items():
        wrapped = getattr(owner, name)
        assert getattr(wrapped, "serialized", False) and wrapped.__wrapped__ is original, (owner, name)
