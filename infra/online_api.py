"""Online API: the HTTPS front door and the prediction workflow behind it.

    POST /v1/models/<model>/predict  -> StartSyncExecution of the EXPRESS workflow
                                        "<prefix>-online-<model>": Preprocess -> IsValid ->
                                        InvokeEndpoint -> Postprocess -> Respond
    POST /v1/models/{model}/predict  -> 404 unknown_model (any model not deployed)
    POST /v1/feedback                -> the feedback Lambda (proxy integration)

The workflow's states are built from inferline.workflow, the module the local runtime runs
the same steps from. The workflow answers with an API Gateway proxy response in
$.response; the integration response turns it into the real status code, headers and body,
and a failed or timed-out execution into a 5xx, never a 200.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from inferline import workflow
from inferline.clients import CLIENTS_ENV, Client, client_entry
from inferline.resources import ENV_VARS, ground_truth_key, prediction_log_key, refusal_log_key
from infra.config import Config, ConfigError
from infra.lambda_code import LambdaFunctions, log_group_with_retention
from infra.nag import acknowledge, arn_of
from infra.serving import ModelEndpoint, Serving
from infra.storage import Storage

STAGE = "prod"
# Step budget of one prediction, inside API Gateway's 29 s integration limit: the workflow
# times out first so the caller gets our 504, not a bare gateway timeout.
WORKFLOW_TIMEOUT = Duration.seconds(25)
ENDPOINT_TIMEOUT = Duration.seconds(8)
LAMBDA_RETRYABLE = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
# The top-level S3 prefixes each Lambda writes under, read off the shared key layout.
_WHEN = datetime(2000, 1, 1, tzinfo=UTC)
PREDICTIONS_PREFIX = prediction_log_key("m", _WHEN, "r").split("/", 1)[0] + "/*"
GROUND_TRUTH_PREFIX = ground_truth_key("m", _WHEN, "p").split("/", 1)[0] + "/*"
REFUSALS_PREFIX = refusal_log_key("m", _WHEN, "r").split("/", 1)[0] + "/*"


def workflow_name(prefix: str, model: str) -> str:
    return f"{prefix}-online-{model}"


def client_construct_id(name: str) -> str:
    """A client's name in construct and output ids: analytics-eu -> AnalyticsEu."""
    return "".join(part.capitalize() for part in name.split("-"))


