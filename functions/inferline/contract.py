"""The API contract: every route, body, status and error shape, as one OpenAPI 3.1 document.

ROUTES is the routes table. The document (`openapi(models)`) is built from it, from the
pydantic models below and from each served model's spec (its predict body lists the spec's
fields, types and limits). The CDK app (infra/api_routes.py) and the local gateway
(local_runtime/gateway.py) both add exactly the document's paths, each wired by its route's
`operation`; tests fail if either differs. The document is served at GET /v1/openapi.json,
kept in the repo as docs/openapi.json (and docs/api.md) and drives the fuzz tests.

Predict has a path per served model (its body schema is the model's) and a templated one
that answers 404 unknown_model for any other name, as API Gateway routes: a concrete path
wins over a template.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from inferline.jobs import AWAITING_UPLOAD, FAILED, RUNNING, SPLITTING, SUCCEEDED
from inferline.spec import FieldSpec, ModelSpec
from inferline.validation import MAX_STORED_FLOAT, MAX_STORED_INT
from inferline.workflow import MAX_BODY_BYTES

OPENAPI_PATH = "/v1/openapi.json"
API_KEY_HEADER = "x-api-key"
MAX_FEEDBACK_ITEMS = 1000
MAX_UPLOAD_BYTES = 1_000 * 5 * 1024**3  # S3 multipart: MAX_PARTS parts of 5 GiB (batch.api)
# Control characters (Unicode category Cc) and the line and paragraph separators.
NO_CONTROL_CHARACTERS = "^[^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]*$"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with {model} for a route every model shares
    operation: str  # what serves it: the key the CDK app and the local gateway wire by
    summary: str
    statuses: tuple[int, ...]  # besides the ones every route may answer (COMMON_STATUSES)
    per_model: bool = False  # also one concrete path per served model


PREDICT, FEEDBACK, SUBMIT_BATCH_JOB, GET_BATCH_JOB, GET_OPENAPI = (
    "predict", "feedback", "submit_batch_job", "get_batch_job", "get_openapi",
)  # fmt: skip

ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/models/{model}/predict", PREDICT, "Score instances with a model",
          (200, 400, 404, 408, 413, 415, 502, 503, 504), per_model=True),
    Route("POST", "/v1/feedback", FEEDBACK, "Send ground truth for earlier predictions",
          (200, 400, 408, 413, 415)),
    Route("POST", "/v1/models/{model}/batch-jobs", SUBMIT_BATCH_JOB,
          "Start a batch job: an upload URL for its CSV", (201, 400, 404, 408, 413, 415), per_model=True),
    Route("GET", "/v1/batch-jobs/{job_id}", GET_BATCH_JOB, "A batch job's progress and result links",
          (200, 404)),
    Route("GET", OPENAPI_PATH, GET_OPENAPI, "This document", (200,)),
)  # fmt: skip

# A per-model route's templated path serves only names with no model behind it.
TEMPLATED_STATUSES = (404, 408, 413, 415)
# Any route: no or a wrong key (API Gateway answers 403 for both; the local gateway 401 for a
# missing one), throttled, or failed inside the platform.
COMMON_STATUSES = (401, 403, 429, 500)


# -- bodies -----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    instance: int | None = Field(description="index of the instance or item, if one is at fault")
    field: str | None = Field(description="the field at fault, if one is")
    problem: str


class Error(BaseModel):
    """Every 4xx and 5xx: a code to branch on and a message for people."""

    error: str = Field(description="stable code, e.g. invalid_request, unknown_model, throttled")
    message: str
    details: list[ErrorDetail] | None = Field(default=None, description="every problem found, at once")
    models: list[str] | None = Field(default=None, description="unknown_model: the models there are")
    request_id: str | None = None
    retry_after_seconds: int | None = None


class Prediction(BaseModel):
    model_config = ConfigDict(extra="allow")

    prediction_id: str = Field(description="send it back with the actual outcome to /v1/feedback")
    label: str
    score: float
    top_k: list[dict[str, Any]] | None = Field(default=None, description="multiclass models")


class PredictResponse(BaseModel):
    model: str
    model_version: str
    predictions: list[Prediction] = Field(description="one per instance, in request order")


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prediction_id: str = Field(min_length=1, max_length=64)
    actual: bool | int | str = Field(description="a class value or its label")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feedback: list[FeedbackItem] = Field(min_length=1, max_length=MAX_FEEDBACK_ITEMS)


FeedbackStatus = Literal["recorded", "updated", "unchanged", "superseded", "unknown_prediction_id",
                         "invalid_actual"]  # fmt: skip


class FeedbackResult(BaseModel):
    prediction_id: str
    status: FeedbackStatus
    actual: bool | int | str | None = None
    problem: str | None = None


class FeedbackResponse(BaseModel):
    results: list[FeedbackResult] = Field(description="one per item, in request order")
    summary: dict[str, int] = Field(description="items per status")


class BatchJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=254, json_schema_extra={"format": "email"},
                       description="where the results link is sent (never echoed back)")
    file_name: str | None = Field(default=None, min_length=1, max_length=255, pattern=NO_CONTROL_CHARACTERS,
                                  description="named in the email's subject")
    size: int | None = Field(default=None, ge=1, le=MAX_UPLOAD_BYTES, description="the file's size in bytes")
    multipart: bool | None = Field(default=None, description="default: true from 64 MiB (needs size)")


class Columns(BaseModel):
    required: list[str]
    optional: list[str]


class UploadPart(BaseModel):
    part_number: int
    url: str


class BatchJobCreated(BaseModel):
    """Upload the CSV as upload_method says: one PUT to upload_url with upload_headers, or each
    part's byte range to its URL and then POST the part list to complete_url."""

    job_id: str
    model: str
    status: JobStatus
    upload_method: Literal["PUT", "multipart"]
    upload_url: str | None = None
    upload_headers: dict[str, str] | None = None
    upload_id: str | None = None
    part_size: int | None = None
    parts: list[UploadPart] | None = None
    complete_url: str | None = None
    complete_method: Literal["POST"] | None = None
    expires_at: str
    columns: Columns


