"""Where the local runtime listens and keeps its state; every value overridable by environment.

  INFERLINE_HOME          local state (models, demo data, logs, outbox)  default <repo>/.inferline
  INFERLINE_API_PORT      the local API Gateway                          default 3000
  INFERLINE_SERVING_PORT  the SageMaker endpoints (model servers behind) default 8080
  INFERLINE_AWS_PORT      the embedded AWS (moto server)                 default 5000
  INFERLINE_API_KEY       the key clients send in x-api-key              default local-dev-key
  INFERLINE_PREFIX        resource name prefix                           default inferline
  INFERLINE_DEMO_ROWS     rows of demo data the first model is trained on default 20000
  INFERLINE_EMAIL_SENDER  the batch emails' sender (an SES identity)      default batch@inferline.local
  INFERLINE_BATCH_WORKERS batch chunk worker processes besides `up`'s own  default 0
Everything binds to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from inferline.resources import DEFAULT_PREFIX, local_environment

if TYPE_CHECKING:
    from infra.config import Config

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
REGION = "us-east-1"


@cache
def stack_settings() -> Config:
    """The settings the CDK app deploys with (cdk.json's context, validated by infra/config.py),
    which the local platform mirrors: the served models, the API clients, the monitoring schedule."""
    from infra.config import load_config

    return load_config(json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"])


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {value!r}") from None


@dataclass(frozen=True)
class LocalConfig:
    home: Path = field(
        default_factory=lambda: Path(os.environ.get("INFERLINE_HOME") or REPO_ROOT / ".inferline")
    )
    api_port: int = field(default_factory=lambda: _int("INFERLINE_API_PORT", 3000))
    serving_port: int = field(default_factory=lambda: _int("INFERLINE_SERVING_PORT", 8080))
    aws_port: int = field(default_factory=lambda: _int("INFERLINE_AWS_PORT", 5000))
    api_key: str = field(default_factory=lambda: os.environ.get("INFERLINE_API_KEY") or "local-dev-key")
    prefix: str = field(default_factory=lambda: os.environ.get("INFERLINE_PREFIX") or DEFAULT_PREFIX)
    demo_rows: int = field(default_factory=lambda: _int("INFERLINE_DEMO_ROWS", 20000))
    batch_workers: int = field(default_factory=lambda: _int("INFERLINE_BATCH_WORKERS", 0))
    email_sender: str = field(
        default_factory=lambda: os.environ.get("INFERLINE_EMAIL_SENDER") or "batch@inferline.local"
    )

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def aws_url(self) -> str:
        return f"http://{HOST}:{self.aws_port}"

    def serving_url(self, index: int = 0) -> str:
        return f"http://{HOST}:{self.serving_port + index}"

    def path(self, *parts: str) -> Path:
        return self.home.joinpath(*parts)

    def aws_environment(self) -> dict[str, str]:
        """What boto3 needs to talk to the embedded AWS (never a real account)."""
        return {
            "AWS_ENDPOINT_URL": self.aws_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def lambda_environment(self) -> dict[str, str]:
        """The environment the handlers run with: the same variables the CDK app sets."""
        return (
            self.aws_environment()
            | local_environment(self.prefix)
            | {
                "POWERTOOLS_SERVICE_NAME": "inferline",
                "POWERTOOLS_METRICS_NAMESPACE": "inferline",
                "POWERTOOLS_METRICS_DISABLED": "true",  # no CloudWatch here; logs stay readable
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            }
        )
