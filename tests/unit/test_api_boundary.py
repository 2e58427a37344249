"""The API's boundary on moto, each finding of the hostile-user review as a test: a lone
surrogate, JSON nested 1,000 deep, a body that is not JSON, addresses no mail system takes,
and a prediction log that fails half-way. Each is a 4xx that names the problem (or, for a
store failure, an error that leaves nothing behind), never a 500 with a partial record."""

from __future__ import annotations

import json

import pytest
from test_batch import MODEL, OWNER
from test_batch import batch as batch  # noqa: F401  (the fixture, shared)

from batch import api
from feedback.logic import feedback
from inferline.boundary import MAX_DEPTH, BadRequest, parse_json, require_json
from inferline.clients import Client
from inferline.features import load_features_csv
from inferline.prediction_log import prediction_record, write_prediction_log
from inferline.spec import load_spec
from local_runtime.gateway import api_gateway_event
from local_runtime.online_workflow import context_for

SPEC = load_spec("purchase-propensity")
GOOD = {"user_id": "u1", "price": 10.5, "category": "books", "device": "mobile", "country": "US",
        "session_pages": 3, "hour_of_day": 12, "discount_pct": 5}  # fmt: skip
SURROGATE = "\\ud800"  # as JSON text: a lone high surrogate
DEEP = "[" * 1000 + "]" * 1000
JSON = {"Content-Type": "application/json"}

CLIENT = Client("tests", ("example.com",))  # the client whose key sent the requests


@pytest.fixture
def preprocess(aws):
    from preprocess.handler import handler

    load_features_csv(aws.features, SPEC, "user_id,purchases_30d\nu1,4\n")
    return lambda body, headers=JSON: handler(
        api_gateway_event("POST", f"/v1/models/{MODEL}/predict", body, {"model": MODEL}, headers=headers),
        context_for("preprocess"),
    )


def instance_with(field: str, raw_json_value: str) -> str:
    body = json.dumps({"instances": [GOOD | {field: "PLACEHOLDER"}]})
    return body.replace('"PLACEHOLDER"', raw_json_value)


def stored(aws) -> tuple[int, int]:
    objects = aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix="predictions/").get("KeyCount", 0)
    return objects, aws.predictions.scan()["Count"]


# -- a lone surrogate --------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["user_id", "email", "country"])
def test_a_lone_surrogate_in_a_predict_field_is_a_400_naming_it(preprocess, aws, field):
    reply = preprocess(instance_with(field, f'"a{SURROGATE}b"'))["response"]
    assert reply["statusCode"] == 400, reply
    (detail,) = json.loads(reply["body"])["details"]
    assert (detail["instance"], detail["field"]) == (0, field) and "lone surrogate" in detail["problem"]
    assert stored(aws) == (0, 0)


def test_a_lone_surrogate_in_a_field_name_is_refused_too(preprocess):
    body = json.dumps({"instances": [GOOD]})[:-3] + f', "x{SURROGATE}": 1}}]}}'
    reply = preprocess(body)["response"]
    assert reply["statusCode"] == 400 and "lone surrogate" in reply["body"]


@pytest.mark.parametrize("field", ["email", "file_name"])
def test_a_lone_surrogate_in_a_batch_job_is_a_400_naming_it(batch, field):  # noqa: F811
    body = json.dumps({"email": OWNER, "file_name": "PLACEHOLDER"}).replace(
        '"PLACEHOLDER"' if field == "file_name" else f'"{OWNER}"', f'"x{SURROGATE}"'
    )
    reply = api.submit_job(
        MODEL, body, batch.services.jobs, batch.aws.s3, batch.aws.data_bucket, load_spec, 600, client=CLIENT
    )
    assert reply["statusCode"] == 400 and json.loads(reply["body"])["details"][0]["field"] == field
    assert batch.aws.s3.list_objects_v2(Bucket=batch.aws.data_bucket).get("KeyCount", 0) == 0


