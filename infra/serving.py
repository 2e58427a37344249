"""Serving: one SageMaker real-time endpoint per model, running inferline's serving container.

Per model: a Model (the container image plus the trained model.tar.gz), an EndpointConfig
(GPU instance type by default, data capture to S3) and an Endpoint whose updates are
blue/green with automatic rollback on the endpoint's own error and latency alarms, plus
target-tracking autoscaling on invocations per instance.
"""

from __future__ import annotations

import re

from aws_cdk import (
    Aws,
    CfnParameter,
    Duration,
    Fn,
    IgnoreMode,
)
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from inferline.resources import endpoint_name, model_version_prefix
from infra.config import GRAVITON_FAMILY, REPO_ROOT, Config, ConfigError, ModelData
from infra.nag import acknowledge, arn_of, default_policy
from infra.storage import DATA_CAPTURE_PREFIX, Storage

VARIANT = "AllTraffic"
DOCKERFILE = "model_artifacts/serving/Dockerfile"  # built with the repository root as context
# The Dockerfile's own ignore file (BuildKit's <Dockerfile>.dockerignore) says what the image
# copies; CDK stages and hashes only that, so an edit elsewhere never rebuilds the image.
DOCKERIGNORE = DOCKERFILE + ".dockerignore"
# Without that file: at least never stage what no image needs.
IMAGE_EXCLUDES = [
    ".git", ".venv", "node_modules", "cdk.out", ".inferline", ".pytest_cache", ".ruff_cache",
    "**/__pycache__", "**/*.pyc", "*.egg-info", "build", "dist", "tests", "bench", "docs",
    "infra",
]  # fmt: skip
# NVIDIA GPU families (g4dn, g5, g6, p3, p4d, p5...) get the Dockerfile's CUDA base image; any
# other instance gets the slim CPU base the Dockerfile offers through its BASE_IMAGE arg.
GPU_FAMILY = re.compile(r"^ml\.[gp]\d")
CPU_BASE_IMAGE = "python:3.12-slim"
PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
SAGEMAKER_AUTOSCALING_ROLE = (
    "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)
# Blue/green: how long the new fleet bakes at full traffic before the old one is removed,
# and how long a canary step waits; alarms during either roll the update back.
BAKE_SECONDS = 600
CANARY_WAIT_SECONDS = 300


class ModelEndpoint(Construct):
    """One model's SageMaker Model, EndpointConfig, Endpoint, rollback alarms and autoscaling."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        model: str,
        image_uri: str,
        role: iam.Role,
        storage: Storage,
    ) -> None:
        super().__init__(scope, construct_id)
        self.model = model
        self.endpoint_name = endpoint_name(config.prefix, model)
        self.endpoint_arn = (
            f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
            f"endpoint/{self.endpoint_name}"
        )

        model_data_url = self._model_data(config.model_data.get(model, ModelData()), role)
        sm_model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image_uri, model_data_url=model_data_url
            ),
            # The server needs no network: SageMaker fetches the model and forwards requests.
            enable_network_isolation=True,
        )
        # The role's policy (image pull, model data) must exist before SageMaker uses it.
        sm_model.node.add_dependency(role.node.find_child("DefaultPolicy"))

        capture = None
        if config.data_capture_percent:
            capture = sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=True,
                initial_sampling_percentage=config.data_capture_percent,
                destination_s3_uri=f"s3://{storage.data.bucket_name}/{DATA_CAPTURE_PREFIX}{model}",
                capture_options=[
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
                ],
                capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
                    json_content_types=["application/json"]
                ),
            )
        # No explicit names on the model and config: a new model version replaces both, and
        # the endpoint (which keeps its name) moves to them by a blue/green update.
        endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT,
                    model_name=sm_model.attr_model_name,
                    initial_instance_count=config.instance_count,
                    instance_type=config.instance_type,
                    initial_variant_weight=1.0,
                )
            ],
            data_capture_config=capture,
        )
        # No KmsKeyId: GPU instances such as g4dn have NVMe instance storage, which SageMaker
        # refuses a KMS key for (and encrypts in hardware).

        self.errors_alarm = cloudwatch.Alarm(
            self,
            "ErrorsAlarm",
            alarm_name=f"{self.endpoint_name}-errors",
            alarm_description=f"{model}: the endpoint answered with errors two minutes in a row "
            "(4xx here means the model failed on a validated request). Rolls back a deployment.",
            metric=cloudwatch.MathExpression(
                expression="e4 + e5",
                using_metrics={
                    "e4": self.metric("Invocation4XXErrors", "Sum"),
                    "e5": self.metric("Invocation5XXErrors", "Sum"),
                },
                label="endpoint errors",
                period=Duration.minutes(1),
            ),
            threshold=1,
            evaluation_periods=2,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.latency_alarm = cloudwatch.Alarm(
            self,
            "LatencyAlarm",
            alarm_name=f"{self.endpoint_name}-latency",
            alarm_description=f"{model}: p99 model latency over {config.model_latency_alarm_ms} "
            "ms for three minutes. Rolls back a deployment.",
            metric=self.metric("ModelLatency", "p99"),
            threshold=config.model_latency_alarm_ms * 1000,  # ModelLatency is in microseconds
            evaluation_periods=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        # SageMaker's guardrails docs: the execution role must be able to describe the
        # auto-rollback alarms (CloudFormation's deploys and retraining's both name them).
        role.add_to_policy(iam.PolicyStatement(
            actions=["cloudwatch:DescribeAlarms"], resources=[a.alarm_arn for a in self.alarms]
        ))

        if config.instance_count >= 2:
            # One instance first (at most half the fleet, as SageMaker requires), then the rest.
            routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="CANARY",
                canary_size=sagemaker.CfnEndpoint.CapacitySizeProperty(
                    type="INSTANCE_COUNT", value=1
                ),
                wait_interval_in_seconds=CANARY_WAIT_SECONDS,
            )
        else:
            # A canary must be at most half the fleet: with one instance, shift all at once
            # and rely on the baking period to roll back.
            routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="ALL_AT_ONCE", wait_interval_in_seconds=0
            )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.endpoint_name,
            endpoint_config_name=endpoint_config.attr_endpoint_config_name,
            deployment_config=sagemaker.CfnEndpoint.DeploymentConfigProperty(
                blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                    traffic_routing_configuration=routing,
                    termination_wait_in_seconds=BAKE_SECONDS,
                    maximum_execution_timeout_in_seconds=3600,
                ),
                auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                    alarms=[
                        sagemaker.CfnEndpoint.AlarmProperty(alarm_name=a.alarm_name)
                        for a in (self.errors_alarm, self.latency_alarm)
                    ]
                ),
            ),
        )

        if config.autoscaling:
            target = appscaling.ScalableTarget(
                self,
                "ScalableTarget",
                service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
                resource_id=f"endpoint/{self.endpoint_name}/variant/{VARIANT}",
                scalable_dimension="sagemaker:variant:DesiredInstanceCount",
                min_capacity=config.instance_count,
                max_capacity=config.max_instance_count,
                # The service-linked role (created by AWS on first use), not a new role.
                role=iam.Role.from_role_arn(
                    self,
                    "AutoscalingRole",
                    f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/{SAGEMAKER_AUTOSCALING_ROLE}",
                ),
            )
            target.node.add_dependency(self.endpoint)
            target.scale_to_track_metric(
                "InvocationsPerInstance",
                target_value=config.invocations_per_instance,
                predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
                scale_out_cooldown=Duration.minutes(1),
                scale_in_cooldown=Duration.minutes(5),
            )

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        return [self.errors_alarm, self.latency_alarm]

    def metric(self, name: str, statistic: str, *, period: Duration | None = None,
               namespace: str = "AWS/SageMaker") -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=name,
            dimensions_map={"EndpointName": self.endpoint_name, "VariantName": VARIANT},
            statistic=statistic,
            period=period or Duration.minutes(1),
        )

    def _model_data(self, data: ModelData, role: iam.Role) -> str:
        """The model.tar.gz URL, and read access to exactly that object for the role.

        Keeps the object's and its bucket's ARNs: retraining's evaluation job reads this first
        champion too (later versions live under models/<model>/ in the artifacts bucket)."""
        if data.local_path is not None:
            asset = s3_assets.Asset(self, "ModelData", path=str(data.local_path))
            url = asset.s3_object_url
            object_arn = asset.bucket.arn_for_objects(asset.s3_object_key)
            self.model_data_bucket_arn = asset.bucket.bucket_arn
        elif data.s3_url is not None:
            bucket, key = data.s3_bucket_and_key  # type: ignore[misc]
            url = data.s3_url
            object_arn = f"arn:{Aws.PARTITION}:s3:::{bucket}/{key}"
            self.model_data_bucket_arn = f"arn:{Aws.PARTITION}:s3:::{bucket}"
        else:
            parameter = CfnParameter(
                self,
                "ModelDataUrl",
                type="String",
                allowed_pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+\.tar\.gz$",
                constraint_description="an s3://bucket/key URL of a model.tar.gz",
                description=f"S3 URL of the trained model.tar.gz that the {self.model} "
                "endpoint serves (or synth with -c modelData.<model>=<path or s3 URL>)",
            )
            parameter.override_logical_id(model_data_parameter(self.model))
            url = parameter.value_as_string
            bucket_and_key = Fn.select(1, Fn.split("s3://", url))
            object_arn = f"arn:{Aws.PARTITION}:s3:::" + bucket_and_key
            self.model_data_bucket_arn = f"arn:{Aws.PARTITION}:s3:::" + Fn.select(
                0, Fn.split("/", bucket_and_key)
            )
        role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[object_arn]))
        self.model_data_object_arn = object_arn
        return url


def model_data_parameter(model: str) -> str:
    """The deploy-time parameter naming a model's model.tar.gz: purchase-propensity ->
    PurchasePropensityModelDataUrl."""
    return "".join(part.capitalize() for part in model.split("-")) + "ModelDataUrl"


class Serving(Construct):
    """The serving image, the endpoints' execution role, and one ModelEndpoint per model."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: Config, storage: Storage
    ) -> None:
        super().__init__(scope, construct_id)

        self.role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="inferline endpoints: pull the image, read model data, write logs "
            "and data capture",
        )
        self.image_uri = self._image(config)
        names = [endpoint_name(config.prefix, m) for m in config.models]
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                     "logs:DescribeLogStreams"],
            resources=[
                f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:"
                f"/aws/sagemaker/Endpoints/{name}:*"
                for name in names
            ],
        ))
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"], resources=["*"]
        ))
        storage.data.grant_put(self.role, f"{DATA_CAPTURE_PREFIX}*")
        # Retraining deploys new model versions from the artifacts bucket (models/<model>/).
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetObject"],
            resources=[storage.artifacts.arn_for_objects(f"{model_version_prefix(m)}*")
                       for m in config.models],
        ))

        self.endpoints: dict[str, ModelEndpoint] = {
            model: ModelEndpoint(
                self,
                "".join(p.capitalize() for p in model.split("-")),
                config=config,
                model=model,
                image_uri=self.image_uri,
                role=self.role,
                storage=storage,
            )
            for model in config.models
        }

        policy = self.role.node.find_child("DefaultPolicy")
        for finding, reason in {
            "Resource::*": "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no "
            "resource-level permissions.",
            "Action::s3:Abort*": "grant_put lets SageMaker abort its own multipart uploads of "
            "captured data.",
            f"Resource::{arn_of(storage.data)}/{DATA_CAPTURE_PREFIX}*": "Data capture "
            "writes one object per batch under the data-capture/ prefix only.",
            **{
                f"Resource::{arn_of(storage.artifacts)}/{model_version_prefix(m)}*": "Model "
                "versions that retraining trains and deploys, one folder per model."
                for m in config.models
            },
            **{
                f"Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                f"/aws/sagemaker/Endpoints/{name}:*": "SageMaker names one log stream per "
                "instance inside the endpoint's own log group."
                for name in names
            },
        }.items():
            acknowledge(policy, f"AwsSolutions-IAM5[{finding}]", reason)

    def grant_image_pull(self, grantee: iam.IGrantable) -> None:
        """Let another SageMaker role (retraining's training and evaluation jobs) pull the image."""
        if self._image_asset is not None:
            self._image_asset.repository.grant_pull(grantee)
            return
        iam.Grant.add_to_principal(grantee=grantee, actions=PULL_ACTIONS,
                                   resource_arns=[self._image_repository_arn])
        iam.Grant.add_to_principal(grantee=grantee, actions=["ecr:GetAuthorizationToken"],
                                   resource_arns=["*"])

    def job_role(self, scope: Construct, construct_id: str, *, log_group: str, description: str) -> iam.Role:
        """A role for SageMaker jobs on the serving image (retraining's training and evaluation,
        monitoring's runs): pull the image, write the jobs' logs in /aws/sagemaker/<log_group>
        and their metrics. The caller grants what the job reads and writes."""
        principal = iam.ServicePrincipal("sagemaker.amazonaws.com")
        role = iam.Role(scope, construct_id, assumed_by=principal, description=description)
        self.grant_image_pull(role)
        group = f"log-group:/aws/sagemaker/{log_group}:*"
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                         "logs:DescribeLogStreams"],
                resources=[f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:{group}"],
            )
        )  # fmt: skip
        role.add_to_policy(iam.PolicyStatement(actions=["cloudwatch:PutMetricData"], resources=["*"]))
        policy = default_policy(role)
        acknowledge(
            policy, "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level permissions.",
        )  # fmt: skip
        logs = "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>"  # as cdk-nag spells it
        acknowledge(
            policy, f"AwsSolutions-IAM5[Resource::{logs}:{group}]",
            "SageMaker writes one log stream per job in this shared log group.",
        )  # fmt: skip
        return role

    def _image(self, config: Config) -> str:
        self._image_asset: ecr_assets.DockerImageAsset | None = None
        if config.serving_image:
            repository = config.serving_image.split("@")[0].rsplit(":", 1)[0]
            host, name = repository.split("/", 1)
            account, _, _, region = host.split(".")[:4]
            self._image_repository_arn = f"arn:{Aws.PARTITION}:ecr:{region}:{account}:repository/{name}"
            self.grant_image_pull(self.role)
            return config.serving_image
        if not (REPO_ROOT / DOCKERFILE).is_file():
            raise ConfigError(f"{DOCKERFILE} is missing: the serving image is built from it at "
                              "deploy time (or set -c servingImage=<ECR image URI>)")
        arm = bool(GRAVITON_FAMILY.match(config.instance_type))
        gpu = bool(GPU_FAMILY.match(config.instance_type))
        asset = ecr_assets.DockerImageAsset(
            self,
            "ServingImage",
            directory=str(REPO_ROOT),
            file=DOCKERFILE,
            build_args={} if gpu else {"BASE_IMAGE": CPU_BASE_IMAGE},
            platform=ecr_assets.Platform.LINUX_ARM64 if arm else ecr_assets.Platform.LINUX_AMD64,
            exclude=image_excludes(),
            ignore_mode=IgnoreMode.DOCKER,
        )
        self._image_asset = asset
        asset.repository.grant_pull(self.role)
        return asset.image_uri


def image_excludes() -> list[str]:
    path = REPO_ROOT / DOCKERIGNORE
    if not path.is_file():
        return IMAGE_EXCLUDES
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]

