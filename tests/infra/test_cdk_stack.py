"""CDK assertions on the wiring: names from inferline.resources, least-privilege IAM, the API's
keys and limits, the endpoint's instance type and deployment safety, alarms and storage."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match
from cfnlint.api import lint
from infra_helpers import actions_on, resolve
from infra_helpers import role_statements as statements_of_role

from inferline import contract
from inferline.clients import CLIENTS_ENV
from inferline.monitoring import ALARMS, alarm_name
from inferline.resources import BUCKETS, ENV_VARS, TABLES, endpoint_name, table_name
from inferline.spec import load_spec
from infra.app import build_app
from infra.config import ConfigError, load_config
from infra.online_api import client_construct_id
from infra.stack import InferlineStack

# -- helpers ---------------------------------------------------------------------------


def function_props(synth, name: str) -> dict:
    fn = getattr(synth.stack.online_api.functions, name)
    return synth.template["Resources"][synth.logical_id(fn)]["Properties"]


def role_statements(synth, name: str) -> list[dict]:
    """Every IAM statement attached to a function's role, intrinsics resolved."""
    return statements_of_role(synth.template, function_props(synth, name)["Role"]["Fn::GetAtt"][0])


def table_ref(synth, name: str) -> str:
    return f"<{synth.logical_id(synth.stack.storage.tables[name])}.Arn>"


def data_bucket_arn(synth) -> str:
    return f"<{synth.logical_id(synth.stack.storage.data)}.Arn>"


# -- storage ---------------------------------------------------------------------------


def test_tables_are_named_and_keyed_by_the_shared_definition(synth):
    for name, definition in TABLES.items():
        table = synth.template["Resources"][synth.logical_id(synth.stack.storage.tables[name])]
        props = table["Properties"]
        assert props["TableName"] == table_name(synth.config.prefix, name)
        assert props["KeySchema"] == [{"AttributeName": definition.partition_key, "KeyType": "HASH"}]
        if definition.ttl_attribute:
            assert props["TimeToLiveSpecification"] == {
                "AttributeName": definition.ttl_attribute,
                "Enabled": True,
            }
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert table["DeletionPolicy"] == "Retain"


def test_buckets_are_named_private_encrypted_versioned_and_tls_only(synth):
    buckets = synth.stack.storage.buckets
    assert set(buckets) == set(BUCKETS)
    for name, bucket in buckets.items():
        props = synth.template["Resources"][synth.logical_id(bucket)]["Properties"]
        assert resolve(props["BucketName"]) == f"{synth.config.prefix}-{name}-<AWS::AccountId>"
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert (
            props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
                "ServerSideEncryptionByDefault"
            ]["SSEAlgorithm"]
            == "AES256"
        )
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert "LoggingConfiguration" in props
    # every bucket, the access-log bucket included, refuses plain HTTP
    policies = synth.resources("AWS::S3::BucketPolicy")
    assert len(policies) == len(synth.resources("AWS::S3::Bucket"))
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


# -- Lambdas ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tables", "buckets"),
    [
        ("preprocess", ["features"], ["data"]),
        ("postprocess", ["predictions"], ["data"]),
        ("feedback", ["predictions"], ["data"]),
    ],
)
def test_each_lambda_is_told_exactly_its_resources(synth, name, tables, buckets):
    props = function_props(synth, name)
    env = props["Environment"]["Variables"]
    storage = synth.stack.storage
    expected = {ENV_VARS[t]: {"Ref": synth.logical_id(storage.tables[t])} for t in tables}
    expected |= {ENV_VARS[b]: {"Ref": synth.logical_id(storage.buckets[b])} for b in buckets}
    resource_vars = {k: v for k, v in env.items() if k in ENV_VARS.values()}
    assert resource_vars == expected
    assert env["INFERLINE_SPECS_DIR"] == "/var/task/specs"
    assert env["RESOURCE_PREFIX"] == synth.config.prefix
    assert env["POWERTOOLS_SERVICE_NAME"] == name
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == synth.config.prefix


