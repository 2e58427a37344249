"""The CDK app: `cdk synth` / `cdk deploy` run `python -m infra.app` (see cdk.json).

Settings come from CDK context (infra/config.py); cdk-nag's AwsSolutions pack validates
the synthesized app, and any finding that is not acknowledged (with a reason, beside the
resource it concerns) stops synth.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.config import REPO_ROOT, ConfigError, load_config
from infra.stack import InferlineStack

CDK_JSON = REPO_ROOT / "cdk.json"


def build_app(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> App:
    """The app with its one stack.

    cdk.json's context (settings and feature flags) is the base, so an in-process synth in
    tests builds what the CLI builds; `context` overrides it, and under the CLI the CLI's
    context (cdk.json plus `-c`) takes precedence over both.
    """
    base = json.loads(CDK_JSON.read_text(encoding="utf-8")).get("context", {})
    app = App(context={**base, **(context or {})}, outdir=outdir)
    config = load_config(app.node.get_all_context())
    InferlineStack(app, config.prefix, config=config)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


def main() -> None:
    try:
        app = build_app()
    except ConfigError as exc:
        sys.exit(str(exc))
    app.synth()


if __name__ == "__main__":
    main()
