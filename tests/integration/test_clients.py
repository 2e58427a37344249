"""A key per client, on the local platform: each client's own rate limit (429 with Retry-After),
its batch recipients (400 naming them), and its name on the records it causes, never its key."""

from __future__ import annotations

import json
import time

import boto3

PREDICT = "/v1/models/purchase-propensity/predict"
GOOD = {"user_id": "user-42", "price": 19.9, "category": "books", "device": "mobile", "country": "US",
        "session_pages": 3, "hour_of_day": 14, "discount_pct": 0}  # fmt: skip


def test_a_client_over_its_rate_gets_429_while_another_is_served(local_target):
    with local_target.client(local_target.partner[1]) as partner, local_target.client() as own:
        statuses = [partner.get("/v1/batch-jobs/none").status_code for _ in range(6)]
        assert statuses[:3] == [404, 404, 404]  # its burst of 3
        throttled = partner.get("/v1/batch-jobs/none")
        assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
        assert throttled.json()["error"] == "throttled"
        assert own.get("/v1/batch-jobs/none").status_code == 404  # the other client is not held back
        time.sleep(1.2)  # one token back at 1 request/s
        assert partner.get("/v1/batch-jobs/none").status_code == 404


def test_batch_results_go_only_to_the_clients_recipients(local_target):
    time.sleep(3.2)  # the partner's bucket refills (rate 1/s, burst 3)
    with local_target.client(local_target.partner[1]) as partner:
        refused = partner.post("/v1/models/purchase-propensity/batch-jobs", json={"email": "a@example.com"})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "recipient_not_allowed"
        assert "ops@partner.example" in refused.json()["message"]
        created = partner.post("/v1/models/purchase-propensity/batch-jobs",
                               json={"email": "ops@partner.example"})
        assert created.status_code == 201, created.text
        status = partner.get(f"/v1/batch-jobs/{created.json()['job_id']}").json()
    assert status["client"] == local_target.partner[0]


def test_a_prediction_is_logged_with_its_clients_name_not_its_key(local_target):
    with local_target.client() as own:
        pid = own.post(PREDICT, json={"instances": [GOOD]}).json()["predictions"][0]["prediction_id"]
    endpoints = json.loads((local_target.home / "run" / "endpoints.json").read_text())
    dynamodb = boto3.resource("dynamodb", endpoint_url=endpoints["aws"], region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local")  # fmt: skip
    table = dynamodb.Table("inferline-predictions")
    item = table.get_item(Key={"prediction_id": pid})["Item"]
    assert item["client"] == "integration"
    assert "integration-key" not in json.dumps(item, default=str)
