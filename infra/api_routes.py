"""The REST API's routes: exactly the API contract's paths (inferline.contract), each wired to
what serves its operation, with the document itself served at GET /v1/openapi.json.

Body validation at the gateway: the feedback and each model's batch-job routes validate their
bodies against the contract's schemas (API Gateway models, JSON Schema draft 4) before a Lambda runs,
and a body that fails is a 400 in the API's error shape. Predict bodies are not validated
here: Preprocess counts every refused instance by field and problem for monitoring (the
refusal log), which a gateway refusal would hide.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_cdk import aws_apigateway as apigw
from constructs import Construct

from inferline import contract
from inferline.spec import ModelSpec

# What serves an operation: given the model of a per-model path (None on a templated path),
# the add_method arguments (integration, method_responses, ...).
Wiring = Callable[[str | None], dict[str, Any]]

VALIDATED = {contract.FEEDBACK: "FeedbackRequest", contract.SUBMIT_BATCH_JOB: "BatchJobRequest"}
# JSON Schema keywords API Gateway's draft 4 validator understands, as the contract uses them.
_DRAFT4 = {"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
           "minLength", "maxLength", "minimum", "maximum", "pattern", "enum", "anyOf", "format"}  # fmt: skip
_DOCS_ONLY = {"title", "description", "default"}


class ApiRoutes(Construct):
    """Adds the contract's paths to `api`, wired by `wiring`; one wiring per operation."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api: apigw.RestApi,
        specs: list[ModelSpec],
        wiring: Mapping[str, Wiring],
    ) -> None:
        super().__init__(scope, construct_id)
        wiring = {contract.GET_OPENAPI: self.openapi_wiring, **wiring}
        missing = {r.operation for r in contract.ROUTES} - set(wiring)
        if missing:
            raise ValueError(f"no wiring for the contract's operations {sorted(missing)}")
        self.document = contract.openapi(specs)
        schemas = self.document["components"]["schemas"]
        validator = api.add_request_validator("BodyValidator", validate_request_body=True)
        models = {
            operation: api.add_model(
                name, content_type="application/json", model_name=name,
                schema=apigw.JsonSchema(schema=apigw.JsonSchemaVersion.DRAFT4,
                                        **json_schema_arguments(draft4(schemas[name], schemas))),
            )
            for operation, name in VALIDATED.items()
        }  # fmt: skip
        self.methods: list[apigw.Method] = []
        for method, path, route in contract.paths(s.name for s in specs):
            model = contract.path_model(path, route)
            arguments = wiring[route.operation](model)
            if route.operation in models and (model or not route.per_model):  # a template only 404s
                arguments |= {"request_validator": validator,
                              "request_models": {"application/json": models[route.operation]}}  # fmt: skip
            self.methods.append(api.root.resource_for_path(path).add_method(method, **arguments))

    def openapi_wiring(self, model: str | None = None) -> dict[str, Any]:
        """GET /v1/openapi.json: the document from a mock integration, its server the stage's URL."""
        served = self.document | {"servers": [{"url": "https://$context.domainName/$context.stage"}]}
        return {
            "integration": apigw.MockIntegration(
                passthrough_behavior=apigw.PassthroughBehavior.WHEN_NO_TEMPLATES,
                request_templates={"application/json": '{"statusCode": 200}'},
                integration_responses=[apigw.IntegrationResponse(
                    status_code="200", response_templates={"application/json": document_template(served)}
                )],
            ),  # fmt: skip
            "method_responses": [apigw.MethodResponse(status_code="200")],
        }


def document_template(document: dict[str, Any]) -> str:
    """A mapping template that renders `document` as JSON: every $ and # of the JSON is written
    through a variable (Velocity would read "$ref" as a reference), except the $context ones
    the document means."""
    text = contract.dumps(document)
    text = text.replace("$", "${d}").replace("#", "${h}")
    for variable in ("$context.domainName", "$context.stage"):
        text = text.replace(variable.replace("$", "${d}"), variable)
    return "#set($d = '$')#set($h = '#')\n" + text


def draft4(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """A contract schema for API Gateway: references inlined, documentation keywords dropped,
    and anything draft 4 cannot say refused (so a new keyword is noticed at synth)."""
    if "$ref" in schema:
        return draft4(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DOCS_ONLY:
            continue
        if key not in _DRAFT4:
            raise ValueError(f"JSON Schema keyword {key!r} has no draft 4 form for API Gateway")
        if key == "properties":
            value = {name: draft4(s, schemas) for name, s in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            value = draft4(value, schemas)
        elif key == "anyOf":
            value = [draft4(s, schemas) for s in value]
        out[key] = value
    return out


_ARGUMENT = {"type": "type", "properties": "properties", "required": "required",
             "additionalProperties": "additional_properties", "items": "items", "minItems": "min_items",
             "maxItems": "max_items", "minLength": "min_length", "maxLength": "max_length",
             "minimum": "minimum", "maximum": "maximum", "pattern": "pattern", "enum": "enum",
             "anyOf": "any_of", "format": "format"}  # fmt: skip
_TYPES = {"object": apigw.JsonSchemaType.OBJECT, "array": apigw.JsonSchemaType.ARRAY,
          "string": apigw.JsonSchemaType.STRING, "integer": apigw.JsonSchemaType.INTEGER,
          "number": apigw.JsonSchemaType.NUMBER, "boolean": apigw.JsonSchemaType.BOOLEAN,
          "null": apigw.JsonSchemaType.NULL}  # fmt: skip


def json_schema_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """apigw.JsonSchema's keyword arguments for a draft 4 schema."""
    arguments: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            value = _TYPES[value]
        elif key == "properties":
            value = {n: apigw.JsonSchema(**json_schema_arguments(s)) for n, s in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            value = apigw.JsonSchema(**json_schema_arguments(value))
        elif key == "anyOf":
            value = [apigw.JsonSchema(**json_schema_arguments(s)) for s in value]
        arguments[_ARGUMENT[key]] = value
    return arguments
