"""The three Lambda handlers on moto, driven with the events API Gateway and Step Functions
send them, in the order the online workflow runs them."""

import json

import pytest

from inferline.features import load_features_csv
from inferline.ground_truth import latest_actuals
from inferline.spec import load_spec
from local_runtime.gateway import api_gateway_event
from local_runtime.online_workflow import context_for

SPEC = load_spec("purchase-propensity")
EMAIL = "ada.lovelace@example.com"
INSTANCE = {
    "user_id": "u1",
    "price": 10.5,
    "category": "books",
    "device": "mobile",
    "country": "US",
    "session_pages": 3,
    "hour_of_day": 12,
    "discount_pct": 5,
    "email": EMAIL,
}
NO_EMAIL = {k: v for k, v in INSTANCE.items() if k != "email"}
HEADER = "user_id,purchases_30d,avg_order_value,days_since_last_visit,tenure_days\n"


@pytest.fixture
def handlers(aws):
    from feedback.handler import handler as feedback
    from postprocess.handler import handler as postprocess
    from preprocess.handler import handler as preprocess

    load_features_csv(aws.features, SPEC, HEADER + "u1,4,55.0,3,700\n")
    return preprocess, postprocess, feedback


def predict_event(instances, model="purchase-propensity"):
    body = json.dumps({"instances": instances})
    return api_gateway_event("POST", f"/v1/models/{model}/predict", body, {"model": model})


def run_online(handlers, instances, scores, version="7"):
    preprocess, postprocess, _ = handlers
    state = preprocess(predict_event(instances), context_for("preprocess"))
    assert state["valid"], state
    state["endpoint"] = {
        "Body": json.dumps(
            {
                "model": "purchase-propensity",
                "model_version": version,
                "classes": [0, 1],
                "scores": scores,
            }
        )
    }
    return state, postprocess(state, context_for("postprocess"))


def test_preprocess_enriches_redacts_and_mints_ids(handlers):
    preprocess = handlers[0]
    state = preprocess(
        predict_event([INSTANCE, INSTANCE | {"user_id": "stranger"}, NO_EMAIL]), context_for("preprocess")
    )
    assert state["valid"] is True
    sent = json.loads(state["endpoint_body"])["instances"]
    assert list(sent[0]) == SPEC.model_inputs
    assert sent[0]["purchases_30d"] == 4 and sent[0]["avg_order_value"] == 55.0
    assert sent[1]["purchases_30d"] == 0 and sent[1]["days_since_last_visit"] == 365  # defaults
    context = state["context"]
    assert context["entity_known"] == [True, False, True]
    assert len(set(context["prediction_ids"])) == 3
    assert [r.get("email") for r in context["requests"]] == ["*****", "*****", None]
    assert context["requests"][0]["price"] == 10.5 and "email" not in context["requests"][2]
    assert EMAIL not in json.dumps(state), "PII must not travel past preprocess"
    assert "body" not in state


def test_preprocess_accepts_requests_without_any_pii_field(handlers):
    state = handlers[0](predict_event([NO_EMAIL, NO_EMAIL]), context_for("preprocess"))
    assert state["valid"] is True
    assert state["context"]["requests"] == [NO_EMAIL, NO_EMAIL]


def test_preprocess_refuses_bad_requests_with_every_problem(handlers):
    preprocess = handlers[0]
    state = preprocess(
        predict_event([INSTANCE | {"price": -3, "device": "watch"}]), context_for("preprocess")
    )
    assert state["valid"] is False
    reply = state["response"]
    assert reply["statusCode"] == 400
    body = json.loads(reply["body"])
    assert body["error"] == "invalid_request"
    assert {(d["field"], d["problem"]) for d in body["details"]} == {
        ("price", "must be >= 0"),
        ("device", "must be one of desktop, mobile, tablet; got 'watch'"),
    }


def refusals(aws) -> list[dict]:
    objects = aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix="refusals/").get("Contents", [])
    return [
        json.loads(line)
        for o in objects
        for line in aws.s3.get_object(Bucket=aws.data_bucket, Key=o["Key"])["Body"].read().splitlines()
    ]


