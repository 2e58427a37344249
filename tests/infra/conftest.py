"""The CDK app, synthesized once per test session (in-process, offline; ~6-10 s).

Synth runs the cdk-nag AwsSolutions plugin: an unacknowledged finding makes synth raise.
The fixture keeps that error for test_nag to report and still hands the other tests the
template CDK wrote before validating, so one finding does not hide every other result.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# The CDK app is the repo-root package `infra` (not an installed one): import it from there.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from aws_cdk import CfnElement  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from infra.app import build_app  # noqa: E402
from infra.config import Config  # noqa: E402
from infra.stack import InferlineStack  # noqa: E402


@dataclass
class Synth:
    outdir: Path
    stack: InferlineStack
    template: dict[str, Any]
    error: Exception | None

    @property
    def config(self) -> Config:
        return self.stack.config

    @property
    def assertions(self) -> Template:
        return Template.from_json(self.template)

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == kind}

    def one(self, kind: str) -> dict[str, Any]:
        found = self.resources(kind)
        assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
        return next(iter(found.values()))

    def logical_id(self, construct) -> str:
        """A construct's logical ID: its own (an L1) or its default child's (an L2)."""
        element = construct if isinstance(construct, CfnElement) else construct.node.default_child
        return self.stack.get_logical_id(element)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(outdir=str(outdir))
    stack = next(c for c in app.node.children if isinstance(c, InferlineStack))
    error: Exception | None = None
    try:
        app.synth()
    except Exception as exc:  # cdk-nag findings (or another validation failure)
        error = exc
    template_file = outdir / f"{stack.artifact_id}.template.json"
    if not template_file.is_file():
        raise error or FileNotFoundError(template_file)
    template = json.loads(template_file.read_text(encoding="utf-8"))
    return Synth(outdir=outdir, stack=stack, template=template, error=error)
