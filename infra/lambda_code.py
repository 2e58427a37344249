"""The one code asset every inferline Lambda runs: `functions/` plus the served models' specs.

Deployed Lambdas have no YAML parser (PyYAML is not in the Powertools layer), so the specs
are bundled as JSON under `specs/` and found through INFERLINE_SPECS_DIR. Bundling runs in
this process at synth (CDK local bundling): no Docker, no network.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from inferline.spec import load_spec
from infra.config import REPO_ROOT

FUNCTIONS_DIR = REPO_ROOT / "functions"
SPECS_FOLDER = "specs"
# Where the asset lands in the Lambda sandbox.
SPECS_DIR_IN_LAMBDA = f"/var/task/{SPECS_FOLDER}"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "tests")


@jsii.implements(ILocalBundling)
class _FunctionsBundler:
    """Copies functions/ and writes specs/<model>.json for each served model."""

    def __init__(self, models: Sequence[str]) -> None:
        self._models = tuple(models)

    def try_bundle(self, output_dir: str, options: object = None, **_: object) -> bool:
        write_functions_bundle(Path(output_dir), self._models)
        return True


def write_functions_bundle(out: Path, models: Sequence[str]) -> None:
    """The asset's content: the function folders and the shared package, and the specs of the
    served models only (a model without an endpoint is unknown to the Lambdas)."""
    shutil.copytree(FUNCTIONS_DIR, out, ignore=_IGNORED, dirs_exist_ok=True)
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