def test_a_refused_request_is_logged_by_field_and_problem_without_its_values(handlers, aws):
    preprocess = handlers[0]
    bad = INSTANCE | {"price": -3, "country": EMAIL, "session_pages": 2.5, "ada@example.com": 1}
    state = preprocess(predict_event([bad, bad | {"price": 4.0}]), context_for("preprocess"))
    assert state["response"]["statusCode"] == 400
    (record,) = refusals(aws)
    assert record["model"] == "purchase-propensity" and record["source"] == "online"
    assert record["status"] == 400 and record["error"] == "invalid_request" and record["refused"] == 1
    assert {(p["field"], p["problem"], p["count"]) for p in record["problems"]} == {
        ("price", "must be >= 0", 1),
        ("country", "must be one of US, GB, DE, FR, IN, BR, JP, CA, ES, IT, MX, AU", 2),
        ("session_pages", "must be an integer", 2),
        ("(unknown field)", "unknown field", 2),
    }
    text = json.dumps({k: v for k, v in record.items() if k != "created_at"})  # (its digits vary)
    assert EMAIL not in text and "ada@example.com" not in text and "2.5" not in text, "no value is logged"


def test_preprocess_unknown_model_is_404_and_huge_body_is_413(handlers, aws):
    preprocess = handlers[0]
    reply = preprocess(predict_event([INSTANCE], model="nope"), context_for("preprocess"))["response"]
    assert reply["statusCode"] == 404
    assert json.loads(reply["body"])["models"] == ["purchase-propensity"]
    huge = api_gateway_event("POST", "/p", "x" * 70_000, {"model": "purchase-propensity"})
    assert preprocess(huge, context_for("preprocess"))["response"]["statusCode"] == 413
    (record,) = refusals(aws)  # the unknown model is no model's refusal
    assert (record["status"], record["error"]) == (413, "payload_too_large")


def test_postprocess_maps_scores_and_writes_the_log_without_pii(handlers, aws):
    state, result = run_online(handlers, [INSTANCE, INSTANCE | {"user_id": "u2"}], [0.91, 0.12])
    reply = result["response"]
    assert reply["statusCode"] == 200
    body = json.loads(reply["body"])
    assert body["model_version"] == "7"
    assert [(p["label"], p["score"]) for p in body["predictions"]] == [
        ("purchase", 0.91),
        ("no_purchase", 0.12),
    ]
    ids = [p["prediction_id"] for p in body["predictions"]]
    assert ids == state["context"]["prediction_ids"]

    item = aws.predictions.get_item(Key={"prediction_id": ids[0]})["Item"]
    assert item["model_version"] == "7" and item["output"]["label"] == "purchase"
    assert item["features"]["purchases_30d"] == 4 and item["entity_known"] is True
    assert item["request"]["email"] == "*****"
    assert int(item["expires_at"]) > 0
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket=aws.data_bucket)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("predictions/model=purchase-propensity/dt=")
    lines = aws.s3.get_object(Bucket=aws.data_bucket, Key=keys[0])["Body"].read().decode().splitlines()
    assert [json.loads(line)["prediction_id"] for line in lines] == ids
    assert EMAIL not in "".join(lines) and EMAIL not in json.dumps(item, default=str)


def test_numbers_beyond_what_dynamodb_holds_are_refused_or_zero_never_a_500(handlers, aws):
    """Found by the fuzz tests: a price of 1e-202 or a score of 1e-300 made the log write fail.
    Nearer zero than 1e-130 is stored (and scored) as 0; a number too large is a 400."""
    state, result = run_online(handlers, [INSTANCE | {"price": 9.6e-202}], [1e-300])
    assert result["response"]["statusCode"] == 200
    (prediction,) = json.loads(result["response"]["body"])["predictions"]
    item = aws.predictions.get_item(Key={"prediction_id": prediction["prediction_id"]})["Item"]
    assert item["features"]["price"] == 0 and item["output"]["score"] == 0
    assert state["context"]["features"][0]["price"] == 0.0  # what the model is sent


