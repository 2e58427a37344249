"""The online Lambdas' S3 permissions, as synthesized, against what their handlers really do.

Each handler runs with the keys of a moto IAM user holding its role's S3 statements from the
template, with moto's IAM checking on: preprocess (logging a refusal, then passing a request),
then postprocess writing the prediction log,
then feedback writing ground truth (recorded, then corrected). Only S3 is checked (moto matches
the resources of S3 statements only); other services are allowed.
"""

from __future__ import annotations

import json

import boto3
import pytest
from infra_helpers import iam_user_keys, s3_policy
from moto.core.authorization import enable_iam_authentication

from inferline import aws as aws_clients
from inferline.features import load_features_csv
from inferline.spec import load_spec
from local_runtime.gateway import api_gateway_event
from local_runtime.online_workflow import context_for

INSTANCE = {
    "user_id": "u1", "price": 10.5, "category": "books", "device": "mobile", "country": "US",
    "session_pages": 3, "hour_of_day": 12, "discount_pct": 5, "email": "ada@example.com",
}  # fmt: skip


@pytest.fixture
def as_role(synth, aws, monkeypatch):
    """as_role(name): from now on, calls are signed with that online function's role's keys."""
    data = f"<{synth.logical_id(synth.stack.storage.data)}.Arn>"
    keys = {}
    for name in ("preprocess", "postprocess", "feedback"):
        role = getattr(synth.stack.online_api.functions, name).role
        keys[name] = iam_user_keys(s3_policy(synth.template, synth.logical_id(role), {data: aws.data_bucket}))

    def switch(name: str) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys[name]["aws_access_key_id"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys[name]["aws_secret_access_key"])
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the keys it first read
        aws_clients.reset()

    return switch


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_the_online_roles_may_do_all_a_prediction_and_its_feedback_need(as_role, aws):
    from feedback.handler import handler as feedback
    from postprocess.handler import handler as postprocess
    from preprocess.handler import handler as preprocess

    load_features_csv(aws.features, load_spec("purchase-propensity"), "user_id,purchases_30d\nu1,4\n")
    body = json.dumps({"instances": [INSTANCE]})
    model = "purchase-propensity"
    event = api_gateway_event("POST", f"/v1/models/{model}/predict", body, {"model": model})
    refused = api_gateway_event(
        "POST", f"/v1/models/{model}/predict", json.dumps({"instances": [INSTANCE | {"price": -1}]}),
        {"model": model},
    )  # fmt: skip
    with enable_iam_authentication():
        as_role("preprocess")
        assert preprocess(refused, context_for("preprocess"))["response"]["statusCode"] == 400
        state = preprocess(event, context_for("preprocess"))
        answer = {"model": "purchase-propensity", "model_version": "7", "classes": [0, 1], "scores": [0.8]}
        as_role("postprocess")
        result = postprocess(state | {"endpoint": {"Body": json.dumps(answer)}}, context_for("postprocess"))
        (prediction,) = json.loads(result["response"]["body"])["predictions"]
        as_role("feedback")
        for actual, status in ((1, "recorded"), (0, "updated")):
            items = [{"prediction_id": prediction["prediction_id"], "actual": actual}]
            request = api_gateway_event("POST", "/v1/feedback", json.dumps({"feedback": items}))
            reply = feedback(request, context_for("feedback"))
            assert json.loads(reply["body"])["results"][0]["status"] == status, reply
    logged = aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix="predictions/")["KeyCount"]
    truth = aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix="ground-truth/")["KeyCount"]
    assert (logged, truth) == (1, 2)  # one ground-truth object per feedback request
    # the refusal was logged with preprocess's own keys (a failed write is only logged)
    assert aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix="refusals/")["KeyCount"] == 1
