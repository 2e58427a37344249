"""`inferline demo-retrain`: one monthly cycle of the feedback loop, against the running platform.

Version 1 serves; the world shifts (the demo generator's drift knob) and shifted traffic goes
through the API with its ground truth sent back through the feedback API; retraining builds
a dataset from those logs, trains a contender, scores it and the champion on the same
holdout, promotes it and swaps the model server while requests keep flowing (none may fail);
a deliberately weak contender is then rejected; and a rollback serves version 1 again.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from rich.console import Console

from local_runtime.api_client import api_client
from local_runtime.config import LocalConfig
from local_runtime.retrain import LocalRetraining, RunResult, local_services, write_outbox

console = Console()
MODEL = "purchase-propensity"
DRIFT = 1.0
TRAFFIC_SEED = 2026
REQUEST_SIZE = 100
FEEDBACK_SIZE = 500  # keeps a request under the 64 KiB body limit
# Enough labeled rows that the holdout (the newest 30%) tells the versions apart.
DEMO_TRAFFIC_ROWS = 3000


def shifted_traffic(
    rows: int, seed: int = TRAFFIC_SEED, drift: float = DRIFT
) -> tuple[list[dict], list[int]]:
    """Requests from the shifted world and the outcome each one will have (the generator's
    labels, drawn from the request plus the user's stored features, as the model sees them)."""
    from inferline.spec import load_spec
    from local_runtime.up import DEMO_SEED
    from model_artifacts.demo_data import draw_labels, generate_requests, generate_users

    users = generate_users(2000, DEMO_SEED)  # the users whose features `up` loaded
    requests = generate_requests(rows, seed, drift, users=users)
    stored = {u["user_id"]: u for u in users}
    defaults = {name: f.default for name, f in load_spec(MODEL).stored_features.items()}
    records = [
        r | {k: stored.get(r["user_id"], defaults).get(k, v) for k, v in defaults.items()} for r in requests
    ]
    return requests, draw_labels(records, seed, drift).tolist()


def send_traffic(api: httpx.Client, requests: list[dict], actuals: list[int]) -> int:
    """Predict every request through the API, then send every outcome back; returns the
    number of feedback items recorded."""
    ids: list[str] = []
    for start in range(0, len(requests), REQUEST_SIZE):
        reply = api.post(
            f"/v1/models/{MODEL}/predict", json={"instances": requests[start : start + REQUEST_SIZE]}
        )
        reply.raise_for_status()
        ids += [p["prediction_id"] for p in reply.json()["predictions"]]
    recorded = 0
    items = [{"prediction_id": i, "actual": a} for i, a in zip(ids, actuals, strict=True)]
    for start in range(0, len(items), FEEDBACK_SIZE):
        reply = api.post("/v1/feedback", json={"feedback": items[start : start + FEEDBACK_SIZE]})
        reply.raise_for_status()
        recorded += reply.json()["summary"].get("recorded", 0)
    return recorded


class SteadyTraffic:
    """Requests sent one after another in the background; counts answers that were not 200."""

    def __init__(self, api_url: str, api_key: str, instance: dict[str, Any]):
        self.client = api_client(api_url, api_key, timeout=30)
        self.instance = instance
        self.sent, self.failed, self.versions = 0, 0, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = self.client.post(f"/v1/models/{MODEL}/predict", json={"instances": [self.instance]})
                ok = reply.status_code == 200
                if ok:
                    self.versions.add(reply.json()["model_version"])
            except httpx.HTTPError:
                ok = False
            self.sent += 1
            self.failed += 0 if ok else 1
            time.sleep(0.02)


def run_retrain_demo(config: LocalConfig) -> None:
    from local_runtime.cli import print_models, rollback
    from local_runtime.demo import DEMO_INSTANCES

    api = api_client(config.api_url, config.api_key)
    svc = local_services(config)
    runner = LocalRetraining(svc)

    step(1, "What serves now")
    print_models(config, MODEL)

    step(2, f"The world shifts: {DEMO_TRAFFIC_ROWS:,} shifted requests, then their outcomes via /v1/feedback")
    requests, actuals = shifted_traffic(DEMO_TRAFFIC_ROWS)
    with console.status("Sending predictions and feedback..."):
        recorded = send_traffic(api, requests, actuals)
    console.print(
        f"{len(requests):,} predictions logged, {recorded:,} ground-truth records joined by prediction_id"
    )

    step(
        3,
        "inferline retrain: dataset -> train -> evaluate against the champion -> gate -> register -> deploy",
    )
    with SteadyTraffic(config.api_url, config.api_key, DEMO_INSTANCES[1]) as traffic:
        promoted = show(runner.run(MODEL), config)
    console.print(
        f"while it deployed: {traffic.sent} requests, {traffic.failed} failed, "
        f"versions answering: {', '.join(sorted(traffic.versions))}"
    )

    step(4, "A weak contender (max_iter=1) is evaluated the same way, rejected, and never served")
    show(runner.run(MODEL, params={"max_iter": 1}), config)
    print_models(config, MODEL)

    if promoted.outcome != "promoted":
        console.print(
            "[yellow]The contender was not promoted this time (see its evaluation above): no rollback.[/]"
        )
    else:
        step(5, f"inferline rollback {MODEL}: the previous version serves again")
        rollback(config, MODEL)
        reply = api.post(f"/v1/models/{MODEL}/predict", json={"instances": [DEMO_INSTANCES[1]]}).json()
        console.print(f"a prediction now comes from version {reply['model_version']}")
        print_models(config, MODEL)
    console.print(f"\n[bold green]Done.[/] Notifications are in {config.path('outbox')}.")


def show(result: RunResult, config: LocalConfig) -> RunResult:
    console.print(f"[dim]steps: {' > '.join(result.path)}[/]")
    console.print(result.notification.get("message", "").rstrip())
    write_outbox(config, result)
    return result


def step(n: int, text: str) -> None:
    console.rule(f"[bold]{n}. {text}", align="left")
