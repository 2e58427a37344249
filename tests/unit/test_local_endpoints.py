"""The local SageMaker endpoints (local_runtime/sagemaker_local.py) with real model server
processes: blue/green updates, a silent rollback when the new server never gets healthy, the
front door forwarding invocations, and a dead server replaced."""

from __future__ import annotations

import io
import json
import tarfile
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from starlette.testclient import TestClient

from inferline.resources import endpoint_name
from inferline.spec import load_spec
from local_runtime.bootstrap import bootstrap_model
from local_runtime.config import LocalConfig
from local_runtime.sagemaker_local import LOCAL_IMAGE, LocalEndpoints, router_app
from model_artifacts.demo_data import generate_training_frame
from model_artifacts.train import train

MODEL = "purchase-propensity"
SPEC = load_spec(MODEL)


def settle(endpoints: LocalEndpoints, name: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while (described := endpoints.describe(name))["EndpointStatus"] == "Updating":
        assert time.monotonic() < deadline, "the endpoint never settled"
        time.sleep(0.2)
    return described


@pytest.fixture
def endpoints(aws, tmp_path):
    sm = boto3.client("sagemaker")
    frame = generate_training_frame(1500, seed=3)
    for version in ("1", "2"):
        train(SPEC, frame, version=version, params={"max_iter": 5}).save(tmp_path / version)
    configs = {
        v: bootstrap_model(aws.prefix, MODEL, v, tmp_path / v, LOCAL_IMAGE, sm, aws.s3) for v in ("1", "2")
    }
    # A version whose model.tar.gz holds no loadable model: its server can never get healthy.
    broken = io.BytesIO()
    with tarfile.open(fileobj=broken, mode="w:gz") as tar:
        data = b"not a model"
        info = tarfile.TarInfo("model.joblib")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    aws.s3.put_object(
        Bucket=f"{aws.prefix}-artifacts", Key="models/broken/model.tar.gz", Body=broken.getvalue()
    )
    sm.create_model(
        ModelName="broken",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={
            "Image": LOCAL_IMAGE,
            "ModelDataUrl": f"s3://{aws.prefix}-artifacts/models/broken/model.tar.gz",
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName="broken",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "broken",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    config = LocalConfig(home=tmp_path / "home")
    for folder in ("logs", "run"):
        config.path(folder).mkdir(parents=True)
    local = LocalEndpoints(config, sm, aws.s3)
    local.ready_timeout = 8  # the broken version's server never answers /ping
    local.create(endpoint_name(aws.prefix, MODEL), MODEL, configs["1"])
    yield local, configs
    local.stop_all()


def invoke(client: TestClient, name: str, rows: list[dict]):
    return client.post(f"/endpoints/{name}/invocations", json={"instances": rows})


def test_updates_swap_servers_and_a_server_that_never_gets_healthy_is_a_silent_rollback(endpoints, aws):
    local, configs = endpoints
    name = endpoint_name(aws.prefix, MODEL)
    rows = generate_training_frame(3, seed=1)[SPEC.model_inputs].to_dict("records")  # feature records
    with TestClient(router_app(local)) as client:
        assert invoke(client, name, rows).json()["model_version"] == "1"
        first = local.endpoints[name].backend

        local.update(name, "broken")
        with pytest.raises(ValueError, match="already updating"):
            local.update(name, configs["2"])  # one update at a time, as SageMaker
        described = settle(local, name)
        assert described["EndpointStatus"] == "InService"
        assert described["EndpointConfigName"] == configs["1"]  # rolled back, silently
        reply = invoke(client, name, rows)
        assert reply.status_code == 200, reply.text
        assert reply.json()["model_version"] == "1"

        with pytest.raises(ClientError):
            local.update(name, "no-such-config")
        local.update(name, configs["2"])  # the failed call left nothing locked
        assert settle(local, name)["EndpointConfigName"] == configs["2"]
        assert invoke(client, name, rows).json()["model_version"] == "2"
        first.process.wait(timeout=30)  # the old server drained and stopped

        # A server that dies is replaced on the same config; requests fail until it answers.
        local.endpoints[name].backend.process.kill()
        local.endpoints[name].backend.process.wait()
        assert invoke(client, name, rows).status_code == 503
        deadline = time.monotonic() + 60
        while (reply := invoke(client, name, rows)).status_code != 200:
            assert time.monotonic() < deadline, "the dead model server was never replaced"
            time.sleep(0.3)
        assert reply.json()["model_version"] == "2"
        unknown = client.post("/endpoints/nope/invocations", content=json.dumps({"instances": rows}))
        assert unknown.status_code == 400 and unknown.headers["x-amzn-ErrorType"] == "ValidationError"
