"""The black-box HTTP suite's target: a deployed stack (INFERLINE_API_URL + INFERLINE_API_KEY)
or, when none is given, the local runtime started by its own command on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
PARTNER, PARTNER_KEY = "partner", "partner-key"  # a second local client (see target; Target.partner)
STARTUP_TIMEOUT_S = 300


@dataclass
class Target:
    url: str
    api_key: str
    home: Path | None  # the local runtime's state folder; None for a deployed stack
    partner: tuple[str, str] = (PARTNER, PARTNER_KEY)  # the local runtime's throttled client: name, key

    @property
    def local(self) -> bool:
        return self.home is not None

    def client(self, api_key: str | None = "default") -> httpx.Client:
        headers = {} if api_key is None else {"x-api-key": self.api_key if api_key == "default" else api_key}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="session")
def target(tmp_path_factory) -> Target:
    if os.environ.get("INFERLINE_API_URL"):
        yield Target(
            os.environ["INFERLINE_API_URL"].rstrip("/"), os.environ.get("INFERLINE_API_KEY", ""), None
        )
        return
    home = tmp_path_factory.mktemp("inferline-home")
    # two clients: the suite's own (its limits high enough for the fuzz run) and a throttled one
    (home / "clients.json").write_text(json.dumps({"clients": {
        "integration": {"apiKey": "integration-key", "rateLimit": 10_000, "burstLimit": 10_000,
                        "recipients": ["example.com", "example.org"]},
        PARTNER: {"apiKey": PARTNER_KEY, "rateLimit": 1, "burstLimit": 3,
                  "recipients": ["ops@partner.example"]},
    }}))  # fmt: skip
    api, serving, aws = free_ports(3)
    env = os.environ | {
        "INFERLINE_HOME": str(home),
        "INFERLINE_API_PORT": str(api),
        "INFERLINE_SERVING_PORT": str(serving),
        "INFERLINE_AWS_PORT": str(aws),
        "INFERLINE_API_KEY": "integration-key",
        "INFERLINE_DEMO_ROWS": "5000",
    }
    log = (home / "up.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_runtime.cli", "up"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{api}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"inferline up exited ({proc.returncode}):\n{(home / 'up.log').read_text()[-4000:]}"
                )
            try:
                if httpx.get(f"{url}/_local/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"not ready in {STARTUP_TIMEOUT_S}s:\n{(home / 'up.log').read_text()[-4000:]}")
            time.sleep(0.5)
        yield Target(url, "integration-key", home)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def local_target(target) -> Target:
    if not target.local:
        pytest.skip("needs the local runtime (it stops processes or reads local state)")
    return target
