"""The local platform's API clients: $INFERLINE_HOME/clients.json, as cdk.json's `clients`
plus each client's key.

    {"clients": {"default": {"apiKey": "local-dev-key", "rateLimit": 50, "burstLimit": 100,
                             "dailyQuota": 100000, "recipients": ["example.com"]}}}

`inferline up` writes the file the first time from cdk.json (the first client gets
INFERLINE_API_KEY, every other one a random key); edit it to add clients or change limits, and
restart. The gateway knows a request's client by its key, refuses a client over its rate (a
token bucket of burstLimit tokens, refilled at rateLimit per second) or its daily quota with
429, and hands the handlers the key's id (local-<name>), never the key, as API Gateway does.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from inferline.clients import Client, client_entries
from infra.config import parse_clients
from local_runtime.config import LocalConfig, stack_settings

FILE = "clients.json"


@dataclass(frozen=True)
class LocalClient:
    name: str
    api_key: str
    rate_limit: int
    burst_limit: int
    daily_quota: int | None
    recipients: tuple[str, ...]

    @property
    def key_id(self) -> str:
        return f"local-{self.name}"


def load_clients(config: LocalConfig) -> list[LocalClient]:
    """The clients in the local file, written first from cdk.json if there is none."""
    path = config.path(FILE)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"clients": initial_clients(config)}, indent=2) + "\n")
        path.chmod(0o600)  # it holds keys
    try:
        raw = json.loads(path.read_text())["clients"]
        keys = {name: str(settings.pop("apiKey")) for name, settings in raw.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SystemExit(f"{path}: expected {{\"clients\": {{name: {{\"apiKey\": ..., ...}}}}}}") from None
    stack = stack_settings()  # a limit the file leaves out is the API's, as on AWS
    found, problems = parse_clients(raw, stack.api_rate_limit, stack.api_burst_limit, stack.api_daily_quota)
    if len(set(keys.values())) != len(keys) or not all(keys.values()):
        problems.append("every client needs its own, non-empty apiKey")
    if problems:
        raise SystemExit(f"{path}: " + "; ".join(problems))
    return [LocalClient(c.name, keys[c.name], c.rate_limit, c.burst_limit, c.daily_quota, c.recipients)
            for c in found]  # fmt: skip


def initial_clients(config: LocalConfig) -> dict[str, dict]:
    """cdk.json's clients, each limit spelt out, the first with INFERLINE_API_KEY as its key."""
    clients = stack_settings().clients
    keys = [config.api_key] + [f"local-{secrets.token_urlsafe(18)}" for _ in range(len(clients) - 1)]
    return {c.name: {"apiKey": key, "rateLimit": c.rate_limit, "burstLimit": c.burst_limit,
                     "dailyQuota": c.daily_quota or 0, "recipients": list(c.recipients)}
            for key, c in zip(keys, clients, strict=True)}  # fmt: skip


def lambda_variable(clients: list[LocalClient]) -> str:
    """API_CLIENTS for the handlers: each key's id, its client and recipients."""
    return client_entries({c.key_id: Client(c.name, c.recipients) for c in clients})


@dataclass
class Limiter:
    """One client's rate (a token bucket) and daily quota, as a usage plan enforces them."""

    client: LocalClient
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)
    day: str = ""
    used_today: int = 0

    def __post_init__(self) -> None:
        self.tokens = float(self.client.burst_limit)

    def take(self) -> str | None:
        """None if the request may go, else why not: "throttled" or "quota_exceeded" (called on
        the gateway's event loop only: no lock)."""
        now = time.monotonic()
        self.tokens = min(float(self.client.burst_limit),
                          self.tokens + (now - self.updated) * self.client.rate_limit)  # fmt: skip
        self.updated = now
        today = datetime.now(UTC).date().isoformat()
        if today != self.day:
            self.day, self.used_today = today, 0
        if self.client.daily_quota is not None and self.used_today >= self.client.daily_quota:
            return "quota_exceeded"
        if self.tokens < 1:
            return "throttled"
        self.tokens -= 1
        self.used_today += 1
        return None
