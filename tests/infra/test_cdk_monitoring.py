"""The synthesized monitoring: its workflow follows inferline.workflow's contract state for
state, its alarms watch exactly the metrics the Publish Lambda emits (at the spec's
thresholds), the alarms that retrain reach the on_alarm Lambda, and every role holds exactly the
access its step needs."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics
from infra_helpers import resolve, role_statements

from inferline import workflow
from inferline.endpoints import resource_name
from inferline.monitoring import ALARMS, METRICS_SERVICE, SCHEDULE_EXPRESSIONS, alarm_name
from inferline.resources import endpoint_name, monitor_state_machine_name
from inferline.spec import DEFAULT_SPECS_DIR, load_spec
from infra.app import build_app
from infra.config import ConfigError, load_config
from infra.stack import InferlineStack
from monitor import steps
from monitor.settings import MonitorSettings

PARTITION_ARN = "arn:<AWS::Partition>"
SAGEMAKER_ARN = f"{PARTITION_ARN}:sagemaker:<AWS::Region>:<AWS::AccountId>"
LOGS_ARN = f"{PARTITION_ARN}:logs:<AWS::Region>:<AWS::AccountId>"
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"

# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def machine(synth) -> dict:
    """The monitoring state machine's properties, its definition parsed."""
    name = monitor_state_machine_name(synth.config.prefix)
    (props,) = [
        m["Properties"]
        for m in synth.resources("AWS::StepFunctions::StateMachine").values()
        if m["Properties"]["StateMachineName"] == name
    ]
    return {**props, "Definition": json.loads(resolve(props["DefinitionString"]))}


@pytest.fixture(scope="module")
def states(machine) -> dict[str, dict]:
    return machine["Definition"]["States"]


@pytest.fixture(scope="module")
def alarms(synth) -> dict[str, dict]:
    """The monitoring alarms' properties, by name."""
    prefix = f"{synth.config.prefix}-monitor-"
    return {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"].startswith(prefix)
        and a["Properties"]["AlarmName"] != f"{prefix[:-1]}-failures"
    }


def ref(synth, construct) -> str:
    return f"<{synth.logical_id(construct)}>"


def arn(synth, construct) -> str:
    return f"<{synth.logical_id(construct)}.Arn>"


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def grants(statements: list[dict]) -> set[tuple[str, str, str]]:
    """Every (action, resource, condition) a list of Allow statements grants: the same access
    compares equal however CDK merged the statements."""
    found = set()
    for statement in statements:
        assert statement["Effect"] == "Allow", statement
        condition = json.dumps(statement["Condition"], sort_keys=True) if "Condition" in statement else ""
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                found.add((action, str(resource), condition))
    return found


def allow(
    actions: list[str], resources: list[str], condition: dict | None = None
) -> set[tuple[str, str, str]]:
    return grants([{"Effect": "Allow", "Action": actions, "Resource": resources}
                   | ({"Condition": condition} if condition else {})])  # fmt: skip


def statements_of(synth, role) -> list[dict]:
    return role_statements(synth.template, synth.logical_id(role))


def lambda_basics(synth, name: str) -> set[tuple[str, str, str]]:
    """What LambdaFunctions gives every function: its own log group, and X-Ray."""
    logs = synth.stack.monitoring.node.find_child(f"{name}Logs")
    return allow(["logs:CreateLogStream", "logs:PutLogEvents"], [arn(synth, logs)]) | allow(
        ["xray:PutTelemetryRecords", "xray:PutTraceSegments"], ["*"]
    )


def model_data_objects(synth) -> list[str]:
    """The model.tar.gz each endpoint was deployed with (a deploy-time parameter here)."""
    return [
        resolve(synth.stack.resolve(e.model_data_object_arn)) for e in synth.stack.serving.endpoints.values()
    ]