class Functions(Construct):
    """The three Lambdas (built by LambdaFunctions), one least-privilege role each.

    Sizes: 1024 MB on the synchronous predict path buys ~0.6 vCPU, keeping the cold-start
    import of pydantic and Powertools near a second; feedback is off the hot path at 512 MB.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        storage: Storage,
        lambdas: LambdaFunctions,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._lambdas = lambdas

        features, predictions = storage.tables["features"], storage.tables["predictions"]
        data = storage.data
        self.preprocess = self._function(
            "preprocess",
            memory=1024,
            # One batched DynamoDB read and validation: well under a second when warm.
            timeout=Duration.seconds(6),
            env={ENV_VARS["features"]: features.table_name,
                 ENV_VARS["data"]: data.bucket_name},
        )
        features.grant(self.preprocess, "dynamodb:BatchGetItem", "dynamodb:GetItem")
        data.grant_put(self.preprocess, REFUSALS_PREFIX)  # the refusal log, for monitoring

        self.postprocess = self._function(
            "postprocess",
            memory=1024,
            # One BatchWriteItem and one S3 put of the prediction log.
            timeout=Duration.seconds(6),
            env={ENV_VARS["predictions"]: predictions.table_name,
                 ENV_VARS["data"]: data.bucket_name},
        )
        predictions.grant(self.postprocess, "dynamodb:PutItem", "dynamodb:BatchWriteItem")
        data.grant_put(self.postprocess, PREDICTIONS_PREFIX)

        self.feedback = self._function(
            "feedback",
            memory=512,
            # A read and an update per prediction id, many per request: inside the API's 29 s.
            timeout=Duration.seconds(20),
            env={ENV_VARS["predictions"]: predictions.table_name,
                 ENV_VARS["data"]: data.bucket_name},
        )
        predictions.grant(
            self.feedback, "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"
        )
        data.grant_put(self.feedback, GROUND_TRUTH_PREFIX)

        data_arn = arn_of(data)
        for fn, prefix in ((self.preprocess, REFUSALS_PREFIX),
                           (self.postprocess, PREDICTIONS_PREFIX),
                           (self.feedback, GROUND_TRUTH_PREFIX)):
            policy = fn.role.node.find_child("DefaultPolicy")  # type: ignore[union-attr]
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::{data_arn}/{prefix}]",
                        f"One object per request or prediction id under {prefix[:-1]} only.")
            acknowledge(policy, "AwsSolutions-IAM5[Action::s3:Abort*]",
                        "grant_put includes aborting the function's own multipart uploads.")

    @property
    def all(self) -> list[lambda_.Function]:
        return [self.preprocess, self.postprocess, self.feedback]

    def _function(
        self, name: str, *, memory: int, timeout: Duration, env: dict[str, str]
    ) -> lambda_.Function:
        return self._lambdas.function(
            self,
            name.capitalize(),
            name=name,
            handler=f"{name}.handler.handler",
            memory=memory,
            timeout=timeout,
            env={**env, "RESOURCE_PREFIX": self._config.prefix},
        )


class OnlineWorkflow(Construct):
    """One model's EXPRESS workflow, its states named and ordered as inferline.workflow says."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        endpoint: ModelEndpoint,
        functions: Functions,
    ) -> None:
        super().__init__(scope, construct_id)

        # Each Lambda's answer becomes the whole state: Preprocess drops the raw body (and
        # its PII); Postprocess leaves only the response.
        preprocess = tasks.LambdaInvoke(
            self,
            workflow.PREPROCESS,
            lambda_function=functions.preprocess,
            payload_response_only=True,
            retry_on_service_exceptions=False,
        )
        postprocess = tasks.LambdaInvoke(
            self,
            workflow.POSTPROCESS,
            lambda_function=functions.postprocess,
            payload_response_only=True,
            retry_on_service_exceptions=False,
        )
        for step in (preprocess, postprocess):
            # One quick retry of Lambda's own hiccups; the caller is waiting.
            step.add_retry(errors=LAMBDA_RETRYABLE, interval=Duration.seconds(1),
                           max_attempts=1, backoff_rate=1)
        invoke = tasks.CallAwsService(
            self,
            workflow.INVOKE_ENDPOINT,
            service="sagemakerruntime",
            action="invokeEndpoint",
            iam_action="sagemaker:InvokeEndpoint",
            iam_resources=[endpoint.endpoint_arn],
            parameters={
                "EndpointName": endpoint.endpoint_name,
                "ContentType": "application/json",
                "Accept": "application/json",
                "Body": sfn.JsonPath.string_at("$.endpoint_body"),
            },
            result_selector={"Body": sfn.JsonPath.string_at("$.Body")},
            result_path="$.endpoint",
            task_timeout=sfn.Timeout.duration(ENDPOINT_TIMEOUT),
        )
        unavailable = sfn.Pass(
            self,
            workflow.ENDPOINT_UNAVAILABLE,
            result=sfn.Result.from_object(workflow.ENDPOINT_UNAVAILABLE_RESPONSE),
            result_path="$.response",
        )
        respond = sfn.Succeed(self, workflow.RESPOND, output_path="$.response")
        invoke.add_catch(unavailable, errors=[sfn.Errors.ALL], result_path=sfn.JsonPath.DISCARD)
        unavailable.next(respond)
        invoke.next(postprocess)
        postprocess.next(respond)
        is_valid = (
            sfn.Choice(self, workflow.IS_VALID)
            .when(sfn.Condition.boolean_equals("$.valid", True), invoke)
            .otherwise(respond)
        )

        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=workflow_name(config.prefix, endpoint.model),
            state_machine_type=sfn.StateMachineType.EXPRESS,
            definition_body=sfn.DefinitionBody.from_chainable(preprocess.next(is_valid)),
            timeout=WORKFLOW_TIMEOUT,
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=log_group_with_retention(self, "Logs", config),
                level=sfn.LogLevel.ALL,
                include_execution_data=False,  # requests hold PII until Preprocess redacts it
            ),
        )
        policy = self.state_machine.role.node.find_child("DefaultPolicy")
        acknowledge(policy, "AwsSolutions-IAM5[Resource::*]", "X-Ray and CloudWatch Logs "
                    "delivery actions have no resource-level permissions.")
        for fn in (functions.preprocess, functions.postprocess):
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::{arn_of(fn)}:*]",
                        "Invoking a Lambda by ARN covers its versions and aliases (CDK's "
                        "grant for LambdaInvoke).")