@pytest.mark.parametrize("name", ["preprocess", "postprocess", "feedback"])
def test_lambdas_runtime_layer_tracing_and_logs(synth, name):
    props = function_props(synth, name)
    assert props["Handler"] == f"{name}.handler.handler"
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["Timeout"] < 29 and props["MemorySize"] >= 512
    (layer,) = props["Layers"]
    parameter = synth.template["Parameters"][layer["Ref"]]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert parameter["Default"].startswith("/aws/service/powertools/python/arm64/python3.12/3.")
    log_group = synth.template["Resources"][props["LoggingConfig"]["LogGroup"]["Ref"]]
    assert log_group["Properties"]["RetentionInDays"] == synth.config.log_retention_days


def test_preprocess_reads_features_and_writes_the_refusal_log_only(synth):
    statements = role_statements(synth, "preprocess")
    assert actions_on(statements, "dynamodb:") == {
        table_ref(synth, "features"): {"dynamodb:BatchGetItem", "dynamodb:GetItem"}
    }
    s3 = actions_on(statements, "s3:")
    assert set(s3) == {f"{data_bucket_arn(synth)}/refusals/*"}
    assert all(a.startswith(("s3:PutObject", "s3:Abort")) for a in s3.popitem()[1])


def test_postprocess_writes_the_prediction_log_only(synth):
    statements = role_statements(synth, "postprocess")
    assert actions_on(statements, "dynamodb:") == {
        table_ref(synth, "predictions"): {"dynamodb:PutItem", "dynamodb:BatchWriteItem"}
    }
    s3 = actions_on(statements, "s3:")
    assert set(s3) == {f"{data_bucket_arn(synth)}/predictions/*"}
    assert all(a.startswith(("s3:PutObject", "s3:Abort")) for a in s3.popitem()[1])


