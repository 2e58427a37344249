"""The offline checks on the synthesized app: cfn-lint, cdk-nag, and the CDK CLI's own synth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cfnlint.api import lint

from infra.config import REPO_ROOT

CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"
LINT_REGIONS = ["us-east-1", "eu-west-1"]


def test_cfn_lint_finds_no_errors(synth):
    matches = lint(json.dumps(synth.template), regions=LINT_REGIONS)
    errors = [m for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(f"{m.rule.id} {m.message} at {m.path}" for m in errors)
    for warning in matches:
        print(f"cfn-lint {warning.rule.id}: {warning.message}")


def test_cdk_nag_has_no_unacknowledged_findings(synth):
    report = synth.outdir / "validation-report.json"
    text = report.read_text(encoding="utf-8") if report.is_file() else "(no report)"
    assert synth.error is None, f"synth failed validation:\n{synth.error}\n{text}"
    if report.is_file():
        for plugin in json.loads(text)["pluginReports"]:
            assert plugin["conclusion"] == "success", json.dumps(plugin, indent=1)


def test_every_acknowledgment_has_a_one_line_reason(synth):
    manifest = json.loads((synth.outdir / "manifest.json").read_text(encoding="utf-8"))
    artifact = manifest["artifacts"][synth.stack.artifact_id]
    metadata = artifact.get("metadata") or json.loads(
        (synth.outdir / artifact["additionalMetadataFile"]).read_text(encoding="utf-8")
    )
    acknowledged = {}
    for path, entries in metadata.items():
        for entry in entries:
            if entry["type"] == "aws:cdk:acknowledged-rules":
                for rule, reason in entry["data"].items():
                    acknowledged[f"{path} {rule}"] = reason
    assert acknowledged, "expected the stack's cdk-nag acknowledgments in the manifest"
    for where, reason in acknowledged.items():
        assert "AwsSolutions-" in where
        assert reason and "\n" not in reason and len(reason) <= 200, where
        print(f"{where}: {reason}")


def test_cdk_cli_synth_works_offline(tmp_path: Path):
    """`cdk synth` through the CLI the project installs (npm ci: aws-cdk@2 pinned in
    package.json), with a context override reaching the template."""
    if not CDK_CLI.exists():
        why = f"{CDK_CLI.relative_to(REPO_ROOT)} is missing: run `npm ci` in the repo root"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why + " (CI must install the CDK CLI, not skip this check)")
        print(why)
        pytest.skip(why)
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: the CDK CLI needs Node.js")
    env = {
        **os.environ,
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "AWS_EC2_METADATA_DISABLED": "true",  # no credentials lookup on the network
    }
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    out = tmp_path / "cdk.out"
    done = subprocess.run(
        [str(CDK_CLI), "synth", "--no-notices", "--quiet", "--output", str(out),
         "-c", "instanceType=ml.m5.large", "-c", "instanceCount=2", "-c", "maxInstanceCount=4"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, f"cdk synth failed:\n{done.stdout}\n{done.stderr}"
    (template_file,) = out.glob("*.template.json")
    template = json.loads(template_file.read_text(encoding="utf-8"))
    resources = template["Resources"].values()
    (config,) = [r for r in resources if r["Type"] == "AWS::SageMaker::EndpointConfig"]
    (variant,) = config["Properties"]["ProductionVariants"]
    assert variant["InstanceType"] == "ml.m5.large"
    assert variant["InitialInstanceCount"] == 2
    (endpoint,) = [r for r in resources if r["Type"] == "AWS::SageMaker::Endpoint"]
    routing = endpoint["Properties"]["DeploymentConfig"]["BlueGreenUpdatePolicy"][
        "TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY"
    assert routing["CanarySize"] == {"Type": "INSTANCE_COUNT", "Value": 1}
    # a CPU instance gets the slim base image instead of CUDA
    assets = json.loads(template_file.with_name(
        template_file.name.replace(".template.json", ".assets.json")).read_text())
    (image,) = assets["dockerImages"].values()
    assert image["source"]["dockerBuildArgs"] == {"BASE_IMAGE": "python:3.12-slim"}
    assert image["source"]["platform"] == "linux/amd64"