class OnlineApi(Construct):
    """Lambdas, one workflow per model, and the REST API with keys, throttling and logs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        storage: Storage,
        serving: Serving,
        lambdas: LambdaFunctions,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.functions = Functions(
            self, "Functions", config=config, storage=storage, lambdas=lambdas
        )
        self.workflows: dict[str, OnlineWorkflow] = {
            model: OnlineWorkflow(
                self,
                f"{endpoint.node.id}Workflow",
                config=config,
                endpoint=endpoint,
                functions=self.functions,
            )
            for model, endpoint in serving.endpoints.items()
        }

        self.access_logs = log_group_with_retention(self, "AccessLogs", config)
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{config.prefix}-api",
            description="inferline: online predictions and feedback",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,  # the account-level role that stage logging needs
            default_method_options=apigw.MethodOptions(api_key_required=True),
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                tracing_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # full request logging would write PII
                throttling_rate_limit=config.api_rate_limit,
                throttling_burst_limit=config.api_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
            ),
        )
        self._gateway_responses()

        self._start_role = iam.Role(
            self,
            "StartSyncExecutionRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway: start the online workflows",
        )
        for flow in self.workflows.values():
            flow.state_machine.grant_start_sync_execution(self._start_role)

        # One key and usage plan per client. The keys stand alone (not api.add_api_key, which
        # binds a key to the stage): the Lambdas' API_CLIENTS names the key ids, and a key bound
        # to the stage would close a cycle Lambda -> key -> stage -> deployment -> method -> Lambda.
        # The usage plan is what ties a key to the stage.
        self.api_keys: dict[str, apigw.ApiKey] = {}
        for client in config.clients:
            pascal = client_construct_id(client.name)
            if any(client_construct_id(name) == pascal for name in self.api_keys):
                raise ConfigError(f"clients: '{client.name}' and another client's name make the same "
                                  f"resource name {pascal}; rename one")  # fmt: skip
            key = apigw.ApiKey(
                self,
                f"Key{pascal}",
                api_key_name=f"{config.prefix}-{client.name}",
                description=f"inferline client {client.name} (value: aws apigateway get-api-key)",
            )
            plan = self.api.add_usage_plan(
                f"UsagePlan{pascal}",
                name=f"{config.prefix}-{client.name}",
                throttle=apigw.ThrottleSettings(
                    rate_limit=client.rate_limit, burst_limit=client.burst_limit
                ),
                quota=apigw.QuotaSettings(limit=client.daily_quota, period=apigw.Period.DAY)
                if client.daily_quota else None,
            )
            plan.add_api_key(key)
            plan.add_api_stage(stage=self.api.deployment_stage)
            self.api_keys[client.name] = key
        # Preprocess records the caller's client on the prediction log.
        self.functions.preprocess.add_environment(CLIENTS_ENV, self.clients_variable())

        acknowledge(self.api, "AwsSolutions-APIG2", "Bodies are validated against the model "
                    "spec by preprocess/feedback, which name every bad field in one 4xx; a "
                    "gateway model would duplicate the spec and answer in another shape.")
        acknowledge(self.api, "AwsSolutions-APIG3", "Clients are machines holding API keys "
                    "with usage-plan throttling and quotas; a WAF can be attached to the stage "
                    "where the API is exposed wider.")
        acknowledge(self.api, "AwsSolutions-APIG4", "Callers authenticate with API keys "
                    "(usage plans per client), the design's choice for service-to-service "
                    "predictions.")
        acknowledge(self.api, "AwsSolutions-COG4", "No Cognito: callers are services "
                    "identified by API keys, not users.")
        acknowledge(self.api.node.find_child("CloudWatchRole"),
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                    "service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
                    "AWS's managed policy for the account-wide API Gateway logging role.")

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def api_key(self) -> apigw.ApiKey:
        """The first client's key (the one the ApiKeyId output names)."""
        return next(iter(self.api_keys.values()))

    def clients_variable(self) -> str:
        """The API_CLIENTS value (inferline.clients) naming each client's key id (a token) and
        recipients, for the Lambdas that need the caller's client."""
        recipients = {client.name: client.recipients for client in self._config.clients}
        return Stack.of(self).to_json_string([
            client_entry(key.key_id, Client(name, recipients[name])) for name, key in self.api_keys.items()
        ])

    def predict_wiring(self, model: str | None) -> dict[str, Any]:
        """POST /v1/models/<model>/predict: the model's workflow, started synchronously; on the
        templated path (no workflow), the 404 Preprocess gives for an unknown model."""
        if model is None:
            integration = apigw.MockIntegration(
                passthrough_behavior=apigw.PassthroughBehavior.NEVER,
                request_templates={"application/json": '{"statusCode": 404}'},
                integration_responses=[apigw.IntegrationResponse(
                    status_code="404",
                    response_templates={"application/json": unknown_model_template(self._config.models)},
                )],
            )  # fmt: skip
            return {"integration": integration, "method_responses": METHOD_RESPONSES}
        flow = self.workflows[model]
        integration = apigw.AwsIntegration(
            service="states",
            action="StartSyncExecution",
            integration_http_method="POST",
            options=apigw.IntegrationOptions(
                credentials_role=self._start_role,
                passthrough_behavior=apigw.PassthroughBehavior.NEVER,
                request_templates={"application/json": start_execution_template(
                    flow.state_machine.state_machine_arn, model
                )},
                integration_responses=EXECUTION_RESPONSES,
            ),
        )  # fmt: skip
        return {"integration": integration, "method_responses": METHOD_RESPONSES}

    def feedback_wiring(self, model: str | None = None) -> dict[str, Any]:
        return {"integration": apigw.LambdaIntegration(self.functions.feedback, allow_test_invoke=False)}

    def _gateway_responses(self) -> None:
        """API Gateway's own refusals in the same JSON shape as the workflow's errors."""
        def add(kind: apigw.ResponseType, status: str, error: str,
                headers: dict[str, str] | None = None, details: str = "") -> None:
            self.api.add_gateway_response(
                f"{error.title().replace('_', '')}{status}",
                type=kind,
                status_code=status,
                response_headers={"Content-Type": "'application/json'", **(headers or {})},
                templates={"application/json": (
                    f'{{"error":"{error}","message":$context.error.messageString,{details}'
                    '"request_id":"$context.requestId"}'
                )},
            )

        # a body the contract's schema refuses (api_routes): what failed, as a detail
        problem = _ESCAPE.format("$context.error.validationErrorString")
        add(apigw.ResponseType.BAD_REQUEST_BODY, "400", "invalid_request",
            details=f'"details":[{{"instance":null,"field":null,"problem":"{problem}"}}],')

        add(apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN, "404", "not_found")
        add(apigw.ResponseType.INVALID_API_KEY, "403", "forbidden")
        add(apigw.ResponseType.THROTTLED, "429", "throttled", {"Retry-After": "'1'"})
        add(apigw.ResponseType.QUOTA_EXCEEDED, "429", "quota_exceeded")
        add(apigw.ResponseType.REQUEST_TOO_LARGE, "413", "payload_too_large")
        add(apigw.ResponseType.UNSUPPORTED_MEDIA_TYPE, "415", "unsupported_media_type")
        add(apigw.ResponseType.INTEGRATION_TIMEOUT, "504", "timeout")
        add(apigw.ResponseType.DEFAULT_4_XX, "400", "bad_request")
        add(apigw.ResponseType.DEFAULT_5_XX, "500", "internal_error")