JobStatus = Literal[AWAITING_UPLOAD, SPLITTING, RUNNING, SUCCEEDED, FAILED]


class BatchJob(BaseModel):
    job_id: str
    model: str
    client: str | None = Field(default=None, description="the API client that submitted it")
    status: JobStatus
    total_chunks: int | None = None
    chunks_done: int | None = None
    rows_ok: int | None = None
    rows_failed: int | None = None
    failure_reason: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    results_url: str | None = Field(default=None, description="once succeeded: a link valid for hours")
    errors_url: str | None = None


BODIES: tuple[type[BaseModel], ...] = (
    Error, PredictResponse, FeedbackRequest, FeedbackResponse, BatchJobRequest, BatchJobCreated, BatchJob,
)  # fmt: skip
# Each route's request and success bodies (component names); predict's request is per model.
REQUEST_BODY = {FEEDBACK: "FeedbackRequest", SUBMIT_BATCH_JOB: "BatchJobRequest"}
SUCCESS_BODY = {PREDICT: "PredictResponse", FEEDBACK: "FeedbackResponse", SUBMIT_BATCH_JOB: "BatchJobCreated",
                GET_BATCH_JOB: "BatchJob"}  # fmt: skip


# -- the document -------------------------------------------------------------------------------


def paths(models: Iterable[str]) -> list[tuple[str, str, Route]]:
    """(method, path, route) for every path the API serves, in document order."""
    found, models = [], sorted(models)
    for route in ROUTES:
        if route.per_model:
            found += [(route.method, route.path.replace("{model}", m), route) for m in models]
        found.append((route.method, route.path, route))
    return found


def path_model(path: str, route: Route) -> str | None:
    """The model a per-model route's concrete path is for (None on the templated path)."""
    if not route.per_model or "{model}" in path:
        return None
    return path.split("/")[3]


def openapi(specs: Iterable[ModelSpec], server: str = "/") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API serving these models."""
    specs = sorted(specs, key=lambda s: s.name)
    _, schemas = models_json_schema([(m, "validation") for m in BODIES],
                                    ref_template="#/components/schemas/{model}")  # fmt: skip
    components: dict[str, Any] = dict(sorted(schemas.get("$defs", {}).items()))
    for spec in specs:
        components[_predict_request_name(spec.name)] = predict_request_schema(spec)
    document_paths: dict[str, Any] = {}
    for method, path, route in paths(s.name for s in specs):
        operation = _operation(route, path_model(path, route))
        document_paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "inferline",
            "version": "1",
            "description": "Online predictions, feedback and batch jobs. Every request sends its "
            f"API key in the {API_KEY_HEADER} header; bodies are JSON (Content-Type: "
            f"application/json) of at most {MAX_BODY_BYTES} bytes.",
        },
        "servers": [{"url": server}],
        "security": [{"apiKey": []}],
        "paths": document_paths,
        "components": {
            "schemas": components,
            "responses": {str(s): _error_response(s) for s in sorted(ERROR_MEANINGS)},
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}},
        },
    }


def dumps(document: dict[str, Any]) -> str:
    """The document as it is kept and served: sorted keys off, stable indentation."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