def test_feedback_writes_ground_truth_only(synth):
    statements = role_statements(synth, "feedback")
    assert actions_on(statements, "dynamodb:") == {
        table_ref(synth, "predictions"): {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"}
    }
    s3 = actions_on(statements, "s3:")
    assert set(s3) == {f"{data_bucket_arn(synth)}/ground-truth/*"}
    assert all(a.startswith(("s3:PutObject", "s3:Abort")) for a in s3.popitem()[1])


@pytest.mark.parametrize("name", ["preprocess", "postprocess", "feedback"])
def test_lambda_roles_have_no_managed_policies_and_log_to_their_own_group(synth, name):
    props = function_props(synth, name)
    role = synth.template["Resources"][props["Role"]["Fn::GetAtt"][0]]["Properties"]
    assert "ManagedPolicyArns" not in role
    logs = actions_on(role_statements(synth, name), "logs:")
    assert logs == {
        f"<{props['LoggingConfig']['LogGroup']['Ref']}.Arn>": {"logs:CreateLogStream", "logs:PutLogEvents"}
    }


# -- the API ---------------------------------------------------------------------------


def test_every_method_requires_an_api_key(synth):
    methods = synth.resources("AWS::ApiGateway::Method")
    assert methods
    for method in methods.values():
        assert method["Properties"]["ApiKeyRequired"] is True


def test_routes(synth):
    paths = {}
    resources = synth.resources("AWS::ApiGateway::Resource")
    for logical_id, res in resources.items():
        parent = res["Properties"]["ParentId"]
        parts = [res["Properties"]["PathPart"]]
        while "Ref" in parent:
            parent_res = resources[parent["Ref"]]["Properties"]
            parts.insert(0, parent_res["PathPart"])
            parent = parent_res["ParentId"]
        paths[logical_id] = "/" + "/".join(parts)
    routes = {
        (m["Properties"]["HttpMethod"], paths[m["Properties"]["ResourceId"]["Ref"]]): m["Properties"][
            "Integration"
        ]
        for m in synth.resources("AWS::ApiGateway::Method").values()
    }
    # exactly the API contract's paths: the OpenAPI document of the served models
    document = contract.openapi([load_spec(m) for m in synth.config.models])
    expected = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    # per-model routes: every model's static resource and {model} (API Gateway has no fallback)
    assert ("POST", "/v1/models/{model}/batch-jobs") in expected
    assert {("POST", f"/v1/models/{m}/predict") for m in synth.config.models} <= expected
    assert set(routes) == expected
    for model in synth.config.models:
        integration = routes[("POST", f"/v1/models/{model}/predict")]
        assert integration["Type"] == "AWS"
        assert resolve(integration["Uri"]).endswith(":states:action/StartSyncExecution")
        assert integration["PassthroughBehavior"] == "NEVER"
    assert routes[("POST", "/v1/models/{model}/predict")]["Type"] == "MOCK"
    assert routes[("POST", "/v1/feedback")]["Type"] == "AWS_PROXY"
    assert routes[("GET", contract.OPENAPI_PATH)]["Type"] == "MOCK"
    proxied = {("POST", f"/v1/models/{m}/predict") for m in [*synth.config.models, "{model}"]}
    for route in expected - proxied - {("GET", contract.OPENAPI_PATH)}:
        assert routes[route]["Type"] == "AWS_PROXY", route


def test_feedback_and_batch_job_bodies_are_validated_by_the_contracts_schemas(synth):
    """Draft 4 models from the contract's schemas on exactly those two routes; predict is not
    validated at the gateway (Preprocess logs each refusal for monitoring)."""
    models = {m["Properties"]["Name"]: m["Properties"]
              for m in synth.resources("AWS::ApiGateway::Model").values()}
    assert set(models) == {"FeedbackRequest", "BatchJobRequest"}
    feedback = models["FeedbackRequest"]["Schema"]
    assert feedback["required"] == ["feedback"] and feedback["additionalProperties"] is False
    assert feedback["properties"]["feedback"]["maxItems"] == contract.MAX_FEEDBACK_ITEMS
    item = feedback["properties"]["feedback"]["items"]
    assert item["properties"]["prediction_id"] == {"type": "string", "minLength": 1, "maxLength": 64}
    batch = models["BatchJobRequest"]["Schema"]
    assert batch["required"] == ["email"] and "$ref" not in json.dumps(batch)
    validated = [m["Properties"] for m in synth.resources("AWS::ApiGateway::Method").values()
                 if m["Properties"].get("RequestModels")]
    assert len(validated) == 1 + len(synth.config.models)  # feedback, each model's batch-jobs
    for method in validated:
        assert method["HttpMethod"] == "POST" and "RequestValidatorId" in method
    validator = synth.one("AWS::ApiGateway::RequestValidator")["Properties"]
    assert validator["ValidateRequestBody"] is True and not validator.get("ValidateRequestParameters")


TWO_CLIENTS = {
    "analytics": {"rateLimit": 5, "burstLimit": 10, "dailyQuota": 1000, "recipients": ["example.com"]},
    "partner": {"rateLimit": 2, "burstLimit": 4, "dailyQuota": 0, "recipients": ["ops@partner.example"]},
}


@pytest.fixture(scope="module")
def two_clients(tmp_path_factory) -> tuple[dict, list[str]]:
    """The app synthesized once more with two clients (~10 s): its template and the cdk-nag
    failure, if any."""
    outdir = tmp_path_factory.mktemp("cdk.out.clients")
    app = build_app({"clients": TWO_CLIENTS}, outdir=str(outdir))
    stack = next(c for c in app.node.children if isinstance(c, InferlineStack))
    errors = []
    try:
        app.synth()
    except Exception as exc:  # cdk-nag findings (or another validation failure)
        errors.append(str(exc))
    template = json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
    return template, errors


def _of_type(template: dict, kind: str) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == kind}


def _plans_by_client(template: dict, prefix: str) -> dict[str, tuple[dict, list[str]]]:
    """{client: (its usage plan's properties, the ApiKey logical ids of the plan's keys)}."""
    plans = _of_type(template, "AWS::ApiGateway::UsagePlan")
    plan_keys = _of_type(template, "AWS::ApiGateway::UsagePlanKey").values()
    found = {}
    for plan_id, plan in plans.items():
        assert plan["UsagePlanName"].startswith(f"{prefix}-")
        keys = [k["KeyId"]["Ref"] for k in plan_keys if k["UsagePlanId"] == {"Ref": plan_id}]
        found[plan["UsagePlanName"].removeprefix(f"{prefix}-")] = (plan, keys)
    return found


