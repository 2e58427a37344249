"""The one code asset every inferline Lambda runs (`functions/` plus the served models' specs),
and `LambdaFunctions`, which builds every inferline Lambda the same way from it.

Deployed Lambdas have no YAML parser (PyYAML is not in the Powertools layer), so the specs
are bundled as JSON under `specs/` and found through INFERLINE_SPECS_DIR. Bundling runs in
this process at synth (CDK local bundling): no Docker, no network.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from importlib import metadata
from importlib.metadata import version
from pathlib import Path

import jsii
from aws_cdk import (
    AssetHashType,
    BundlingOptions,
    DockerImage,
    Duration,
    ILocalBundling,
    RemovalPolicy,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from inferline.spec import load_spec
from infra.config import REPO_ROOT, Config
from infra.nag import acknowledge

FUNCTIONS_DIR = REPO_ROOT / "functions"
SPECS_FOLDER = "specs"
# Where the asset lands in the Lambda sandbox.
SPECS_DIR_IN_LAMBDA = f"/var/task/{SPECS_FOLDER}"
POWERTOOLS_VERSION = version("aws-lambda-powertools")  # the version pyproject pins
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "tests")
# Libraries the Lambdas import that the Powertools layer does not hold: pure Python, copied
# from this environment (so offline, at the locked versions) into the code asset.
BUNDLED = ("email-validator", "dnspython", "idna")


def top_level_paths(distribution: str) -> list[Path]:
    """The installed top-level packages and modules of a distribution."""
    dist = metadata.distribution(distribution)
    tops = {f.parts[0] for f in dist.files or [] if f.parts} - {".."}
    return sorted(Path(dist.locate_file(t)) for t in tops if not t.endswith((".dist-info", ".data")))


@jsii.implements(ILocalBundling)
class _FunctionsBundler:
    """Copies functions/ and writes specs/<model>.json for each served model."""

    def __init__(self, models: Sequence[str]) -> None:
        self._models = tuple(models)

    def try_bundle(self, output_dir: str, options: object = None, **_: object) -> bool:
        write_functions_bundle(Path(output_dir), self._models)
        return True


def write_functions_bundle(out: Path, models: Sequence[str]) -> None:
    """The asset's content: the function folders and the shared package, the pure-Python
    libraries the Powertools layer lacks (BUNDLED, at the versions uv.lock installed here), and
    the specs of the served models only (a model without an endpoint is unknown to the Lambdas)."""
    shutil.copytree(FUNCTIONS_DIR, out, ignore=_IGNORED, dirs_exist_ok=True)
    for name in BUNDLED:
        for source in top_level_paths(name):
            target = out / source.name
            if source.is_dir():
                shutil.copytree(source, target, ignore=_IGNORED, dirs_exist_ok=True)
            else:
                shutil.copy2(source, target)
    specs = out / SPECS_FOLDER
    specs.mkdir(exist_ok=True)
    for model in models:
        (specs / f"{model}.json").write_text(load_spec(model).model_dump_json(), encoding="utf-8")


def functions_code(models: Sequence[str]) -> lambda_.Code:
    # The hash is of the bundle itself, so a changed spec (outside functions/) redeploys.
    return lambda_.Code.from_asset(
        str(FUNCTIONS_DIR),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds or raises.
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.12"),
            local=_FunctionsBundler(models),
        ),
    )


def log_group_with_retention(scope: Construct, construct_id: str, config: Config) -> logs.LogGroup:
    group = logs.LogGroup(scope, construct_id, removal_policy=RemovalPolicy.DESTROY)
    group.node.default_child.retention_in_days = config.log_retention_days  # type: ignore[union-attr]
    return group


class LambdaFunctions(Construct):
    """What every inferline Lambda shares: one code asset, the Powertools layer, and how a
    function is built (python3.12 on arm64, X-Ray, its own log group, and its own role that
    may write that log group and nothing else until a caller grants more)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.code = functions_code(config.models)
        layer_arn = config.powertools_layer_arn or ssm.StringParameter.value_for_string_parameter(
            self, f"/aws/service/powertools/python/arm64/python3.12/{POWERTOOLS_VERSION}"
        )
        self.layer = lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", layer_arn)

    def function(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        handler: str,
        memory: int,
        timeout: Duration,
        env: Mapping[str, str],
    ) -> lambda_.Function:
        """The Lambda "<prefix>-<name>" (Powertools service `name`) in `scope`, with `env` plus
        INFERLINE_SPECS_DIR and the POWERTOOLS_* settings."""
        config = self.config
        log_group = log_group_with_retention(scope, f"{construct_id}Logs", config)
        role = iam.Role(
            scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"inferline {name} Lambda",
        )
        log_group.grant_write(role)  # instead of the broad AWSLambdaBasicExecutionRole
        fn = lambda_.Function(
            scope,
            construct_id,
            function_name=f"{config.prefix}-{name}",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=self.code,
            layers=[self.layer],
            memory_size=memory,
            timeout=timeout,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                **env,
                "INFERLINE_SPECS_DIR": SPECS_DIR_IN_LAMBDA,
                "POWERTOOLS_SERVICE_NAME": name,
                "POWERTOOLS_METRICS_NAMESPACE": config.prefix,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
            description=f"inferline {name} (handler {handler})",
        )
        acknowledge(fn, "AwsSolutions-L1", "Python 3.12 is the runtime the Powertools layer "
                    "and the project are pinned and tested on.")
        acknowledge(role.node.find_child("DefaultPolicy"), "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level "
                    "permissions.")
        return fn