# -- API Gateway mapping templates (VTL) --------------------------------------------------

# Access log: what an operator needs to follow one request; no source IP or user agent.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "apiKeyId": "$context.identity.apiKeyId",
    "errorMessage": "$context.error.message",
    "xrayTraceId": "$context.xrayTraceId",
}

# escapeJavaScript escapes ' as \' which JSON does not allow: undo that one.
_ESCAPE = '$util.escapeJavaScript({}).replaceAll("\\\\\'", "\'")'


def start_execution_template(state_machine_arn: str, model: str) -> str:
    """StartSyncExecution of the model's workflow with an API-Gateway-proxy-shaped input:
    {"body": <raw body string>, "pathParameters": {"model"}, "requestContext": {"requestId",
    "identity": {"apiKeyId"}}, "headers": {"Content-Type"}} (the caller's key id, never the key).

    The input is a JSON document inside a JSON string, so the body is escaped twice. A body
    over MAX_BODY_BYTES is cut to one character past the limit: Preprocess still answers
    its 413, and an oversized body never hits Step Functions' 256 KB input limit.
    """
    limit = workflow.MAX_BODY_BYTES
    once = _ESCAPE.format("$body")
    twice = _ESCAPE.format("$bodyOnce")
    lines = [
        "#set($body = $input.body)",
        f"#if($body.length() > {limit})#set($body = $body.substring(0, {limit + 1}))#end",
        f"#set($bodyOnce = {once})",
        f"#set($bodyTwice = {twice})",
        '#set($contentType = "")',
        "#foreach($name in $input.params().header.keySet())",
        '#if($name.equalsIgnoreCase("Content-Type"))'
        "#set($contentType = $input.params().header.get($name))#end",
        "#end",
        f"#set($contentTypeOnce = {_ESCAPE.format('$contentType')})",
        f"#set($contentTypeTwice = {_ESCAPE.format('$contentTypeOnce')})",
        "{",
        f'  "stateMachineArn": "{state_machine_arn}",',
        '  "input": "{\\"body\\":\\"$bodyTwice\\",'
        f'\\"pathParameters\\":{{\\"model\\":\\"{model}\\"}},'
        '\\"requestContext\\":{\\"requestId\\":\\"$context.requestId\\",'
        '\\"identity\\":{\\"apiKeyId\\":\\"$context.identity.apiKeyId\\"}},'
        '\\"headers\\":{\\"Content-Type\\":\\"$contentTypeTwice\\"}}"',
        "}",
    ]
    return "\n".join(lines)