def _check_keys_and_plans(template: dict, prefix: str, clients) -> None:
    keys = _of_type(template, "AWS::ApiGateway::ApiKey")
    key_of = {k["Name"].removeprefix(f"{prefix}-"): key_id for key_id, k in keys.items()}
    assert sorted(key_of) == sorted(c.name for c in clients)
    assert not any("StageKeys" in k for k in keys.values())  # a plan binds a key to the stage
    (stage,) = _of_type(template, "AWS::ApiGateway::Stage")
    plans = _plans_by_client(template, prefix)
    assert sorted(plans) == sorted(key_of)
    for client in clients:
        plan, plan_keys = plans[client.name]
        assert plan["Throttle"] == {"RateLimit": client.rate_limit, "BurstLimit": client.burst_limit}
        if client.daily_quota:
            assert plan["Quota"] == {"Limit": client.daily_quota, "Period": "DAY"}
        else:
            assert "Quota" not in plan
        assert plan_keys == [key_of[client.name]]  # exactly its own key
        (api_stage,) = plan["ApiStages"]
        assert api_stage["Stage"] == {"Ref": stage}
    for plan_key in _of_type(template, "AWS::ApiGateway::UsagePlanKey").values():
        assert plan_key["KeyType"] == "API_KEY"


def _clients_variables(template: dict) -> dict[str, list[dict]]:
    """{function logical id: its API_CLIENTS entries, key ids as <ApiKey logical id>}."""
    found = {}
    for fn_id, props in _of_type(template, "AWS::Lambda::Function").items():
        value = props.get("Environment", {}).get("Variables", {}).get(CLIENTS_ENV)
        if value is not None:
            found[fn_id] = json.loads(resolve(value))
    return found


def _check_clients_variables(template: dict, prefix: str, clients, wanted: set[str]) -> None:
    keys = _of_type(template, "AWS::ApiGateway::ApiKey")
    key_of = {k["Name"].removeprefix(f"{prefix}-"): key_id for key_id, k in keys.items()}
    expected = [{"key_id": f"<{key_of[c.name]}>", "client": c.name, "recipients": list(c.recipients)}
                for c in clients]
    variables = _clients_variables(template)
    assert set(variables) == wanted  # no other Lambda is told the clients
    for entries in variables.values():
        assert entries == expected


def _submit_and_preprocess(template: dict) -> set[str]:
    return {fn_id for fn_id, props in _of_type(template, "AWS::Lambda::Function").items()
            if props["Handler"] in ("preprocess.handler.handler", "batch.api_handler.submit")}


def test_the_default_client_has_a_key_and_usage_plan(synth):
    (client,) = synth.config.clients
    assert (client.rate_limit, client.burst_limit, client.daily_quota) == (
        synth.config.api_rate_limit, synth.config.api_burst_limit, synth.config.api_daily_quota)
    _check_keys_and_plans(synth.template, synth.config.prefix, synth.config.clients)
    stack = synth.stack
    assert set(stack.online_api.api_keys) == {client.name}
    assert stack.online_api.api_key is stack.online_api.api_keys[client.name]


def test_preprocess_and_batch_submit_are_told_the_clients_keys(synth):
    stack = synth.stack
    wanted = {synth.logical_id(stack.online_api.functions.preprocess), synth.logical_id(stack.batch.submit)}
    assert wanted == _submit_and_preprocess(synth.template)
    _check_clients_variables(synth.template, synth.config.prefix, synth.config.clients, wanted)


def test_each_client_has_its_own_key_usage_plan_and_output(two_clients):
    template, errors = two_clients
    prefix = load_config({}).prefix
    clients = load_config({"clients": TWO_CLIENTS}).clients
    _check_keys_and_plans(template, prefix, clients)
    wanted = _submit_and_preprocess(template)
    assert len(wanted) == 2
    _check_clients_variables(template, prefix, clients, wanted)
    keys = {k["Name"]: key_id for key_id, k in _of_type(template, "AWS::ApiGateway::ApiKey").items()}
    outputs = template["Outputs"]
    for name, output in (("Analytics", "analytics"), ("Partner", "partner")):
        assert outputs[f"ApiKeyId{name}"]["Value"] == {"Ref": keys[f"{prefix}-{output}"]}
        assert outputs[f"ApiKeyId{name}"]["Description"] == f"API key id of client {output}"
    # the first client's key keeps the single-key outputs
    assert outputs["ApiKeyId"]["Value"] == {"Ref": keys[f"{prefix}-analytics"]}
    assert "analytics" in outputs["ApiKeyId"]["Description"]
    assert {"Ref": keys[f"{prefix}-analytics"]} in outputs["GetApiKeyCommand"]["Value"]["Fn::Join"][1]
    assert not errors, f"cdk-nag or validation failed:\n{errors[0]}"
    matches = lint(json.dumps(template), regions=["us-east-1"])
    assert not [m for m in matches if m.rule.id.startswith("E")]