def test_a_lone_surrogate_in_feedback_is_a_400(aws):
    body = '{"feedback": [{"prediction_id": "p' + SURROGATE + '", "actual": 1}]}'
    reply = feedback(body, aws.predictions, aws.s3, aws.data_bucket, load_spec, JSON)
    assert reply["statusCode"] == 400, reply


# -- nesting ------------------------------------------------------------------------------------


def test_json_nested_1000_deep_is_a_400_on_every_route(preprocess, batch, aws):  # noqa: F811
    reply = preprocess('{"instances": ' + DEEP + "}")["response"]
    assert reply["statusCode"] == 400 and "nests deeper" in reply["body"]
    reply = api.submit_job(
        MODEL, DEEP, batch.services.jobs, batch.aws.s3, batch.aws.data_bucket, load_spec, 600, client=CLIENT
    )
    assert reply["statusCode"] == 400 and "nests deeper" in reply["body"]
    reply = feedback('{"feedback": ' + DEEP + "}", aws.predictions, aws.s3, aws.data_bucket, load_spec, JSON)
    assert reply["statusCode"] == 400


def test_nesting_is_bounded_well_below_the_interpreters_limit():
    parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    with pytest.raises(BadRequest, match="nests deeper"):
        parse_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


# -- the media type -------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "text/csv"])
def test_a_body_that_is_not_json_is_a_415_on_every_route(preprocess, batch, aws, content_type):  # noqa: F811
    headers = {"content-type": content_type}
    body = json.dumps({"instances": [GOOD]})
    assert preprocess(body, headers)["response"]["statusCode"] == 415
    reply = api.submit_job(MODEL, json.dumps({"email": OWNER}), batch.services.jobs, batch.aws.s3,
                           batch.aws.data_bucket, load_spec, 600, headers=headers, client=CLIENT)  # fmt: skip
    assert reply["statusCode"] == 415 and json.loads(reply["body"])["error"] == "unsupported_media_type"
    reply = feedback('{"feedback": [{"prediction_id": "p", "actual": 1}]}', aws.predictions, aws.s3,
                     aws.data_bucket, load_spec, headers)  # fmt: skip
    assert reply["statusCode"] == 415


@pytest.mark.parametrize(
    "headers",
    [{}, None, {"Content-Type": "application/json; charset=utf-8"}, {"CONTENT-TYPE": "Application/JSON"},
     {"Content-Type": "application/vnd.inferline+json"}],
)  # fmt: skip
def test_json_media_types_and_no_content_type_are_taken(headers):
    require_json(headers)


# -- addresses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "why"),
    [
        ("a\x00b@example.com", "invalid characters"),
        ("a@" + "b" * 10_000 + ".com", "too long"),
        ("x" * 65 + "@example.com", "too long before the @-sign"),
        ("no-at-sign.example.com", "must have an @-sign"),
        ("a@localhost", "period"),
        (42, "a string"),
    ],
)
def test_addresses_no_mail_system_takes_are_a_400_saying_why(batch, email, why):  # noqa: F811
    reply = api.submit_job(MODEL, json.dumps({"email": email}), batch.services.jobs, batch.aws.s3,
                           batch.aws.data_bucket, load_spec, 600, client=CLIENT)  # fmt: skip
    body = json.loads(reply["body"])
    assert reply["statusCode"] == 400 and body["details"][0]["field"] == "email"
    assert why in body["details"][0]["problem"]


def test_an_address_is_stored_as_email_validator_normalizes_it(batch):  # noqa: F811
    from inferline import jobs

    reply = api.submit_job(MODEL, json.dumps({"email": "Ada@EXAMPLE.com"}), batch.services.jobs, batch.aws.s3,
                           batch.aws.data_bucket, load_spec, 600, client=CLIENT)  # fmt: skip
    job = jobs.get_job(batch.services.jobs, json.loads(reply["body"])["job_id"])
    assert job["email"] == "Ada@example.com"  # the domain, case-folded; the local part as given


# -- both stores or neither ------------------------------------------------------------------------