def function_props(synth, handler: str) -> dict:
    fn = synth.stack.monitoring.functions[handler]
    return synth.template["Resources"][synth.logical_id(fn)]["Properties"]


# -- the shape of the workflow -------------------------------------------------------------


def test_one_standard_workflow_traced_logged_and_bounded(machine):
    assert machine["StateMachineType"] == "STANDARD"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert 3600 < machine["Definition"]["TimeoutSeconds"] <= 6 * 3600  # one job of at most 1 h


def test_states_are_the_workflow_modules_and_nothing_else(states):
    assert set(states) == {*workflow.MONITOR_STEPS, workflow.MONITOR_FAILED}


def test_the_steps_run_in_the_contracts_order(machine, states):
    """The order the local runtime runs them in (local_runtime/monitor.py), and Publish ends it."""
    path, name = [], machine["Definition"]["StartAt"]
    while name:
        path.append(name)
        name = states[name].get("Next")
    assert path == list(workflow.MONITOR_STEPS)
    assert states[workflow.MONITOR_PUBLISH]["End"] is True


def test_each_step_writes_its_own_key(states):
    for name, path in workflow.MONITOR_RESULT_PATHS.items():
        assert states[name]["ResultPath"] == path, name


def test_every_step_retries_and_is_caught_into_monitoring_failed(states):
    for name in workflow.MONITOR_STEPS:
        assert states[name]["Retry"], name
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": workflow.MONITOR_FAILED}
        ], name
    failed = states[workflow.MONITOR_FAILED]
    assert failed == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}


def test_only_service_errors_are_retried(states):
    """A Lambda's own error (a bad window) or a job that ran and failed is an answer: never
    retried. Lambda's service errors, SageMaker's API throttling and capacity are."""
    for name in workflow.MONITOR_LAMBDAS:
        errors = {e for r in states[name]["Retry"] for e in r["ErrorEquals"]}
        assert errors and all(e.startswith("Lambda.") for e in errors), (name, errors)
    job_errors = {e for r in states[workflow.MONITOR_JOB]["Retry"] for e in r["ErrorEquals"]}
    assert job_errors == {
        "SageMaker.AmazonSageMakerException",
        "SageMaker.ThrottlingException",
        "SageMaker.ResourceLimitExceededException",
    }


# -- the steps -------------------------------------------------------------------------------


def served_image(synth) -> str:
    endpoint = next(iter(synth.stack.serving.endpoints.values()))
    model = synth.template["Resources"][synth.logical_id(endpoint.node.find_child("Model"))]
    return resolve(model["Properties"]["PrimaryContainer"]["Image"])


def test_monitor_is_a_processing_job_on_the_serving_image(synth, states):
    job = states[workflow.MONITOR_JOB]
    assert job["Type"] == "Task"
    assert job["Resource"] == f"{PARTITION_ARN}:states:::sagemaker:createProcessingJob.sync"
    assert job["Parameters"] == {
        "ProcessingJobName.$": "$.run.job_name",
        "RoleArn": arn(synth, synth.stack.monitoring.job_role),
        "AppSpecification": {
            "ImageUri": served_image(synth),
            "ContainerEntrypoint": list(workflow.MONITOR_ENTRYPOINT),
            "ContainerArguments.$": "$.run.arguments",
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": synth.config.monitor_instance_type,
                "VolumeSizeInGB": 30,
            }
        },
        # the job reads S3 itself: no inputs or outputs, and not isolated from the network
        "NetworkConfig": {"EnableNetworkIsolation": False},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Environment": {"AWS_DEFAULT_REGION": "<AWS::Region>"},
    }
    assert job["ResultSelector"] == {"job_name.$": "$.ProcessingJobName", "status.$": "$.ProcessingJobStatus"}


