"""Deploy, check, verify and roll back: the endpoint moves to a new Model and EndpointConfig
through a blue/green UpdateEndpoint with auto-rollback alarms, and the workflow reads back
which config the endpoint actually runs, because SageMaker rolls back silently.

Every function takes a `sagemaker` client: boto3's in AWS; locally the runtime's, whose
endpoint calls reach the local model servers (local_runtime/sagemaker_local.py).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from inferline.endpoints import VERSION_ENV, resource_name

# Blue/green: canary one instance when there are at least two, else all at once; the new
# fleet bakes before the old one goes, and an alarm in either phase rolls back.
CANARY_WAIT_SECONDS = 300
TERMINATION_WAIT_SECONDS = 600


class PromotionRolledBack(RuntimeError):
    """The endpoint does not run the config the deployment asked for: SageMaker (or the local
    runtime) rolled the update back. The error name is what the state machine sees."""


def start(
    sm,
    *,
    endpoint: str,
    version: str,
    model_data_url: str,
    image: str,
    role_arn: str,
    alarms: list[str],
    run_id: str,
) -> dict[str, Any]:
    """Create the version's Model and an EndpointConfig like the current one but for it, then
    UpdateEndpoint (blue/green, auto-rollback). Returns the deployment to check and verify."""
    described = sm.describe_endpoint(EndpointName=endpoint)
    current_name = described["EndpointConfigName"]
    model_name = resource_name(endpoint, f"v{version}", run_id)
    config_name = resource_name(endpoint, f"v{version}", run_id)
    deployment = {
        "endpoint": endpoint,
        "endpoint_config": config_name,
        "previous_endpoint_config": current_name,
        "model_name": model_name,
        "version": str(version),
    }
    if current_name == config_name or described["EndpointStatus"] in ("Updating", "SystemUpdating"):
        # A retry after this update was already started: the check and verify steps follow it.
        return deployment
    current = sm.describe_endpoint_config(EndpointConfigName=current_name)
    template = sm.describe_model(ModelName=current["ProductionVariants"][0]["ModelName"])
    model_args: dict[str, Any] = {
        "ModelName": model_name,
        "ExecutionRoleArn": role_arn,
        "PrimaryContainer": {
            "Image": image,
            "ModelDataUrl": model_data_url,
            "Environment": (template["PrimaryContainer"].get("Environment") or {})
            | {VERSION_ENV: str(version)},
        },
    }
    # The new Model runs as the stack's did: same network isolation and VPC.
    for key in ("EnableNetworkIsolation", "VpcConfig"):
        if template.get(key):  # (an empty VpcConfig means none)
            model_args[key] = template[key]
    _create_once(sm.create_model, **model_args)
    variants = [
        {k: v for k, v in variant.items() if k in _VARIANT_KEYS} | {"ModelName": model_name}
        for variant in current["ProductionVariants"]
    ]
    config_args: dict[str, Any] = {"EndpointConfigName": config_name, "ProductionVariants": variants}
    for key in ("DataCaptureConfig", "KmsKeyId"):
        if current.get(key):
            config_args[key] = current[key]
    _create_once(sm.create_endpoint_config, **config_args)
    instances = sum(int(v.get("InitialInstanceCount", 1)) for v in variants)
    routing: dict[str, Any] = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": CANARY_WAIT_SECONDS}
    if instances >= 2:
        routing = {
            "Type": "CANARY",
            "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
            "WaitIntervalInSeconds": CANARY_WAIT_SECONDS,
        }
    deployment_config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": TERMINATION_WAIT_SECONDS,
        }
    }
    if alarms:  # SageMaker wants at least one alarm here, or no rollback configuration
        deployment_config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    sm.update_endpoint(
        EndpointName=endpoint, EndpointConfigName=config_name, DeploymentConfig=deployment_config
    )
    return deployment


def _create_once(create, **kwargs: Any) -> None:
    """Create a named resource; one left by an earlier attempt of the same step is reused."""
    try:
        create(**kwargs)
    except ClientError as exc:
        message = str(exc).lower()
        if "already exist" not in message and "cannot create" not in message:
            raise


_VARIANT_KEYS = (
    "VariantName", "InitialInstanceCount", "InstanceType", "InitialVariantWeight", "AcceleratorType",
    "VolumeSizeInGB", "ModelDataDownloadTimeoutInSeconds", "ContainerStartupHealthCheckTimeoutInSeconds",
    "ServerlessConfig", "ManagedInstanceScaling", "RoutingConfig",
)  # fmt: skip


def status(sm, endpoint: str) -> dict[str, Any]:
    described = sm.describe_endpoint(EndpointName=endpoint)
    return {
        "status": described["EndpointStatus"],
        "endpoint_config": described["EndpointConfigName"],
        "failure_reason": described.get("FailureReason"),
    }


def verify(sm, deployment: dict[str, Any]) -> dict[str, Any]:
    """Succeeds only if the endpoint is InService on the deployment's config."""
    now = status(sm, deployment["endpoint"])
    if now["status"] != "InService" or now["endpoint_config"] != deployment["endpoint_config"]:
        raise PromotionRolledBack(
            f"endpoint {deployment['endpoint']} is {now['status']} on {now['endpoint_config']}, "
            f"not on {deployment['endpoint_config']} (version {deployment['version']}): the update "
            f"was rolled back{': ' + now['failure_reason'] if now.get('failure_reason') else ''}"
        )
    return {"serving_version": deployment["version"], "endpoint_config": now["endpoint_config"]}
