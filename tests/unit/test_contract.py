"""The API contract: its schemas say what the handlers do, and the documents kept in the repo
are the contract's. (The CDK app's and the local gateway's routes are checked against it in
tests/infra/test_cdk_stack.py and tests/unit/test_gateway.py; responses by tests/fuzz.)"""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from batch import api as batch_api
from inferline import contract
from inferline.spec import load_spec
from inferline.validation import InvalidRequest, parse_instances, validate_instances
from local_runtime import api_docs

SPEC = load_spec("purchase-propensity")
GOOD = {"user_id": "u1", "price": 19.5, "category": "books", "device": "mobile", "country": "DE",
        "session_pages": 3, "hour_of_day": 14, "discount_pct": 0}  # fmt: skip


def document_validator(name: str) -> Draft202012Validator:
    document = contract.openapi([SPEC])
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return Draft202012Validator(schema)


def preprocess_accepts(body: dict) -> bool:
    try:
        validate_instances(SPEC, parse_instances(json.dumps(body), SPEC))
    except InvalidRequest:
        return False
    return True


PREDICT_BODIES = [
    {"instances": [GOOD]},
    {"instances": [GOOD | {"email": "a@b.c"}]},
    {"instances": [GOOD | {"email": None}]},
    {"instances": [GOOD | {"session_pages": 3.0}]},  # an integer written as a float
    {"instances": [GOOD] * SPEC.request.max_instances},
    {"instances": [GOOD] * (SPEC.request.max_instances + 1)},
    {"instances": []},
    {"instances": [GOOD], "extra": 1},
    {"instances": [GOOD | {"unknown": 1}]},
    {"instances": [{k: v for k, v in GOOD.items() if k != "price"}]},
    {"instances": [GOOD | {"price": None}]},
    {"instances": [GOOD | {"price": 9.6e-202}]},  # stored as 0 (found by fuzzing: it was a 500)
    {"instances": [GOOD | {"price": -0.01}]},
    {"instances": [GOOD | {"price": 100000.5}]},
    {"instances": [GOOD | {"price": "19.5"}]},
    {"instances": [GOOD | {"price": True}]},
    {"instances": [GOOD | {"session_pages": 2.5}]},
    {"instances": [GOOD | {"session_pages": 10**400}]},
    {"instances": [GOOD | {"hour_of_day": 24}]},
    {"instances": [GOOD | {"category": "cars"}]},
    {"instances": [GOOD | {"user_id": "u" * 65}]},
    {"instances": [GOOD | {"user_id": 7}]},
    {"instances": [GOOD | {"email": "x" * 255}]},
    {"instances": ["not an object"]},
    {"instances": {"0": GOOD}},
    {},
]


@pytest.mark.parametrize("body", PREDICT_BODIES, ids=range(len(PREDICT_BODIES)))
def test_the_predict_schema_accepts_exactly_what_preprocess_accepts(body):
    schema_accepts = document_validator("PredictRequest_purchase_propensity").is_valid(body)
    assert schema_accepts == preprocess_accepts(body)


BATCH_BODIES = [
    {"email": "a@example.com"},
    {"email": "a@example.com", "file_name": "x.csv", "size": 10, "multipart": False},
    {"email": "a@example.com", "size": contract.MAX_UPLOAD_BYTES, "multipart": True},
    {"email": "a@example.com", "size": contract.MAX_UPLOAD_BYTES + 1},
    {"email": "a@example.com", "size": 0},
    {"email": "a@example.com", "size": True},
    {"email": "a@example.com", "size": 1.5},
    {"email": "a@example.com", "multipart": "yes"},
    {"email": "a@example.com", "file_name": ""},
    {"email": "a@example.com", "file_name": "a\nb.csv"},
    {"email": "a@example.com", "file_name": "a\u2028b.csv"},
    {"email": "a@example.com", "file_name": "x" * 256},
    {"email": "a@example.com", "other": 1},
    {"email": 5},
    {"file_name": "x.csv"},
]


@pytest.mark.parametrize("body", BATCH_BODIES, ids=range(len(BATCH_BODIES)))
def test_the_batch_job_schema_refuses_whatever_its_structure_forbids(body):
    """The schema checks shape; the handler also checks the address itself (email-validator)
    and that a multipart upload names its size, which a schema of one object cannot say."""
    schema_accepts = document_validator("BatchJobRequest").is_valid(body)
    handler_accepts = batch_api._request_problem(body) is None
    assert schema_accepts == handler_accepts


def test_the_contracts_limits_are_the_handlers():
    assert contract.MAX_UPLOAD_BYTES == batch_api.MAX_PARTS * batch_api.MAX_PART_SIZE
    assert set(contract.BatchJobRequest.model_fields) == batch_api.FIELDS
    assert set(contract.BatchJob.model_fields) == {*batch_api.PUBLIC_FIELDS, "results_url", "errors_url"}


def test_every_route_answers_in_documented_shapes():
    document = contract.openapi([SPEC])
    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"401", "403", "429", "500"} <= statuses, (method, path)
            assert any(s < "300" for s in statuses) or "{model}" in path, (method, path)
    assert set(document["paths"]) == {path for _, path, _ in contract.paths(["purchase-propensity"])}


def test_the_documents_in_the_repo_are_the_contracts():
    """docs/openapi.json and docs/api.md: `make api-docs` rewrites them."""
    assert api_docs.write(check=True) == [], "run `make api-docs` and commit docs/openapi.json, docs/api.md"