def test_job_names_prepare_writes_are_ones_the_workflow_may_create(synth):
    """Prepare names the job <prefix>-<model>-monitor-<run> (functions/monitor/steps.py): inside
    processing-job/<prefix>-*, whatever the model's name."""
    prefix = synth.config.prefix
    for model in (*synth.config.models, "m" * 53):
        name = resource_name(prefix, model, "monitor", "20261208T120000Z-abcdef")
        assert name.startswith(f"{prefix}-") and len(name) <= 63


def test_lambda_steps_run_the_contract_handlers(synth, states, monkeypatch):
    functions = synth.resources("AWS::Lambda::Function")
    for name, handler in workflow.MONITOR_LAMBDAS.items():
        resource = states[name]["Resource"]
        assert resource.startswith("<") and resource.endswith(".Arn>"), name
        props = functions[resource[1 : -len(".Arn>")]]["Properties"]
        assert props["Handler"] == f"monitor.handlers.{handler}"
        assert states[name]["Type"] == "Task"
    assert function_props(synth, "on_alarm")["Handler"] == "monitor.handlers.on_alarm"
    # ... and each handler is there, in a module that imports with the Lambdas' settings
    for key, value in {
        "DATA_BUCKET": "data",
        "RESOURCE_PREFIX": synth.config.prefix,
        "MODELS": json.dumps(list(synth.config.models)),
        "RETRAIN_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    handlers = importlib.import_module("monitor.handlers")
    for handler in {*workflow.MONITOR_LAMBDAS.values(), "on_alarm"}:
        assert callable(getattr(handlers, handler)), handler


def test_every_lambda_gets_the_settings_it_reads(synth):
    prefix, retrain = synth.config.prefix, synth.stack.retraining.state_machine
    for handler, name in (("prepare", "monitor-prepare"), ("publish", "monitor-publish"),
                          ("on_alarm", "monitor-on-alarm")):  # fmt: skip
        props = function_props(synth, handler)
        assert props["FunctionName"] == f"{prefix}-{name}"
        env = props["Environment"]["Variables"]
        expected = {field.validation_alias for field in MonitorSettings.model_fields.values()}
        assert expected <= set(env), handler
        assert env["DATA_BUCKET"] == {"Ref": synth.logical_id(synth.stack.storage.data)}
        assert env["RESOURCE_PREFIX"] == prefix
        assert json.loads(env["MODELS"]) == list(synth.config.models)
        assert env["RETRAIN_STATE_MACHINE_ARN"] == {"Ref": synth.logical_id(retrain)}
        assert env["POWERTOOLS_SERVICE_NAME"] == name
        settings = MonitorSettings.model_validate({k: str(resolve(v)) for k, v in env.items()})
        assert settings.models == list(synth.config.models)


# -- the alarms watch what Publish emits ----------------------------------------------------------


def emitted(synth, model: str) -> list[dict]:
    """The EMF documents the Publish Lambda writes for one run, built by Powertools from the
    synthesized function's own settings (its service name and namespace)."""
    env = function_props(synth, "publish")["Environment"]["Variables"]
    metrics = EphemeralMetrics(
        namespace=env["POWERTOOLS_METRICS_NAMESPACE"], service=env["POWERTOOLS_SERVICE_NAME"]
    )
    documents = []

    def flush() -> None:
        documents.append(metrics.serialize_metric_set())
        metrics.clear_metrics()

    steps.add_figures(metrics, model, "7", {alarm.metric: 1.0 for alarm in ALARMS}, flush)
    return documents


def test_the_alarms_watch_exactly_the_dimensions_publish_emits(synth, alarms):
    assert function_props(synth, "publish")["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == (
        METRICS_SERVICE  # what the local runtime emits with (local_runtime/monitor.py)
    )
    for model in synth.config.models:
        by_model, by_version = emitted(synth, model)
        (cloudwatch,) = by_model["_aws"]["CloudWatchMetrics"]
        (dimension_set,) = cloudwatch["Dimensions"]
        dimensions = {name: by_model[name] for name in dimension_set}
        published = {m["Name"] for m in cloudwatch["Metrics"]}
        for alarm in ALARMS:
            props = alarms[alarm_name(synth.config.prefix, model, alarm)]
            assert props["Namespace"] == cloudwatch["Namespace"]
            assert props["MetricName"] in published
            watched = {d["Name"]: d["Value"] for d in props["Dimensions"]}
            assert watched == dimensions, alarm.key
        # the per-version copy is for comparing versions: no alarm watches it (a new version
        # would start from no data)
        (version_set,) = by_version["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
        assert set(version_set) > set(dimension_set)


def test_one_alarm_per_model_and_figure_at_the_specs_threshold(synth, alarms):
    config, storage = synth.config, synth.stack.storage
    topic = {"Ref": synth.logical_id(synth.stack.observability.topic)}
    expected = {alarm_name(config.prefix, m, a) for m in config.models for a in ALARMS}
    assert set(alarms) == expected
    for model in config.models:
        spec = load_spec(model)
        for alarm in ALARMS:
            props = alarms[alarm_name(config.prefix, model, alarm)]
            assert props["MetricName"] == alarm.metric
            assert props["Namespace"] == config.prefix
            assert props["Statistic"] == "Maximum"
            assert props["Period"] == 3600
            assert props["Threshold"] == alarm.threshold(spec)
            assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
            assert props["EvaluationPeriods"] == 1
            assert props["TreatMissingData"] == "ignore"  # an unjudged figure keeps the state
            assert props["AlarmActions"] == [topic] and props["OKActions"] == [topic]
            description = resolve(props["AlarmDescription"])
            assert description.startswith(alarm.description)
            report = f"s3://<{synth.logical_id(storage.data)}>/monitoring/{model}/latest/report.html"
            assert report in description
            starts = "starts retraining" in description and "Does not" not in description
            assert starts == (alarm.retrains and spec.monitoring.retrain_on_alarm), alarm.key


def test_failed_monitoring_runs_alarm_to_the_alarm_topic(synth):
    machine_ref = synth.logical_id(synth.stack.monitoring.state_machine)
    (alarm,) = [
        a["Properties"]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"] == f"{synth.config.prefix}-monitor-failures"
    ]
    watched = {
        m["MetricStat"]["Metric"]["MetricName"]: m["MetricStat"]["Metric"]["Dimensions"]
        for m in alarm["Metrics"]
        if "MetricStat" in m
    }
    assert set(watched) == {"ExecutionsFailed", "ExecutionsTimedOut"}
    for dimensions in watched.values():
        assert dimensions == [{"Name": "StateMachineArn", "Value": {"Ref": machine_ref}}]
    assert alarm["AlarmActions"] == [{"Ref": synth.logical_id(synth.stack.observability.topic)}]


def test_alarms_that_retrain_reach_on_alarm(synth):
    config = synth.config
    names = sorted(
        alarm_name(config.prefix, m, a)
        for m in config.models
        for a in ALARMS
        if a.retrains and load_spec(m).monitoring.retrain_on_alarm
    )
    assert names  # drift and quality alarms of the demo model
    (rule,) = [
        r["Properties"]
        for r in synth.resources("AWS::Events::Rule").values()
        if r["Properties"].get("EventPattern", {}).get("detail-type") == [ALARM_STATE_CHANGE]
    ]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.cloudwatch"]
    assert sorted(pattern["detail"]["alarmName"]) == names
    assert pattern["detail"]["state"] == {"value": ["ALARM"]}
    (target,) = rule["Targets"]
    on_alarm = synth.stack.monitoring.functions["on_alarm"]
    assert target["Arn"] == {"Fn::GetAtt": [synth.logical_id(on_alarm), "Arn"]}
    # ... and EventBridge may invoke it
    (permission,) = [
        p["Properties"]
        for p in synth.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [synth.logical_id(on_alarm), "Arn"]}
    ]
    assert permission["Principal"] == "events.amazonaws.com"


def test_on_alarm_recognizes_every_alarm_the_rule_sends(synth):
    """The rule's alarm names parse as this stack's monitoring alarms (functions/monitor)."""
    config = synth.config
    svc = steps.Services(s3=None, sagemaker=None, load_spec=load_spec, data_bucket="b",
                         prefix=config.prefix, models=list(config.models))  # fmt: skip
    for model in config.models:
        for alarm in ALARMS:
            event = {
                "detail": {"alarmName": alarm_name(config.prefix, model, alarm), "state": {"value": "OK"}}
            }
            assert steps.on_alarm(event, svc)["reason"].endswith("is OK, not ALARM")


# -- schedules --------------------------------------------------------------------------------


def test_one_schedule_per_model_starts_the_workflow(synth):
    config, monitoring = synth.config, synth.stack.monitoring
    machine_ref = synth.logical_id(monitoring.state_machine)
    schedules = {
        s["Properties"]["Name"]: s["Properties"]
        for s in synth.resources("AWS::Scheduler::Schedule").values()
        if "-monitor-" in s["Properties"]["Name"]
    }
    assert config.monitor_schedule == "daily"  # cdk.json's default
    assert set(schedules) == {f"{config.prefix}-monitor-{m}" for m in config.models}
    for model in config.models:
        schedule = schedules[f"{config.prefix}-monitor-{model}"]
        assert schedule["ScheduleExpression"] == SCHEDULE_EXPRESSIONS["daily"] == "rate(1 day)"
        assert schedule["State"] == "ENABLED"
        target = schedule["Target"]
        assert target["Arn"] == {"Ref": machine_ref}
        assert json.loads(target["Input"]) == {"model": model, "trigger": "schedule"}
        found = role_statements(synth.template, target["RoleArn"]["Fn::GetAtt"][0])
        assert found == [
            {"Action": "states:StartExecution", "Effect": "Allow", "Resource": f"<{machine_ref}>"}
        ]


@pytest.fixture(scope="module")
def hourly_and_unscheduled(tmp_path_factory) -> dict[str, dict]:
    """The app synthesized with monitorSchedule hourly, and empty (cdk-nag validates both)."""
    templates = {}
    for schedule in ("hourly", ""):
        outdir = tmp_path_factory.mktemp(f"cdk.out.monitor-{schedule or 'none'}")
        app = build_app({"monitorSchedule": schedule}, outdir=str(outdir))
        app.synth()
        stack = next(c for c in app.node.children if isinstance(c, InferlineStack))
        templates[schedule] = json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
    return templates


def monitor_schedules(template: dict) -> dict[str, str]:
    return {
        r["Properties"]["Name"]: r["Properties"]["ScheduleExpression"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Scheduler::Schedule" and "-monitor-" in r["Properties"]["Name"]
    }


def test_the_schedule_follows_monitor_schedule(synth, hourly_and_unscheduled):
    prefix, models = synth.config.prefix, synth.config.models
    hourly = monitor_schedules(hourly_and_unscheduled["hourly"])
    assert hourly == {f"{prefix}-monitor-{m}": "rate(1 hour)" for m in models}
    unscheduled = hourly_and_unscheduled[""]
    assert monitor_schedules(unscheduled) == {}
    # started by hand only: the workflow, its alarms and the retraining rule are all still there
    names = [r["Properties"].get("StateMachineName") for r in unscheduled["Resources"].values()
             if r["Type"] == "AWS::StepFunctions::StateMachine"]  # fmt: skip
    assert monitor_state_machine_name(prefix) in names


def test_a_schedule_name_over_64_characters_is_refused(tmp_path, monkeypatch):
    """EventBridge Scheduler's limit: a long model name (and prefix) is caught at synth."""
    model = "p" + "x" * 49  # 50 characters: its endpoint name fits SageMaker's 63, its schedules do not
    spec = (DEFAULT_SPECS_DIR / "purchase-propensity.yaml").read_text()
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / f"{model}.yaml").write_text(re.sub(r"(?m)^name: .*$", f"name: {model}", spec))
    monkeypatch.setenv("INFERLINE_SPECS_DIR", str(specs))
    assert len(endpoint_name("inferline", model)) <= 63
    with pytest.raises(ConfigError, match=f"schedule name 'inferline-monitor-{model}' is over"):
        load_config({"models": [model], "monitorSchedule": "hourly"})
    with pytest.raises(ConfigError) as caught:
        load_config({"models": [model], "monitorSchedule": ""})
    assert "-monitor-" not in str(caught.value)  # no schedule, no limit (retraining's still applies)


# -- IAM: exactly what each step does ----------------------------------------------------------


def test_prepare_describes_the_endpoints_and_reads_the_deployed_model_data(synth):
    monitoring, prefix = synth.stack.monitoring, synth.config.prefix
    artifacts = arn(synth, synth.stack.storage.artifacts)
    expected = (
        lambda_basics(synth, "Prepare")
        | allow(["sagemaker:DescribeEndpoint"],
                [f"{SAGEMAKER_ARN}:endpoint/{endpoint_name(prefix, m)}" for m in synth.config.models])
        | allow(["sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
                [f"{SAGEMAKER_ARN}:endpoint-config/*", f"{SAGEMAKER_ARN}:model/*"])
        | allow(["s3:GetObject"], [f"{artifacts}/models/*", *model_data_objects(synth)])
    )  # fmt: skip
    assert grants(statements_of(synth, monitoring.functions["prepare"].role)) == expected


def test_publish_reads_only_the_runs_results(synth):
    data = arn(synth, synth.stack.storage.data)
    expected = lambda_basics(synth, "Publish") | allow(["s3:GetObject"], [f"{data}/monitoring/*/runs/*"])
    assert grants(statements_of(synth, synth.stack.monitoring.functions["publish"].role)) == expected


def test_on_alarm_claims_the_cooldown_and_starts_only_retraining(synth):
    data = arn(synth, synth.stack.storage.data)
    claims = "monitoring/*/retrain-trigger.json"
    expected = (
        lambda_basics(synth, "OnAlarm")
        | allow(["s3:GetObject", "s3:PutObject"], [f"{data}/{claims}"])  # no listing: not needed
        | allow(["states:StartExecution"], [ref(synth, synth.stack.retraining.state_machine)])
    )
    assert grants(statements_of(synth, synth.stack.monitoring.functions["on_alarm"].role)) == expected


def test_the_job_reads_the_window_and_writes_only_monitoring(synth):
    monitoring, storage = synth.stack.monitoring, synth.stack.storage
    data, artifacts = arn(synth, storage.data), arn(synth, storage.artifacts)
    reads = ["predictions/", "ground-truth/", "refusals/", "monitoring/", "training/", "retraining/"]
    # the same image pull as the retraining jobs
    ecr = {
        g
        for g in grants(statements_of(synth, synth.stack.retraining.processing_role))
        if g[0].startswith("ecr:")
    }
    assert ecr
    expected = (
        ecr
        | allow(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                 "logs:DescribeLogStreams"], [f"{LOGS_ARN}:log-group:/aws/sagemaker/ProcessingJobs:*"])
        | allow(["cloudwatch:PutMetricData"], ["*"])
        | allow(["s3:GetObject"], [f"{data}/{p}*" for p in reads])
        | allow(["s3:ListBucket"], [data], {"StringLike": {"s3:prefix": [f"{p}*" for p in reads]}})
        | allow(["s3:PutObject"], [f"{data}/monitoring/*"])
        | allow(["s3:GetObject"], [f"{artifacts}/models/*", *model_data_objects(synth)])
    )  # fmt: skip
    assert grants(statements_of(synth, monitoring.job_role)) == expected
    role = synth.template["Resources"][synth.logical_id(monitoring.job_role)]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }


