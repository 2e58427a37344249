"""What a SageMaker endpoint serves now (config, model, image, model data, inferline version),
and the names inferline gives the SageMaker resources it creates. Retraining (to deploy and
roll back) and monitoring (to know the serving version) both read them.

Every function takes a `sagemaker` client: boto3's in AWS; locally the runtime's, whose
endpoint calls reach the local model servers (local_runtime/sagemaker_local.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from typing import Any

from inferline.resources import split_s3_uri

# The environment variable a Model's container carries its inferline version in.
VERSION_ENV = "INFERLINE_MODEL_VERSION"
MAX_NAME = 63
METRICS_FILE = "metrics.json"  # written by model_artifacts/train.py beside model.joblib


def resource_name(*parts: str) -> str:
    """A SageMaker resource name (<= 63 chars, [a-zA-Z0-9-]); long names keep a hash suffix."""
    name = re.sub(r"[^a-zA-Z0-9-]+", "-", "-".join(parts)).strip("-")
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9].rstrip('-')}-{digest}"


def champion(sm, endpoint: str, s3=None) -> dict[str, Any]:
    """What the endpoint serves now: its config, model, image, model data and version.

    A Model this workflow created carries its version in its environment; the one the stack
    was first deployed with does not, so its version is read from the metrics.json training
    wrote into its model.tar.gz (when an s3 client is given)."""
    described = sm.describe_endpoint(EndpointName=endpoint)
    config_name = described["EndpointConfigName"]
    config = sm.describe_endpoint_config(EndpointConfigName=config_name)
    model_name = config["ProductionVariants"][0]["ModelName"]
    container = sm.describe_model(ModelName=model_name)["PrimaryContainer"]
    version = (container.get("Environment") or {}).get(VERSION_ENV)
    if version is None and s3 is not None and container.get("ModelDataUrl"):
        version = archive_version(s3, container["ModelDataUrl"])
    return {
        "endpoint": endpoint,
        "endpoint_config": config_name,
        "model_name": model_name,
        "image": container["Image"],
        "model_data_url": container.get("ModelDataUrl"),
        "version": version,
    }


def archive_version(s3, model_data_url: str) -> str | None:
    """The version in a model.tar.gz's metrics.json (streamed, not stored), or None."""
    bucket, key = split_s3_uri(model_data_url)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        with tarfile.open(fileobj=body, mode="r|gz") as tar:
            for member in tar:
                if member.isfile() and member.name.rsplit("/", 1)[-1] == METRICS_FILE:
                    version = json.load(tar.extractfile(member)).get("version")
                    return str(version) if version is not None else None
    except (tarfile.TarError, ValueError):
        return None
    finally:
        body.close()
    return None