def test_clients_whose_names_make_the_same_id_are_refused():
    with pytest.raises(ConfigError, match="make the same resource name X1"):
        build_app({"clients": {"x-1": {}, "x1": {}}})


def test_stage_logs_traces_and_throttles(synth):
    stage = synth.one("AWS::ApiGateway::Stage")["Properties"]
    assert stage["TracingEnabled"] is True
    assert "DestinationArn" in stage["AccessLogSetting"]
    assert "$context.identity.sourceIp" not in stage["AccessLogSetting"]["Format"]
    (settings,) = stage["MethodSettings"]
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False
    assert settings["ThrottlingRateLimit"] == synth.config.api_rate_limit


def test_api_gateway_can_start_only_the_online_workflows(synth):
    machines = [synth.logical_id(w.state_machine) for w in synth.stack.online_api.workflows.values()]
    role = synth.stack.online_api.node.find_child("StartSyncExecutionRole")
    role_id = synth.logical_id(role)
    (policy,) = [
        p
        for p in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "states:StartSyncExecution"
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    assert sorted(r["Ref"] for r in resources) == sorted(machines)


def test_refusals_answer_json(synth):
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synth.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"
    assert responses["THROTTLED"]["StatusCode"] == "429"
    assert responses["REQUEST_TOO_LARGE"]["StatusCode"] == "413"
    for props in responses.values():
        assert '"error":' in props["ResponseTemplates"]["application/json"]


# -- serving ---------------------------------------------------------------------------


def test_endpoint_config_uses_the_configured_instance(synth):
    config = synth.config
    assert config.instance_type == "ml.g4dn.xlarge"  # the GPU default, from cdk.json
    for props in (c["Properties"] for c in synth.resources("AWS::SageMaker::EndpointConfig").values()):
        (variant,) = props["ProductionVariants"]
        assert variant["InstanceType"] == config.instance_type
        assert variant["InitialInstanceCount"] == config.instance_count
        capture = props["DataCaptureConfig"]
        assert capture["EnableCapture"] is True
        assert capture["InitialSamplingPercentage"] == config.data_capture_percent
        assert resolve(capture["DestinationS3Uri"]).startswith(
            f"s3://<{synth.logical_id(synth.stack.storage.data)}>/data-capture/"
        )


def test_model_is_isolated_and_serves_the_image_and_model_data(synth):
    for model in synth.config.models:
        endpoint = synth.stack.serving.endpoints[model]
        props = synth.template["Resources"][synth.logical_id(endpoint.node.find_child("Model"))]["Properties"]
        assert props["EnableNetworkIsolation"] is True
        container = props["PrimaryContainer"]
        assert ".dkr.ecr." in resolve(container["Image"])
        # no trained model is needed to synth: the URL is a deploy-time parameter
        parameter = container["ModelDataUrl"]["Ref"]
        assert synth.template["Parameters"][parameter]["AllowedPattern"].startswith("^s3://")


def test_endpoint_updates_blue_green_with_rollback_alarms(synth):
    for model in synth.config.models:
        endpoint = synth.stack.serving.endpoints[model]
        props = synth.template["Resources"][synth.logical_id(endpoint.endpoint)]["Properties"]
        assert props["EndpointName"] == endpoint_name(synth.config.prefix, model)
        deployment = props["DeploymentConfig"]
        assert deployment["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] > 0
        routing = deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
        assert routing["Type"] == ("CANARY" if synth.config.instance_count > 1 else "ALL_AT_ONCE")
        alarms = {a["AlarmName"]["Ref"] for a in deployment["AutoRollbackConfiguration"]["Alarms"]}
        assert alarms == {synth.logical_id(a) for a in endpoint.alarms}


def test_endpoint_autoscales_on_invocations_per_instance(synth):
    target = synth.one("AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    assert target["MinCapacity"] == synth.config.instance_count
    assert target["MaxCapacity"] == synth.config.max_instance_count
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    policy = synth.one("AWS::ApplicationAutoScaling::ScalingPolicy")["Properties"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )
    assert tracking["TargetValue"] == synth.config.invocations_per_instance


def test_workflows_may_invoke_only_their_own_endpoint(synth):
    for model, flow in synth.stack.online_api.workflows.items():
        role_id = synth.logical_id(flow.state_machine.role)
        statements = [
            s
            for p in synth.resources("AWS::IAM::Policy").values()
            if {"Ref": role_id} in p["Properties"]["Roles"]
            for s in resolve(p["Properties"]["PolicyDocument"]["Statement"])
        ]
        invoke = actions_on(statements, "sagemaker:")
        name = endpoint_name(synth.config.prefix, model)
        assert invoke == {
            f"arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:endpoint/{name}": {
                "sagemaker:InvokeEndpoint"
            }
        }


# -- observability ---------------------------------------------------------------------


def test_alarms_cover_the_online_and_batch_paths_and_notify_the_topic(synth):
    prefix = synth.config.prefix
    alarms = synth.resources("AWS::CloudWatch::Alarm")
    names = {a["Properties"]["AlarmName"] for a in alarms.values()}
    expected = {f"{prefix}-api-5xx"}
    expected |= {
        f"{prefix}-{fn}-{kind}"
        for fn in ("preprocess", "postprocess", "feedback")
        for kind in ("errors", "throttles")
    }
    for model in synth.config.models:
        expected |= {
            f"{prefix}-online-{model}-failures",
            f"{prefix}-{model}-errors",
            f"{prefix}-{model}-latency",
        }
    # batch (tests/infra/test_cdk_batch.py checks what they measure)
    expected |= {f"{prefix}-batch-{q}-dead-letters" for q in ("uploads", "chunks")}
    expected |= {f"{prefix}-batch-{fn}-errors" for fn in ("split", "chunk", "dead-letter")}
    expected |= {f"{prefix}-batch-jobs-failed"}
    expected |= {f"{prefix}-retrain-failures"}  # tests/infra/test_cdk_retraining.py
    # monitoring (tests/infra/test_cdk_monitoring.py): its runs, and one per model and ALARMS row
    expected |= {f"{prefix}-monitor-failures"}
    expected |= {alarm_name(prefix, m, a) for m in synth.config.models for a in ALARMS}
    assert names == expected
    topic = synth.logical_id(synth.stack.observability.topic)
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}]


def test_alarm_topic_is_encrypted_and_dashboard_exists(synth):
    topic = synth.template["Resources"][synth.logical_id(synth.stack.observability.topic)]["Properties"]
    assert "KmsMasterKeyId" in topic
    key = synth.one("AWS::KMS::Key")["Properties"]
    assert key["EnableKeyRotation"] is True
    synth.assertions.has_resource_properties(
        "AWS::CloudWatch::Dashboard", {"DashboardName": f"{synth.config.prefix}-online"}
    )
    synth.assertions.has_output("ApiUrl", {"Value": Match.any_value()})
    synth.assertions.has_output("GetApiKeyCommand", {"Value": Match.any_value()})
    (client,) = synth.config.clients
    synth.assertions.has_output(f"ApiKeyId{client_construct_id(client.name)}", {
        "Value": {"Ref": synth.logical_id(synth.stack.online_api.api_key)},
        "Description": f"API key id of client {client.name}",
    })


def test_serving_image_is_built_from_the_dockerfile_with_only_what_it_copies(synth):
    assets = json.loads((synth.outdir / f"{synth.stack.artifact_id}.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    source = image["source"]
    assert source["dockerFile"] == "model_artifacts/serving/Dockerfile"
    assert source["platform"] == "linux/amd64"
    assert not source.get("dockerBuildArgs")  # GPU default: the Dockerfile's CUDA base
    staged = synth.outdir / source["directory"]
    assert (staged / "model_artifacts/serving/Dockerfile").is_file()
    assert (staged / "functions/inferline/spec.py").is_file()
    for absent in (".venv", "node_modules", "tests", "infra", ".git"):
        assert not (staged / absent).exists(), absent