def test_a_failed_dynamodb_write_leaves_no_log_object(aws, monkeypatch):
    from datetime import UTC, datetime

    from botocore.exceptions import ClientError

    records = [
        prediction_record(prediction_id=f"p{i}", request_id="r1", model=MODEL, model_version="1",
                          created_at=datetime.now(UTC), ttl_days=90, request={}, features={},
                          entity_known=True, output={"label": "purchase", "score": 0.9}, latency_ms=1.0)
        for i in range(3)
    ]  # fmt: skip
    client = aws.predictions.meta.client

    def failing(**kwargs):
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "BatchWriteItem")

    monkeypatch.setattr(client, "batch_write_item", failing)
    with pytest.raises(ClientError, match="injected"):
        write_prediction_log(aws.predictions, aws.s3, aws.data_bucket, records)
    monkeypatch.undo()
    assert stored(aws) == (0, 0)
    write_prediction_log(aws.predictions, aws.s3, aws.data_bucket, records)  # the retry logs both
    assert stored(aws) == (1, 3)


# -- clients ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipients", "email", "allowed"),
    [
        (("example.com",), "ada@example.com", True),
        (("example.com",), "ada@EXAMPLE.COM", True),
        (("@example.com",), "ada@example.com", True),
        (("example.com",), "ada@mail.example.com", False),  # a domain is that domain, not its subdomains
        (("example.com",), "ada@example.com.evil.test", False),
        (("ops@example.com",), "ops@example.com", True),
        (("ops@example.com",), "dev@example.com", False),
        ((), "ada@example.com", False),
    ],
)
def test_a_client_may_email_only_its_recipients(recipients, email, allowed):
    assert Client("c", recipients).may_email(email) is allowed


def test_a_recipient_the_client_may_not_email_is_a_400_saying_why(batch):  # noqa: F811
    partner = Client("partner", ("ops@partner.example",))
    reply = api.submit_job(MODEL, json.dumps({"email": OWNER}), batch.services.jobs, batch.aws.s3,
                           batch.aws.data_bucket, load_spec, 600, client=partner)  # fmt: skip
    body = json.loads(reply["body"])
    assert reply["statusCode"] == 400 and body["error"] == "recipient_not_allowed"
    expected = f"client 'partner' may not send results to {OWNER} (allowed: ops@partner.example)"
    assert body["message"] == expected
    assert body["details"][0]["field"] == "email"
    assert batch.services.jobs.scan()["Count"] == 0  # no job was created


def test_a_key_that_is_no_clients_gets_no_batch_job(batch):  # noqa: F811
    reply = api.submit_job(MODEL, json.dumps({"email": OWNER}), batch.services.jobs, batch.aws.s3,
                           batch.aws.data_bucket, load_spec, 600, client=None)  # fmt: skip
    assert reply["statusCode"] == 403 and json.loads(reply["body"])["error"] == "unknown_client"


def test_the_job_records_its_client_and_the_status_shows_it(batch):  # noqa: F811
    from inferline import jobs

    reply = api.submit_job(MODEL, json.dumps({"email": OWNER}), batch.services.jobs, batch.aws.s3,
                           batch.aws.data_bucket, load_spec, 600, client=CLIENT)  # fmt: skip
    job_id = json.loads(reply["body"])["job_id"]
    assert jobs.get_job(batch.services.jobs, job_id)["client"] == "tests"
    status = api.job_status(job_id, batch.services.jobs, batch.aws.s3, batch.aws.data_bucket, 60)
    assert json.loads(status["body"])["client"] == "tests"


def test_the_client_is_found_by_the_key_id_the_event_names(monkeypatch):
    from inferline import clients

    monkeypatch.setenv(clients.CLIENTS_ENV, clients.client_entries({"id-1": Client("a", ("example.com",))}))
    assert clients.client_for("id-1") == Client("a", ("example.com",))
    assert clients.client_for("id-2") is None and clients.client_for(None) is None
