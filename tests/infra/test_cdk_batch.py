"""CDK assertions on the batch path: S3 upload notification -> SQS (encrypted, TLS-only,
dead-lettered) -> split / chunk / dead-letter Lambdas with partial batch responses, their
environment and least-privilege IAM, the SES sender, lifecycle rules and alarms.

Most tests use the session synth (cdk.json's defaults: no emailSender); `custom` synthesizes
once more with every batch setting given, as `cdk deploy -c ...` would."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from infra_helpers import actions_on, resolve, role_statements

from inferline.resources import ENV_VARS, QUEUES, queue_name
from infra.app import build_app
from infra.batch import EMAIL_SENDER_PARAMETER, JOBS_FAILED_METRIC, MAX_RECEIVE_COUNT
from infra.config import ConfigError, load_config
from infra.lambda_code import FUNCTIONS_DIR
from infra.stack import InferlineStack

HANDLERS = {
    "split": "batch.handlers.split",
    "chunk": "batch.handlers.chunk",
    "dead_letter": "batch.handlers.dead_letter",
}
POWERTOOLS_ENV = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
# The environment each handler is built to (functions/batch reads exactly these).
ENVIRONMENT = {
    # EMAIL_SENDER: a bad file fails its job at once, with an email (issue 4, item 2)
    "split": {"DATA_BUCKET", "JOBS_TABLE", "CHUNKS_QUEUE_URL", "EMAIL_SENDER", "INFERLINE_SPECS_DIR"},
    "chunk": {
        "DATA_BUCKET",
        "JOBS_TABLE",
        "FEATURES_TABLE",
        "PREDICTIONS_TABLE",
        "RESOURCE_PREFIX",
        "EMAIL_SENDER",
        "RESULT_LINK_EXPIRY_SECONDS",
        "INFERLINE_SPECS_DIR",
    },
    "dead_letter": {
        "DATA_BUCKET",
        "JOBS_TABLE",
        "EMAIL_SENDER",
        "RESULT_LINK_EXPIRY_SECONDS",
        "INFERLINE_SPECS_DIR",
    },
}
CUSTOM_CONTEXT = {
    "emailSender": "batch@example.com",
    "uploadExpiryDays": 3,
    "resultExpiryDays": 14,
    "resultLinkExpirySeconds": 3600,
    "batchMaxConcurrency": 4,
    # a given image: no Docker build context to stage, so this synth stays quick
    "servingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferline-serving:1",
}


# -- helpers ---------------------------------------------------------------------------


def props(synth, construct) -> dict:
    return synth.template["Resources"][synth.logical_id(construct)]["Properties"]


def function(synth, name: str):
    return getattr(synth.stack.batch, name)


def env_of(synth, name: str) -> dict:
    return props(synth, function(synth, name))["Environment"]["Variables"]


def statements(synth, name: str) -> list[dict]:
    return role_statements(synth.template, synth.logical_id(function(synth, name).role))


def arn(synth, construct) -> str:
    return f"<{synth.logical_id(construct)}.Arn>"


def mappings(synth) -> dict[str, list[dict]]:
    """{function logical id: [event source mapping properties]}"""
    found: dict[str, list[dict]] = {}
    for mapping in synth.resources("AWS::Lambda::EventSourceMapping").values():
        p = mapping["Properties"]
        found.setdefault(p["FunctionName"]["Ref"], []).append(p)
    return found


def data_prefix(synth, prefix: str) -> str:
    return f"{arn(synth, synth.stack.storage.data)}/{prefix}*"


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    """The app synthesized with every batch setting given (cdk-nag validates it too)."""
    outdir = tmp_path_factory.mktemp("cdk.out.batch")
    app = build_app(CUSTOM_CONTEXT, outdir=str(outdir))
    app.synth()  # raises on an unacknowledged cdk-nag finding
    stack = next(c for c in app.node.children if isinstance(c, InferlineStack))
    template = json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
    return stack, template


# -- S3 -> SQS -------------------------------------------------------------------------


def test_csv_uploads_notify_the_uploads_queue(synth):
    batch, data = synth.stack.batch, synth.stack.storage.data
    (notifications,) = synth.resources("Custom::S3BucketNotifications").values()
    config = notifications["Properties"]
    assert config["BucketName"] == {"Ref": synth.logical_id(data)}
    (queue_config,) = config["NotificationConfiguration"]["QueueConfigurations"]
    assert queue_config["Events"] == ["s3:ObjectCreated:*"]  # single PUT and multipart alike
    assert resolve(queue_config["QueueArn"]) == arn(synth, batch.uploads.queue)
    rules = {r["Name"]: r["Value"] for r in queue_config["Filter"]["Key"]["FilterRules"]}
    assert rules == {"prefix": "uploads/", "suffix": ".csv"}


def test_only_the_data_bucket_may_send_to_the_uploads_queue(synth):
    batch = synth.stack.batch
    queue_id = synth.logical_id(batch.uploads.queue)
    (policy,) = [
        p["Properties"]
        for p in synth.resources("AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [{"Ref": queue_id}]
    ]
    (allow,) = [s for s in resolve(policy["PolicyDocument"]["Statement"]) if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert "sqs:SendMessage" in allow["Action"]
    assert allow["Resource"] == f"<{queue_id}.Arn>"
    assert allow["Condition"] == {"ArnLike": {"aws:SourceArn": arn(synth, synth.stack.storage.data)}}


def test_queues_are_named_encrypted_tls_only_and_dead_lettered(synth):
    batch, prefix = synth.stack.batch, synth.config.prefix
    by_name = {q.queue.node.scope.node.id: q for q in batch.queues}
    assert [queue_name(prefix, n) for n in QUEUES] == [
        props(synth, q.queue)["QueueName"] for q in batch.queues
    ]
    for q in by_name.values():
        queue, dlq = props(synth, q.queue), props(synth, q.dead_letter_queue)
        assert dlq["QueueName"] == queue["QueueName"] + "-dlq"
        for p in (queue, dlq):
            assert p["SqsManagedSseEnabled"] is True  # SSE that S3 notifications can use
        assert queue["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [synth.logical_id(q.dead_letter_queue), "Arn"]},
            "maxReceiveCount": MAX_RECEIVE_COUNT,
        }
        assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert "RedrivePolicy" not in dlq
    queues = synth.resources("AWS::SQS::Queue")
    assert len(queues) == 2 * len(QUEUES)
    # every queue refuses plain HTTP
    denied = set()
    for policy in synth.resources("AWS::SQS::QueuePolicy").values():
        for s in policy["Properties"]["PolicyDocument"]["Statement"]:
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}:
                denied |= {r["Ref"] for r in policy["Properties"]["Queues"]}
    assert denied == set(queues)


# -- event sources ---------------------------------------------------------------------


def test_each_function_consumes_its_queues_with_partial_batch_responses(synth):
    batch = synth.stack.batch
    found = mappings(synth)
    expected = {
        "split": [batch.uploads.queue],
        "chunk": [batch.chunks.queue],
        "dead_letter": [batch.uploads.dead_letter_queue, batch.chunks.dead_letter_queue],
    }
    assert set(found) == {synth.logical_id(function(synth, n)) for n in expected}
    for name, queues in expected.items():
        sources = found[synth.logical_id(function(synth, name))]
        assert sorted(resolve(s["EventSourceArn"]) for s in sources) == sorted(arn(synth, q) for q in queues)
        for source in sources:
            assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (split,) = found[synth.logical_id(batch.split)]
    (chunk,) = found[synth.logical_id(batch.chunk)]
    assert split["BatchSize"] == 1 and chunk["BatchSize"] == 1
    assert chunk["ScalingConfig"] == {"MaximumConcurrency": synth.config.batch_max_concurrency}


def test_visibility_timeout_is_at_least_six_times_the_consumer_timeout(synth):
    queues = synth.resources("AWS::SQS::Queue")
    functions = synth.resources("AWS::Lambda::Function")
    for fn_id, sources in mappings(synth).items():
        timeout = functions[fn_id]["Properties"]["Timeout"]
        for source in sources:
            queue = queues[source["EventSourceArn"]["Fn::GetAtt"][0]]["Properties"]
            assert queue["VisibilityTimeout"] >= 6 * timeout, queue["QueueName"]


# -- the Lambdas -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(HANDLERS))
def test_batch_lambdas_share_the_online_code_layer_and_runtime(synth, name):
    p = props(synth, function(synth, name))
    online = props(synth, synth.stack.online_api.functions.preprocess)
    assert p["Handler"] == HANDLERS[name]
    assert p["FunctionName"] == f"{synth.config.prefix}-batch-{name.replace('_', '-')}"
    assert p["Code"] == online["Code"]  # the one functions/ asset
    assert p["Layers"] == online["Layers"]  # the Powertools layer
    assert p["Runtime"] == "python3.12" and p["Architectures"] == ["arm64"]
    assert p["TracingConfig"] == {"Mode": "Active"}
    log_group = synth.template["Resources"][p["LoggingConfig"]["LogGroup"]["Ref"]]
    assert log_group["Properties"]["RetentionInDays"] == synth.config.log_retention_days
    role = synth.template["Resources"][p["Role"]["Fn::GetAtt"][0]]["Properties"]
    assert "ManagedPolicyArns" not in role


@pytest.mark.parametrize("name", list(HANDLERS))
def test_each_batch_lambda_gets_exactly_its_environment(synth, name):
    env = env_of(synth, name)
    assert set(env) == ENVIRONMENT[name] | POWERTOOLS_ENV
    storage, batch = synth.stack.storage, synth.stack.batch
    refs = {
        ENV_VARS["data"]: {"Ref": synth.logical_id(storage.data)},
        ENV_VARS["jobs"]: {"Ref": synth.logical_id(storage.tables["jobs"])},
        ENV_VARS["features"]: {"Ref": synth.logical_id(storage.tables["features"])},
        ENV_VARS["predictions"]: {"Ref": synth.logical_id(storage.tables["predictions"])},
        ENV_VARS["batch-chunks"]: {"Ref": synth.logical_id(batch.chunks.queue)},
        "RESOURCE_PREFIX": synth.config.prefix,
        "INFERLINE_SPECS_DIR": "/var/task/specs",
        "EMAIL_SENDER": {"Ref": EMAIL_SENDER_PARAMETER},
        "RESULT_LINK_EXPIRY_SECONDS": str(synth.config.result_link_expiry_seconds),
        "POWERTOOLS_SERVICE_NAME": f"batch-{name.replace('_', '-')}",
        "POWERTOOLS_METRICS_NAMESPACE": synth.config.prefix,
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    assert env == {key: refs[key] for key in env}


def test_handlers_resolve_in_the_bundle(synth):
    """Each handler string names a function defined in the bundled module (once
    functions/batch exists; until then the strings are only the agreed contract)."""
    if not (FUNCTIONS_DIR / "batch").is_dir():
        pytest.skip("functions/batch is not written yet")
    key = props(synth, synth.stack.batch.split)["Code"]["S3Key"]
    bundle = synth.outdir / f"asset.{key.removesuffix('.zip')}"
    for handler in HANDLERS.values():
        module, func = handler.rsplit(".", 1)
        source = Path(bundle, *module.split(".")).with_suffix(".py")
        assert source.is_file(), source
        tree = ast.parse(source.read_text(encoding="utf-8"))
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        defined |= {
            t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
        }
        assert func in defined, handler


# -- IAM -------------------------------------------------------------------------------


def test_split_reads_uploads_tracks_jobs_sends_chunks_and_failure_emails_only(synth):
    storage, batch = synth.stack.storage, synth.stack.batch
    st = statements(synth, "split")
    assert actions_on(st, "s3:") == {data_prefix(synth, "uploads/"): {"s3:GetObject"}}
    assert actions_on(st, "dynamodb:") == {
        arn(synth, storage.tables["jobs"]): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    }
    assert actions_on(st, "sqs:SendMessage") == {arn(synth, batch.chunks.queue): {"sqs:SendMessage"}}
    assert actions_on(st, "sqs:ReceiveMessage") == {arn(synth, batch.uploads.queue): {"sqs:ReceiveMessage"}}
    assert actions_on(st, "ses:") == {identity_arn(synth): {"ses:SendEmail", "ses:SendRawEmail"}}
    # no predictions, no features, no endpoint
    assert not actions_on(st, "sagemaker:")


def test_chunk_predicts_through_the_served_endpoints_only(synth):
    storage, batch = synth.stack.storage, synth.stack.batch
    st = statements(synth, "chunk")
    assert actions_on(st, "sagemaker:") == {
        endpoint_arn(e.endpoint_name): {"sagemaker:InvokeEndpoint"}
        for e in synth.stack.serving.endpoints.values()
    }
    multipart = {"s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
    assert actions_on(st, "s3:") == {
        data_prefix(synth, "uploads/"): {"s3:GetObject"},
        data_prefix(synth, "batch/"): {"s3:GetObject", "s3:PutObject", *multipart},
        data_prefix(synth, "results/"): {"s3:GetObject", "s3:PutObject", *multipart},
        data_prefix(synth, "predictions/"): {"s3:PutObject", "s3:AbortMultipartUpload"},
        data_prefix(synth, "refusals/"): {"s3:PutObject"},  # the refusal log, one object per chunk
        # assembly lists the job's parts: the bucket, for keys under batch/ only
        arn(synth, storage.buckets["data"]): {"s3:ListBucket"},
    }
    (listing,) = [s for s in st if "s3:ListBucket" in str(s["Action"])]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["batch/*"]}}
    assert actions_on(st, "dynamodb:") == {
        arn(synth, storage.tables["features"]): {"dynamodb:BatchGetItem"},
        arn(synth, storage.tables["predictions"]): {"dynamodb:PutItem"},  # one index item per chunk
        arn(synth, storage.tables["jobs"]): {"dynamodb:GetItem", "dynamodb:UpdateItem"},
    }
    assert actions_on(st, "ses:") == {identity_arn(synth): {"ses:SendEmail", "ses:SendRawEmail"}}
    assert actions_on(st, "sqs:SendMessage") == {}
    assert actions_on(st, "sqs:ReceiveMessage") == {arn(synth, batch.chunks.queue): {"sqs:ReceiveMessage"}}


def test_dead_letter_fails_jobs_and_emails_only(synth):
    storage, batch = synth.stack.storage, synth.stack.batch
    st = statements(synth, "dead_letter")
    # a direct upload that never got a job: read its metadata, create the job to fail it
    assert actions_on(st, "dynamodb:") == {
        arn(synth, storage.tables["jobs"]): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    }
    assert actions_on(st, "s3:") == {
        data_prefix(synth, "uploads/"): {"s3:GetObject"},  # it only fails jobs: no result links
    }
    assert actions_on(st, "ses:") == {identity_arn(synth): {"ses:SendEmail", "ses:SendRawEmail"}}
    assert actions_on(st, "sqs:ReceiveMessage") == {
        arn(synth, q.dead_letter_queue): {"sqs:ReceiveMessage"} for q in batch.queues
    }
    assert not actions_on(st, "sagemaker:") and not actions_on(st, "sqs:SendMessage")


@pytest.mark.parametrize("name", list(HANDLERS))
def test_batch_roles_have_no_wildcard_beyond_xray(synth, name):
    for statement in statements(synth, name):
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        assert all("*" not in a for a in actions), actions
        if "*" in resources:
            assert all(a.startswith("xray:") for a in actions), actions


def endpoint_arn(name: str) -> str:
    return f"arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:endpoint/{name}"


def identity_arn(synth) -> str:
    return (
        "arn:<AWS::Partition>:ses:<AWS::Region>:<AWS::AccountId>:identity/"
        f"<{synth.logical_id(synth.stack.batch.identity)}>"
    )


# -- SES -------------------------------------------------------------------------------


def test_without_email_sender_the_sender_is_a_deploy_time_parameter(synth):
    assert synth.config.email_sender is None  # cdk.json's default
    identity = props(synth, synth.stack.batch.identity)
    assert identity == {"EmailIdentity": {"Ref": EMAIL_SENDER_PARAMETER}}
    parameter = synth.template["Parameters"][EMAIL_SENDER_PARAMETER]
    assert "Default" not in parameter  # CloudFormation refuses to deploy without it
    assert parameter["AllowedPattern"].startswith("^")


# -- lifecycle -------------------------------------------------------------------------


def lifecycle(template: dict, data_id: str) -> dict[str, dict]:
    rules = template["Resources"][data_id]["Properties"]["LifecycleConfiguration"]["Rules"]
    return {r["Prefix"]: r for r in rules if "Prefix" in r}


def test_batch_objects_expire(synth):
    rules = lifecycle(synth.template, synth.logical_id(synth.stack.storage.data))
    for prefix, days in (
        ("uploads/", synth.config.upload_expiry_days),
        ("batch/", 5),  # past the chunk queue's retention (4 days)
        ("results/", synth.config.result_expiry_days),
    ):
        rule = rules[prefix]
        assert rule["Status"] == "Enabled"
        assert rule["ExpirationInDays"] == days
        assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert (synth.config.upload_expiry_days, synth.config.result_expiry_days) == (7, 30)


# -- alarms ----------------------------------------------------------------------------


def alarms_by_name(synth) -> dict[str, dict]:
    return {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
    }


def test_dead_letter_alarms_watch_each_dead_letter_queue(synth):
    alarms, prefix = alarms_by_name(synth), synth.config.prefix
    topic = {"Ref": synth.logical_id(synth.stack.observability.topic)}
    for q in synth.stack.batch.queues:
        name = q.queue.node.scope.node.id.lower()
        alarm = alarms[f"{prefix}-batch-{name}-dead-letters"]
        assert alarm["AlarmActions"] == [topic]
        assert alarm["Threshold"] == 1
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        watched = {
            (
                m["MetricStat"]["Metric"]["MetricName"],
                resolve(m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]),
            )
            for m in alarm["Metrics"]
            if "MetricStat" in m
        }
        dlq = f"<{synth.logical_id(q.dead_letter_queue)}.QueueName>"
        assert watched == {("ApproximateNumberOfMessagesVisible", dlq), ("NumberOfMessagesReceived", dlq)}


def test_batch_lambda_errors_and_failed_jobs_alarm(synth):
    alarms, prefix = alarms_by_name(synth), synth.config.prefix
    for name in HANDLERS:
        alarm = alarms[f"{prefix}-batch-{name.replace('_', '-')}-errors"]
        assert alarm["MetricName"] == "Errors"
        assert alarm["Dimensions"] == [
            {"Name": "FunctionName", "Value": {"Ref": synth.logical_id(function(synth, name))}}
        ]
    failed = alarms[f"{prefix}-batch-jobs-failed"]
    metrics = [m["MetricStat"]["Metric"] for m in failed["Metrics"] if "MetricStat" in m]
    assert {m["Namespace"] for m in metrics} == {prefix}
    assert {m["MetricName"] for m in metrics} == {JOBS_FAILED_METRIC}
    assert {d["Value"] for m in metrics for d in m["Dimensions"]} == {
        f"batch-{n.replace('_', '-')}" for n in HANDLERS
    }


# -- settings --------------------------------------------------------------------------


def test_batch_settings_reach_the_template(custom):
    stack, template = custom
    resources = template["Resources"]
    identity = resources[stack.get_logical_id(stack.batch.identity.node.default_child)]
    assert identity["Properties"] == {"EmailIdentity": "batch@example.com"}
    assert EMAIL_SENDER_PARAMETER not in template.get("Parameters", {})
    for fn in stack.batch.functions.values():
        env = resources[stack.get_logical_id(fn.node.default_child)]["Properties"]["Environment"]["Variables"]
        assert env["EMAIL_SENDER"] == "batch@example.com"
        if "RESULT_LINK_EXPIRY_SECONDS" in env:
            assert env["RESULT_LINK_EXPIRY_SECONDS"] == "3600"
    rules = lifecycle(template, stack.get_logical_id(stack.storage.data.node.default_child))
    assert rules["uploads/"]["ExpirationInDays"] == 3
    assert rules["results/"]["ExpirationInDays"] == 14
    (chunk_source,) = [
        m["Properties"]
        for m in resources.values()
        if m["Type"] == "AWS::Lambda::EventSourceMapping"
        and m["Properties"]["FunctionName"]["Ref"]
        == stack.get_logical_id(stack.batch.chunk.node.default_child)
    ]
    assert chunk_source["ScalingConfig"] == {"MaximumConcurrency": 4}


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"resultLinkExpirySeconds": 86_400}, "resultLinkExpirySeconds=86400: 60 to 43200"),
        ({"batchMaxConcurrency": 1}, "batchMaxConcurrency=1: 2 to 1000"),
        ({"uploadExpiryDays": 0}, "uploadExpiryDays=0: must be at least 1"),
        ({"emailSender": "batch"}, "emailSender='batch': expected an email address"),
    ],
)
def test_bad_batch_settings_are_refused(context, message):
    with pytest.raises(ConfigError, match=message):
        load_config(context)


def test_the_jobs_api_lambdas_are_scoped_to_jobs_uploads_and_results(synth):
    expected_env = {
        "DATA_BUCKET",
        "JOBS_TABLE",
        "UPLOAD_URL_EXPIRY_SECONDS",
        "RESULT_LINK_EXPIRY_SECONDS",
        "INFERLINE_SPECS_DIR",
    }
    for name, handler in (("submit", "batch.api_handler.submit"), ("status", "batch.api_handler.status")):
        # submit also knows the API's clients (their key ids and batch recipients)
        wanted = expected_env | ({"API_CLIENTS"} if name == "submit" else set())
        assert set(env_of(synth, name)) - POWERTOOLS_ENV == wanted
        assert props(synth, function(synth, name))["Handler"] == handler
        module = (FUNCTIONS_DIR / "batch" / "api_handler.py").read_text()
        assert f"def {handler.rsplit('.', 1)[1]}(" in module
    submit, status = json.dumps(statements(synth, "submit")), json.dumps(statements(synth, "status"))
    assert "uploads/*" in submit and "results/*" not in submit and "dynamodb:PutItem" in submit
    assert "results/*" in status and "uploads/*" not in status and "dynamodb:PutItem" not in status


def test_chunk_parts_outlive_the_longest_wait_of_a_chunk_message():
    """A job's early parts must still exist when its last chunk, queued behind a backlog for
    as long as SQS keeps it, is assembled."""
    from infra.batch import QUEUE_RETENTION
    from infra.storage import BATCH_PARTS_DAYS

    assert BATCH_PARTS_DAYS > QUEUE_RETENTION.to_days()
