"""`inferline demo`: the online loop end to end, against the running platform, over HTTP.

Predictions (one with PII, one for a user the feature store does not know), a bad request
refused with every field problem listed, ground truth sent back (and sent again, changing
nothing), and where each record landed in the embedded AWS.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from inferline.prediction_log import from_dynamo
from inferline.resources import bucket_name, table_name
from local_runtime.api_client import api_client
from local_runtime.batch_client import follow_job, submit_file
from local_runtime.config import LocalConfig
from local_runtime.up import local_client, local_resource

console = Console()

DEMO_INSTANCES = [
    {
        "user_id": "u00012",
        "price": 29.99,
        "category": "books",
        "device": "mobile",
        "country": "GB",
        "session_pages": 7,
        "hour_of_day": 20,
        "discount_pct": 15.0,
        "email": "ada@example.com",
    },
    {
        "user_id": "u00345",
        "price": 899.0,
        "category": "electronics",
        "device": "desktop",
        "country": "US",
        "session_pages": 2,
        "hour_of_day": 9,
        "discount_pct": 0.0,
    },
    {
        "user_id": "new-visitor-1",
        "price": 45.5,
        "category": "fashion",
        "device": "tablet",
        "country": "FR",
        "session_pages": 12,
        "hour_of_day": 13,
        "discount_pct": 30.0,
    },
]

BAD_INSTANCE = {
    "user_id": "u00012",
    "price": -5,
    "category": "cars",
    "hour_of_day": 25,
    "session_pages": "three",
    "discount_pct": 10,
    "country": "GB",
}


def run_demo(config: LocalConfig, model: str = "purchase-propensity") -> None:
    client = api_client(config.api_url, config.api_key, timeout=30)

    step(1, f"POST /v1/models/{model}/predict with {len(DEMO_INSTANCES)} instances")
    reply = client.post(f"/v1/models/{model}/predict", json={"instances": DEMO_INSTANCES})
    reply.raise_for_status()
    result = reply.json()
    table = Table(
        "prediction_id",
        "user_id",
        "label",
        "score",
        title=f"{result['model']} version {result['model_version']}  (HTTP {reply.status_code})",
    )
    for instance, p in zip(DEMO_INSTANCES, result["predictions"], strict=True):
        table.add_row(p["prediction_id"], instance["user_id"], p["label"], f"{p['score']:.4f}")
    console.print(table)

    step(2, "A bad request is refused before it reaches the model, with every problem listed")
    bad = client.post(f"/v1/models/{model}/predict", json={"instances": [BAD_INSTANCE]})
    console.print(f"HTTP {bad.status_code}")
    console.print_json(bad.text)

    step(3, "POST /v1/feedback: the actual outcomes come back, joined by prediction_id")
    ids = [p["prediction_id"] for p in result["predictions"]]
    feedback = {
        "feedback": [
            {"prediction_id": ids[0], "actual": "purchase"},
            {"prediction_id": ids[1], "actual": 0},
            {"prediction_id": "no-such-prediction", "actual": 1},
        ]
    }
    first = client.post("/v1/feedback", json=feedback)
    console.print(f"HTTP {first.status_code}: {first.json()['summary']}")
    again = client.post("/v1/feedback", json=feedback)
    console.print(f"sent again, HTTP {again.status_code}: {again.json()['summary']}  (idempotent)")

    step(4, "Where it landed (embedded AWS at " + config.aws_url + ")")
    s3 = local_client(config, "s3")
    bucket = bucket_name(config.prefix, "data")
    for prefix in ("predictions/", "ground-truth/"):
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
        console.print(f"s3://{bucket}/{prefix}: {len(keys)} object(s), latest {keys[-1] if keys else '-'}")
    item = (
        local_resource(config, "dynamodb")
        .Table(table_name(config.prefix, "predictions"))
        .get_item(Key={"prediction_id": ids[0]})["Item"]
    )
    console.print(f"DynamoDB {table_name(config.prefix, 'predictions')} item {ids[0]}:")
    console.print_json(json.dumps(from_dynamo(item)))
    console.print(
        "[dim]The email was erased before anything was logged; the actual sits beside "
        "the prediction for retraining.[/]"
    )
    step(5, "Batch: a CSV with a few bad rows, uploaded, processed, and the results emailed")
    sample = write_batch_sample(config.path("demo-data", "batch-sample.csv"))
    job = submit_file(client, model, sample, "you@example.com", console)
    final = follow_job(client, job["job_id"], 120, console)
    console.print(
        f"job {final['status']}: {final['rows_ok']} rows predicted, {final['rows_failed']} in errors.csv"
    )
    errors = httpx.get(final["errors_url"]).text if final.get("errors_url") else ""
    console.print(errors.strip())
    mail = next(p for p in sorted(config.path("outbox").glob("*.eml")) if job["job_id"] in p.read_text())
    console.print(f"the email is in the outbox: {mail}")
    console.print("\n".join(mail.read_text().splitlines()[:4]))

    console.print(
        f"\n[bold green]Done.[/] The platform is still up at {config.api_url}; "
        "try `inferline predict` or stop it with `make down`."
    )


def write_batch_sample(path: Path) -> Path:
    """Forty good rows from the demo generator and three bad ones, as a user's file would be."""
    from model_artifacts.demo_data import generate_requests

    columns = ["user_id", "price", "category", "device", "country", "session_pages", "hour_of_day",
               "discount_pct", "email"]  # fmt: skip
    rows = generate_requests(40, seed=11)
    rows[5] = rows[5] | {"price": -10}
    rows[17] = rows[17] | {"category": "cars"}
    rows[30] = rows[30] | {"hour_of_day": "noon"}
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def step(n: int, text: str) -> None:
    console.rule(f"[bold]{n}. {text}", align="left")