def _error_body(error: str, message: str) -> str:
    return (
        f'{{"error":"{error}","message":"{message}","request_id":"$context.requestId"}}'
    )


# The execution finished: SUCCEEDED carries the workflow's proxy response in `output`.
SUCCEEDED_TEMPLATE = "\n".join([
    "#set($status = $input.path('$.status'))",
    "#if($status == 'SUCCEEDED')",
    "#set($reply = $util.parseJson($input.path('$.output')))",
    "#set($context.responseOverride.status = $reply.statusCode)",
    "#if($reply.headers && $reply.headers.get('Retry-After'))",
    "#set($context.responseOverride.header.Retry-After = $reply.headers.get('Retry-After'))",
    "#end",
    "$reply.body",
    "#elseif($status == 'TIMED_OUT')",
    "#set($context.responseOverride.status = 504)",
    _error_body("timeout", "The prediction took too long; retry shortly."),
    "#else",
    "#set($context.responseOverride.status = 500)",
    _error_body("internal_error", "The prediction failed; quote the request_id to support."),
    "#end",
])

# Step Functions refused to start the execution (4xx from its API).
REFUSED_TEMPLATE = "\n".join([
    "#set($type = \"$input.path('$.__type')\")",
    "#if($type.contains('Throttling') || $type.contains('ExecutionLimitExceeded'))",
    "#set($context.responseOverride.status = 429)",
    "#set($context.responseOverride.header.Retry-After = '1')",
    _error_body("throttled", "Too many predictions at once; retry shortly."),
    "#elseif($type.contains('InvalidExecutionInput') || $type.contains('ValidationException'))",
    "#set($context.responseOverride.status = 413)",
    _error_body("payload_too_large",
                f"The request body is over {workflow.MAX_BODY_BYTES} bytes."),
    "#else",
    "#set($context.responseOverride.status = 500)",
    _error_body("internal_error", "The prediction could not start; quote the request_id."),
    "#end",
])

EXECUTION_RESPONSES = [
    apigw.IntegrationResponse(
        selection_pattern=r"4\d{2}",
        status_code="500",
        response_templates={"application/json": REFUSED_TEMPLATE},
    ),
    apigw.IntegrationResponse(
        selection_pattern=r"5\d{2}",
        status_code="503",
        response_parameters={"method.response.header.Retry-After": "'5'"},
        response_templates={"application/json": _error_body(
            "service_unavailable", "The workflow service is unavailable; retry shortly."
        )},
    ),
    apigw.IntegrationResponse(
        status_code="200", response_templates={"application/json": SUCCEEDED_TEMPLATE}
    ),
]

# Every status the predict route answers with (the overrides above pick among them).
METHOD_RESPONSES = [
    apigw.MethodResponse(
        status_code=str(status),
        response_parameters={"method.response.header.Retry-After": False},
        response_models={"application/json": apigw.Model.EMPTY_MODEL},
    )
    for status in (200, 400, 404, 413, 429, 500, 502, 503, 504)
]


def unknown_model_template(models: tuple[str, ...]) -> str:
    """The body Preprocess gives for an unknown model, for any model with no workflow."""
    listed = json.dumps(sorted(models), separators=(",", ":"))
    name = _ESCAPE.format("$input.params('model')")
    return (
        f"#set($model = {name})\n"
        f'{{"error":"unknown_model","message":"no model named \'$model\'","models":{listed}}}'
    )