def test_the_workflow_runs_its_lambdas_and_jobs_and_passes_only_the_job_role(synth):
    monitoring, prefix = synth.stack.monitoring, synth.config.prefix
    invoked = [arn(synth, monitoring.functions[h]) for h in workflow.MONITOR_LAMBDAS.values()]
    found = grants(statements_of(synth, monitoring.state_machine.role))
    # CDK's own for logging and tracing: resource "*", no other service
    cdk_managed = {g for g in found if g[1] == "*"}
    assert {a.split(":")[0] for a, _, _ in cdk_managed} == {"logs", "xray"}
    expected = (
        allow(["lambda:InvokeFunction"], [*invoked, *(f"{i}:*" for i in invoked)])
        | allow(["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                 "sagemaker:StopProcessingJob", "sagemaker:AddTags", "sagemaker:ListTags"],
                [f"{SAGEMAKER_ARN}:processing-job/{prefix}-*"])
        | allow(["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                [f"{PARTITION_ARN}:events:<AWS::Region>:<AWS::AccountId>:rule/"
                 "StepFunctionsGetEventsForSageMakerProcessingJobsRule"])
        | allow(["iam:PassRole"], [arn(synth, monitoring.job_role)],
                {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})
    )  # fmt: skip
    assert found - cdk_managed == expected


# -- dashboard and outputs ---------------------------------------------------------------------


def test_the_dashboard_shows_each_models_figures_and_alarms(synth):
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    body = json.loads(resolve(dashboard["Properties"]["DashboardBody"]))
    graphs = [w["properties"] for w in body["widgets"] if w["type"] == "metric"]
    shown = {
        (m[1], m[m.index("model") + 1])
        for g in graphs
        for m in g.get("metrics", [])
        if m[0] == synth.config.prefix and "service" in m and m[m.index("service") + 1] == METRICS_SERVICE
    }
    figures = {"DriftedFeatures", "MaxFeaturePSI", "PredictionDrift", "LiveMetric", "EstimatedMetric",
               "MetricDrop", "EstimatedMetricDrop", "MissingShare", "UnknownCategoryShare", "OutOfRangeShare",
               "DefaultFeaturesShare", "RefusedShare", "Predictions", "LabeledPredictions"}  # fmt: skip
    assert shown == {(f, m) for f in figures for m in synth.config.models}
    (status,) = [w["properties"] for w in body["widgets"] if w["type"] == "alarm"]
    listed = set(status["alarms"])
    monitoring_alarms = {arn(synth, a) for a in synth.stack.monitoring.alarms.values()}
    assert monitoring_alarms <= listed


def test_outputs_name_the_monitoring_state_machine(synth):
    output = synth.template["Outputs"]["MonitorStateMachineArn"]
    assert output["Value"] == {"Ref": synth.logical_id(synth.stack.monitoring.state_machine)}
    assert "aws stepfunctions start-execution" in output["Description"]


# -- the image the job runs ----------------------------------------------------------------------


def copied_sources(dockerfile: Path) -> list[str]:
    """The sources of the Dockerfile's COPY instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    sources = []
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == "COPY":
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def test_the_serving_image_context_holds_the_monitoring_job(synth):
    """What CDK stages for `docker build` (the Dockerfile's own ignore file decides) holds every
    file the Dockerfile copies: the monitoring job runs on this image."""
    assets = json.loads((synth.outdir / f"{synth.stack.artifact_id}.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    context = synth.outdir / image["source"]["directory"]
    dockerfile = context / image["source"].get("dockerFile", "Dockerfile")
    sources = copied_sources(dockerfile)
    assert "model_artifacts/monitoring/" in sources
    missing = [s for s in sources if not (context / s).exists()]
    assert not missing, f"not in the build context: {missing}"