def test_the_prediction_log_names_the_client_whose_key_asked(handlers, aws, monkeypatch):
    from inferline.clients import CLIENTS_ENV, Client, client_entries

    monkeypatch.setenv(CLIENTS_ENV, client_entries({"key-id-7": Client("analytics")}))
    preprocess, postprocess, _ = handlers
    event = api_gateway_event("POST", "/v1/models/purchase-propensity/predict",
                              json.dumps({"instances": [INSTANCE]}), {"model": "purchase-propensity"},
                              api_key_id="key-id-7")  # fmt: skip
    state = preprocess(event, context_for("preprocess"))
    state["endpoint"] = {"Body": json.dumps({"model_version": "7", "classes": [0, 1], "scores": [0.4]})}
    body = json.loads(postprocess(state, context_for("postprocess"))["response"]["body"])
    (prediction,) = body["predictions"]
    item = aws.predictions.get_item(Key={"prediction_id": prediction["prediction_id"]})["Item"]
    assert item["client"] == "analytics"
    assert "key-id-7" not in json.dumps(item, default=str)
    _, unknown = run_online(handlers, [INSTANCE], [0.4])  # no key id: no client
    pid = json.loads(unknown["response"]["body"])["predictions"][0]["prediction_id"]
    assert aws.predictions.get_item(Key={"prediction_id": pid})["Item"]["client"] is None


def test_postprocess_refuses_an_answer_that_does_not_fit(handlers, aws):
    preprocess, postprocess, _ = handlers
    state = preprocess(predict_event([INSTANCE]), context_for("preprocess"))
    state["endpoint"] = {"Body": json.dumps({"model_version": "7", "classes": [0, 1], "scores": [0.1, 0.2]})}
    reply = postprocess(state, context_for("postprocess"))["response"]
    assert reply["statusCode"] == 502
    assert "2 scores for 1 instances" in json.loads(reply["body"])["message"]
    assert aws.predictions.scan()["Count"] == 0


def feedback_event(items):
    return api_gateway_event("POST", "/v1/feedback", json.dumps({"feedback": items}))


def test_feedback_joins_by_prediction_id_and_is_idempotent(handlers, aws):
    feedback = handlers[2]
    _, result = run_online(handlers, [INSTANCE, INSTANCE], [0.8, 0.3])
    ids = [p["prediction_id"] for p in json.loads(result["response"]["body"])["predictions"]]
    items = [
        {"prediction_id": ids[0], "actual": "purchase"},
        {"prediction_id": ids[1], "actual": 0},
        {"prediction_id": "missing", "actual": 1},
        {"prediction_id": ids[1], "actual": "yes"},
    ]
    reply = feedback(feedback_event(items), context_for("feedback"))
    assert reply["statusCode"] == 200
    results = json.loads(reply["body"])["results"]
    assert [r["status"] for r in results] == [
        "recorded",
        "recorded",
        "unknown_prediction_id",
        "invalid_actual",
    ]
    assert aws.predictions.get_item(Key={"prediction_id": ids[0]})["Item"]["actual"] == 1
    (truth,) = aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix="ground-truth/")["Contents"]
    lines = aws.s3.get_object(Bucket=aws.data_bucket, Key=truth["Key"])["Body"].read().splitlines()
    assert [json.loads(line)["prediction_id"] for line in lines] == ids[:2]  # one line per recorded item

    again = json.loads(feedback(feedback_event(items[:2]), context_for("feedback"))["body"])
    assert [r["status"] for r in again["results"]] == ["unchanged", "unchanged"]
    corrected = json.loads(
        feedback(feedback_event([{"prediction_id": ids[1], "actual": 1}]), context_for("feedback"))["body"]
    )
    assert corrected["results"][0]["status"] == "updated"
    objects = aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix="ground-truth/")["Contents"]
    assert len(objects) == 2, "the repeat wrote nothing; the correction one object"
    lines = [
        json.loads(line)
        for o in objects
        for line in aws.s3.get_object(Bucket=aws.data_bucket, Key=o["Key"])["Body"].read().splitlines()
    ]
    assert latest_actuals(lines)[ids[1]]["actual"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("", None),
        ("{oops", None),
        ('{"feedback": []}', "feedback"),
        ('{"feedback": [{"prediction_id": "a"}]}', "actual"),
        ('{"feedback": [{"prediction_id": "a", "actual": 1, "x": 2}]}', "x"),
        ('{"feedback": [{"prediction_id": "a", "actual": [1]}]}', "actual"),
    ],
)
def test_malformed_feedback_is_400_naming_the_field(handlers, body, field):
    feedback = handlers[2]
    reply = feedback(api_gateway_event("POST", "/v1/feedback", body), context_for("feedback"))
    assert reply["statusCode"] == 400
    details = json.loads(reply["body"]).get("details", [{"field": None}])
    assert field is None or any(field in (d["field"] or "") for d in details), details