ERROR_MEANINGS = {
    400: "the body or a field is invalid: details names each problem",
    401: "no API key (local gateway; API Gateway answers 403)",
    403: "the API key is missing or not valid",
    404: "no such model, job or route",
    408: "the body did not arrive in time",
    413: "the body is over the size limit, or too many instances",
    415: "the body is not JSON",
    429: "throttled: over the client's rate or quota; retry after Retry-After seconds",
    500: "failed inside the platform; quote request_id",
    502: "the model's answer did not fit the request",
    503: "the model endpoint is unavailable; retry after Retry-After seconds",
    504: "the prediction took too long",
}


def _error_response(status: int) -> dict[str, Any]:
    return {"description": ERROR_MEANINGS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}  # fmt: skip


def _operation(route: Route, model: str | None) -> dict[str, Any]:
    name = route.operation + (f"_{model.replace('-', '_')}" if model else "")
    summary = route.summary if model or not route.per_model else "Any model that is not served: 404"
    operation: dict[str, Any] = {"operationId": name, "summary": summary, "x-inferline-operation":
                                 route.operation}  # fmt: skip
    named = [p for p in ("model", "job_id") if "{" + p + "}" in route.path and not (p == "model" and model)]
    parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in named]
    if parameters:
        operation["parameters"] = parameters
    body = REQUEST_BODY.get(route.operation)
    if route.operation == PREDICT:
        body = _predict_request_name(model) if model else None
        if body is None:  # any other model name: only its 404 is promised
            operation["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    responses: dict[str, Any] = {}
    statuses = route.statuses if model or not route.per_model else TEMPLATED_STATUSES
    for status in sorted({*statuses, *COMMON_STATUSES}):
        if status < 300:
            schema = ({"$ref": f"#/components/schemas/{SUCCESS_BODY[route.operation]}"}
                      if route.operation in SUCCESS_BODY else {"type": "object"})  # fmt: skip
            responses[str(status)] = {"description": "success",
                                      "content": {"application/json": {"schema": schema}}}  # fmt: skip
        else:
            responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
    operation["responses"] = responses
    return operation


def _number(x: float) -> int | float:
    return int(x) if isinstance(x, int) or (abs(x) < 2**53 and float(x).is_integer()) else x


def _predict_request_name(model: str) -> str:
    return "PredictRequest_" + model.replace("-", "_")


def predict_request_schema(spec: ModelSpec) -> dict[str, Any]:
    """{"instances": [...]} with the spec's fields: what preprocess accepts, as JSON Schema."""
    fields = spec.request.fields
    instance = {
        "type": "object",
        "properties": {name: _field_schema(f) for name, f in fields.items()},
        "required": [name for name, f in fields.items() if f.required],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "description": spec.description or f"instances for {spec.name}",
        "properties": {"instances": {"type": "array", "items": instance, "minItems": 1,
                                     "maxItems": spec.request.max_instances}},  # fmt: skip
        "required": ["instances"],
        "additionalProperties": False,
    }


def _field_schema(field: FieldSpec) -> dict[str, Any]:
    kind = {"string": "string", "int": "integer", "float": "number", "bool": "boolean"}[field.type]
    schema: dict[str, Any] = {"type": kind}
    if field.allowed is not None:
        schema["enum"] = list(field.allowed)
    if kind in ("integer", "number"):  # the field's limits within what the stores hold
        limit = MAX_STORED_INT if kind == "integer" else MAX_STORED_FLOAT
        schema["minimum"] = _number(max(field.min, -limit) if field.min is not None else -limit)
        schema["maximum"] = _number(min(field.max, limit) if field.max is not None else limit)
    if field.max_length is not None:
        schema["maxLength"] = field.max_length
    if field.pii:
        schema["description"] = "personal data: redacted before it is logged"
    if not field.required:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema
