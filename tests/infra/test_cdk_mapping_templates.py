"""The API's mapping templates (VTL), rendered with airspeed, a Velocity engine for Python:

- the request template turns any body into the workflow input the Lambdas parse;
- the response templates turn the workflow's proxy response into the real status and body,
  a failed or timed-out execution into a 5xx, and a refused start into 413/429/500;
- an unknown model gets the same 404 body Preprocess gives.

$input, $util and $context are small stand-ins that follow API Gateway's documented
behaviour (escapeJavaScript is Apache Commons Lang's, as API Gateway's is).
"""

from __future__ import annotations

import json
import os

import pytest
from infra_helpers import resolve

from inferline import contract, workflow
from inferline.events import PredictEvent
from inferline.spec import load_spec

try:
    import airspeed
    from airspeed import operators
except ImportError:  # pragma: no cover - depends on the environment
    airspeed = None

ARN = "arn:aws:states:eu-west-1:123456789012:stateMachine:inferline-online-purchase-propensity"
REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
KEY_ID = "key-id-1"


@pytest.fixture(scope="module", autouse=True)
def _engine():
    if airspeed is None:
        why = "airspeed-ext is not installed: add it to the infra dependency group"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why + " (CI must render the mapping templates, not skip them)")
        pytest.skip(why)
    operators.__additional_methods__[str].setdefault(
        "equalsIgnoreCase", lambda self, other: self.lower() == str(other).lower()
    )


def escape_javascript(text: str) -> str:
    """Apache Commons Lang 2 StringEscapeUtils.escapeJavaScript, which $util uses."""
    out = []
    for unit in _utf16_units(text):
        if unit > 0xFFF:
            out.append(f"\\u{unit:04X}")
        elif unit > 0xFF:
            out.append(f"\\u0{unit:03X}")
        elif unit > 0x7F:
            out.append(f"\\u00{unit:02X}")
        elif unit < 32:
            named = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}
            out.append(named.get(unit, f"\\u00{unit:02X}"))
        else:
            ch = chr(unit)
            out.append({"'": "\\'", '"': '\\"', "\\": "\\\\", "/": "\\/"}.get(ch, ch))
    return "".join(out)


def _utf16_units(text: str):
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        yield int.from_bytes(data[i:i + 2], "big")


class Util:
    def escapeJavaScript(self, text):  # noqa: N802 - API Gateway's name
        return escape_javascript("" if text is None else str(text))

    def parseJson(self, text):  # noqa: N802
        return json.loads(text)


class Input:
    def __init__(self, body: str = "", headers=None, path=None, integration=None):
        self.body = body
        self._params = {"header": headers or {}, "path": path or {}, "querystring": {}}
        self._integration = integration or {}

    def params(self, name=None):
        if name is None:
            return self._params
        for where in ("path", "querystring", "header"):
            if name in self._params[where]:
                return self._params[where][name]
        return ""

    def path(self, expression):
        assert expression.startswith("$.")
        return self._integration.get(expression[2:])


def render(template: str, input_: Input) -> tuple[str, dict]:
    context = {"requestId": REQUEST_ID, "identity": {"apiKeyId": KEY_ID},
               "responseOverride": {"header": {}}}
    text = airspeed.Template(template).merge(
        {"input": input_, "util": Util(), "context": context}
    )
    return text, context["responseOverride"]


@pytest.fixture(scope="module")
def predict_method(synth) -> dict:
    model = synth.config.models[0]
    path_parts = {r["Properties"]["PathPart"]: k
                  for k, r in synth.resources("AWS::ApiGateway::Resource").items()}
    (method,) = [
        m["Properties"] for m in synth.resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["Integration"].get("Type") == "AWS"
        and synth.template["Resources"][m["Properties"]["ResourceId"]["Ref"]]["Properties"][
            "ParentId"] == {"Ref": path_parts[model]}
    ]
    return method


@pytest.fixture(scope="module")
def request_template(predict_method) -> str:
    template = resolve(predict_method["Integration"]["RequestTemplates"]["application/json"])
    return template.replace(
        next(p for p in template.split('"') if p.startswith("<") and "StateMachine" in p), ARN
    )


@pytest.fixture(scope="module")
def responses(predict_method) -> dict[str | None, dict]:
    return {r.get("SelectionPattern"): r for r in predict_method["Integration"][
        "IntegrationResponses"]}


def start_execution(request_template: str, body: str, headers=None) -> dict:
    text, _ = render(request_template, Input(body=body, headers=headers or {
        "Content-Type": "application/json", "x-api-key": "secret"}))
    request = json.loads(text)
    assert request["stateMachineArn"] == ARN
    return json.loads(request["input"])


BODIES = [
    '{"instances":[{"user_id":"u1","price":9.5}]}',
    '{"instances": [{"note": "quotes \\" and \\\\ backslashes, it\'s / fine"}]}',
    '{"a": "line\\nbreak\\ttab", "b": "caf\u00e9 \u00fcber \u4e2d\u6587 \U0001f600"}',
    "not json at all: ' \" \\ \x01 \u2028",
    "",
    "@@ $context.requestId #set($x = 1) ${'x'}",
]


@pytest.mark.parametrize("body", BODIES)
def test_any_body_reaches_the_workflow_unchanged(request_template, synth, body):
    event = start_execution(request_template, body)
    assert event["body"] == body
    assert event["pathParameters"] == {"model": synth.config.models[0]}
    # the caller's key id (its client), never the key
    assert event["requestContext"] == {"requestId": REQUEST_ID, "identity": {"apiKeyId": KEY_ID}}
    assert event["headers"] == {"Content-Type": "application/json"}  # never the API key
    parsed = PredictEvent.model_validate(event)  # the preprocess handler's own event model
    assert parsed.body == body and parsed.pathParameters.model == synth.config.models[0]
    assert parsed.requestContext.identity.apiKeyId == KEY_ID


def test_content_type_is_found_in_any_case(request_template):
    event = start_execution(request_template, "{}", {"content-type": "application/json"})
    assert event["headers"] == {"Content-Type": "application/json"}


def test_an_oversized_body_still_gets_preprocess_413(request_template):
    body = '{"instances": [' + ",".join(['{"user_id": "u"}'] * 20_000) + "]}"
    assert len(body) > workflow.MAX_BODY_BYTES
    event = start_execution(request_template, body)
    assert event["body"] == body[: workflow.MAX_BODY_BYTES + 1]
    assert len(event["body"].encode()) > workflow.MAX_BODY_BYTES  # Preprocess answers 413
    assert len(json.dumps(event)) < 256 * 1024  # inside Step Functions' input limit


def finished(responses, status: str, output: dict | None = None) -> tuple[str, dict]:
    integration = {"status": status, "output": json.dumps(output) if output else None}
    template = responses[None]["ResponseTemplates"]["application/json"]
    return render(template, Input(integration=integration))


@pytest.mark.parametrize(
    "reply",
    [
        workflow.response(200, {"prediction_id": "p1", "predictions": [{"label": "purchase"}]}),
        workflow.error_response(400, "invalid_request", "2 problem(s)", details=[{"a": "b"}]),
        workflow.error_response(404, "unknown_model", "no model named 'x'", models=["y"]),
        workflow.error_response(413, "payload_too_large", "too big"),
        workflow.error_response(502, "bad_model_output", 'the model said "no"'),
        workflow.ENDPOINT_UNAVAILABLE_RESPONSE,
    ],
)
def test_the_workflow_response_becomes_the_http_response(responses, reply):
    body, override = finished(responses, "SUCCEEDED", reply)
    assert override["status"] == reply["statusCode"]
    assert json.loads(body) == json.loads(reply["body"])
    if "Retry-After" in reply["headers"]:
        assert override["header"]["Retry-After"] == reply["headers"]["Retry-After"]
    else:
        assert "Retry-After" not in override["header"]


@pytest.mark.parametrize(("status", "code", "error"),
                         [("FAILED", 500, "internal_error"), ("TIMED_OUT", 504, "timeout")])
def test_a_failed_execution_is_a_5xx_never_a_200(responses, status, code, error):
    body, override = finished(responses, status)
    assert override["status"] == code
    assert json.loads(body) == {"error": error, "message": json.loads(body)["message"],
                                "request_id": REQUEST_ID}


@pytest.mark.parametrize(
    ("error_type", "code", "error"),
    [
        ("ThrottlingException", 429, "throttled"),
        ("ExecutionLimitExceeded", 429, "throttled"),
        ("InvalidExecutionInput", 413, "payload_too_large"),
        ("ValidationException", 413, "payload_too_large"),
        ("AccessDeniedException", 500, "internal_error"),
        (None, 500, "internal_error"),
    ],
)
def test_a_refused_start_maps_to_a_clear_status(responses, error_type, code, error):
    refused = responses[r"4\d{2}"]
    template = refused["ResponseTemplates"]["application/json"]
    body, override = render(template, Input(integration={"__type": error_type}))
    assert override["status"] == code
    assert json.loads(body)["error"] == error
    assert responses[r"5\d{2}"]["StatusCode"] == "503"


@pytest.mark.parametrize("model", ["no-such-model", "it's \"odd\""])
def test_unknown_model_gets_preprocess_404_body(synth, model):
    (method,) = [m["Properties"] for m in synth.resources("AWS::ApiGateway::Method").values()
                 if m["Properties"]["Integration"].get("Type") == "MOCK"
                 and m["Properties"]["Integration"]["IntegrationResponses"][0]["StatusCode"] == "404"]
    (response,) = method["Integration"]["IntegrationResponses"]
    assert response["StatusCode"] == "404"
    body, _ = render(response["ResponseTemplates"]["application/json"],
                     Input(path={"model": model}))
    expected = workflow.error_response(
        404, "unknown_model", f"no model named '{model}'", models=sorted(synth.config.models)
    )
    assert json.loads(body) == json.loads(expected["body"])


def test_gateway_refusals_render_as_json(synth):
    problem = 'instance failed to match exactly one schema (matched 0 out of 2) ["a\\b"]'
    for props in (r["Properties"] for r in
                  synth.resources("AWS::ApiGateway::GatewayResponse").values()):
        template = props["ResponseTemplates"]["application/json"]
        text = airspeed.Template(template).merge({"util": Util(), "context": {
            "requestId": REQUEST_ID,
            "error": {"messageString": '"Forbidden"', "validationErrorString": problem}}})
        reply = json.loads(text)
        assert reply["message"] == "Forbidden"
        if props["ResponseType"] == "BAD_REQUEST_BODY":
            assert reply["error"] == "invalid_request"
            assert reply["details"] == [{"instance": None, "field": None, "problem": problem}]


def test_openapi_document_is_served_as_the_contract_says(synth):
    """GET /v1/openapi.json renders the contract's document, with the stage's URL as its server."""
    (method,) = [m["Properties"] for m in synth.resources("AWS::ApiGateway::Method").values()
                 if m["Properties"]["HttpMethod"] == "GET"
                 and m["Properties"]["Integration"]["Type"] == "MOCK"]
    (response,) = method["Integration"]["IntegrationResponses"]
    template = resolve(response["ResponseTemplates"]["application/json"])
    domain = "abc.execute-api.eu-west-1.amazonaws.com"
    text = airspeed.Template(template).merge({"context": {"domainName": domain, "stage": "prod"}})
    document = contract.openapi([load_spec(m) for m in synth.config.models])
    assert json.loads(text) == document | {"servers": [{"url": f"https://{domain}/prod"}]}
    assert "$ref" in text and "#/components/schemas/" in text
