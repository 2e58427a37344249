"""One monthly cycle on the running local platform: shifted traffic and its ground truth
through the API, `inferline retrain` promoting a contender and swapping the model server
while requests keep coming (none may fail), and a rollback serving version 1 again."""

from __future__ import annotations

import json
import time

from test_online_api import GOOD, PREDICT, wait_until_served

from inferline.resources import model_package_group
from inferline.workflow import RETRAIN_STEPS
from local_runtime.cli import rollback
from local_runtime.config import LocalConfig
from local_runtime.demo_retrain import MODEL, SteadyTraffic, send_traffic, shifted_traffic
from local_runtime.retrain import LocalRetraining, local_services
from retrain import registry


def local_config(target) -> LocalConfig:
    ports = json.loads((target.home / "run" / "endpoints.json").read_text())
    port = lambda url: int(url.rsplit(":", 1)[1])  # noqa: E731
    return LocalConfig(
        home=target.home,
        api_port=port(ports["api"]),
        serving_port=port(ports["sagemaker"]),
        aws_port=port(ports["aws"]),
        api_key=target.api_key,
    )


def served_version(target) -> str:
    with target.client() as api:
        return api.post(PREDICT, json={"instances": [GOOD]}).json()["model_version"]


def test_retraining_promotes_a_better_model_without_failing_a_request_and_rollback_restores_it(local_target):
    assert wait_until_served(local_target) == 200  # another test may have killed the model server
    config = local_config(local_target)
    before = served_version(local_target)

    requests, actuals = shifted_traffic(3000)
    with local_target.client() as api:
        assert send_traffic(api, requests, actuals) == 3000

    with SteadyTraffic(local_target.url, local_target.api_key, GOOD) as traffic:
        result = LocalRetraining(local_services(config)).run(MODEL)
        version = result.state["dataset"]["contender_version"]
        deadline = time.monotonic() + 15
        while version not in traffic.versions and time.monotonic() < deadline:
            time.sleep(0.1)  # the traffic keeps going a moment after the swap

    assert result.outcome == "promoted", result.notification.get("message")
    assert result.path == RETRAIN_STEPS
    assert traffic.sent > 20 and traffic.failed == 0
    assert traffic.versions == {before, version}  # both answered, neither failed
    assert served_version(local_target) == version
    svc = local_services(config)
    package = registry.find(svc.sagemaker, model_package_group(config.prefix, MODEL), version)
    assert package["approval"] == registry.APPROVED
    # Predictions from the new version are logged with it, so quality compares per version.
    with local_target.client() as api:
        pid = api.post(PREDICT, json={"instances": [GOOD]}).json()["predictions"][0]["prediction_id"]
    logs = svc.s3.list_objects_v2(Bucket=svc.data_bucket, Prefix=f"predictions/model={MODEL}/")["Contents"]
    records = (
        json.loads(line)
        for obj in logs
        for line in svc.s3.get_object(Bucket=svc.data_bucket, Key=obj["Key"])["Body"].iter_lines()
    )
    assert next(r for r in records if r["prediction_id"] == pid)["model_version"] == version

    rollback(config, MODEL)
    assert served_version(local_target) == before
    assert registry.find(svc.sagemaker, model_package_group(config.prefix, MODEL), version)["approval"] == (
        registry.REJECTED
    )
