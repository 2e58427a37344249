"""The synthesized retraining workflow follows inferline.workflow's contract state for state,
and its Lambdas, SageMaker jobs and schedules get only the access their step needs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_helpers import actions_on, resolve, role_statements

from inferline import workflow
from inferline.resources import endpoint_name, model_package_group, retrain_state_machine_name
from infra.retraining import PROMOTION_ROLLED_BACK
from retrain.deploy import PromotionRolledBack
from retrain.settings import RetrainSettings

PARTITION_ARN = "arn:<AWS::Partition>"
SAGEMAKER_ARN = f"{PARTITION_ARN}:sagemaker:<AWS::Region>:<AWS::AccountId>"

# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def machine(synth) -> dict:
    """The retraining state machine's properties, its definition parsed."""
    name = retrain_state_machine_name(synth.config.prefix)
    (props,) = [
        m["Properties"]
        for m in synth.resources("AWS::StepFunctions::StateMachine").values()
        if m["Properties"]["StateMachineName"] == name
    ]
    return {**props, "Definition": json.loads(resolve(props["DefinitionString"]))}


@pytest.fixture(scope="module")
def states(machine) -> dict[str, dict]:
    return machine["Definition"]["States"]


def logical_id(synth, construct) -> str:
    return synth.logical_id(construct)


def statements(synth, role) -> list[dict]:
    return role_statements(synth.template, logical_id(synth, role))


def read(state: dict, path: str) -> Any:
    """A "$.a.b" path of a state document (the only paths the Choice rules use)."""
    value = state
    for key in path.removeprefix("$.").split("."):
        value = value[key]
    return value


def write(state: dict, path: str, value: Any) -> None:
    *parents, last = path.removeprefix("$.").split(".")
    for key in parents:
        state = state.setdefault(key, {})
    state[last] = value


def matches(rule: dict, state: dict) -> bool:
    """A Choice rule of the kinds the workflow uses: StringEquals, Or."""
    if "Or" in rule:
        return any(matches(r, state) for r in rule["Or"])
    return read(state, rule["Variable"]) == rule["StringEquals"]


def run(definition: dict, results: dict[str, list[Any]]) -> list[str]:
    """The states an execution visits when each step returns, in turn, the values listed for
    it in `results` (placed at the step's ResultPath, as Step Functions does)."""
    states, name, path, document = definition["States"], definition["StartAt"], [], {}
    answers = {step: list(values) for step, values in results.items()}
    while name is not None:
        path.append(name)
        assert len(path) < 100, path
        state = states[name]
        if state["Type"] == "Choice":
            chosen = [rule["Next"] for rule in state["Choices"] if matches(rule, document)]
            name = chosen[0] if chosen else state["Default"]
            continue
        if state["Type"] == "Task" and answers.get(name):
            write(document, state["ResultPath"], answers[name].pop(0))
        name = None if state["Type"] in ("Succeed", "Fail") or state.get("End") else state["Next"]
    return path


READY = {"status": "ready"}
SETTLED = {"status": "InService"}


# -- the shape of the workflow -------------------------------------------------------------


def test_one_standard_workflow_traced_logged_and_bounded(machine):
    assert machine["StateMachineType"] == "STANDARD"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["LoggingConfiguration"]["Level"] in ("ALL", "ERROR")
    assert 0 < machine["Definition"]["TimeoutSeconds"] <= 24 * 3600


def test_states_are_the_workflow_modules_and_nothing_else(states):
    assert set(states) == {*workflow.RETRAIN_STEPS, *workflow.RETRAIN_FAILURE_TAIL}


def test_promotion_path(machine):
    path = run(
        machine["Definition"],
        {
            workflow.BUILD_DATASET: [READY],
            workflow.GATE: [{"decision": "promote"}],
            workflow.CHECK_ENDPOINT: [SETTLED],
        },
    )
    assert path == list(workflow.RETRAIN_STEPS)


def test_skip_path(machine):
    path = run(machine["Definition"], {workflow.BUILD_DATASET: [{"status": "skipped"}]})
    assert path == list(workflow.RETRAIN_SKIP_STEPS)


def test_reject_path(machine):
    path = run(
        machine["Definition"],
        {
            workflow.BUILD_DATASET: [READY],
            workflow.GATE: [{"decision": "reject"}],
        },
    )
    assert path == list(workflow.RETRAIN_REJECT_STEPS)


@pytest.mark.parametrize("status", workflow.ENDPOINT_CHANGING)
def test_waits_while_the_endpoint_changes(machine, states, status):
    path = run(
        machine["Definition"],
        {
            workflow.BUILD_DATASET: [READY],
            workflow.GATE: [{"decision": "promote"}],
            workflow.CHECK_ENDPOINT: [{"status": status}, {"status": status}, SETTLED],
        },
    )
    loop = [workflow.WAIT_FOR_ENDPOINT, workflow.CHECK_ENDPOINT, workflow.ENDPOINT_SETTLED]
    start = path.index(workflow.WAIT_FOR_ENDPOINT)
    assert path[start : start + 9] == loop * 3
    assert path[start + 9 :] == [workflow.VERIFY_DEPLOYMENT, workflow.NOTIFY, workflow.DONE]
    wait = states[workflow.WAIT_FOR_ENDPOINT]
    assert wait == {
        "Type": "Wait",
        "Seconds": workflow.ENDPOINT_WAIT_SECONDS,
        "Next": workflow.CHECK_ENDPOINT,
    }


def test_each_step_writes_its_own_key(states):
    for name, path in workflow.RETRAIN_RESULT_PATHS.items():
        assert states[name]["ResultPath"] == path, name


# -- failures --------------------------------------------------------------------------------


def test_every_task_retries_and_is_caught_into_notify_failure(states):
    for name in workflow.RETRAIN_TASKS:
        state = states[name]
        assert state["Retry"], name
        assert state["Catch"] == [
            {
                "ErrorEquals": ["States.ALL"],
                "ResultPath": "$.error",
                "Next": workflow.NOTIFY_FAILURE,
            }
        ], name


def test_notify_failure_retries_then_fails_the_execution(states):
    notify_failure = states[workflow.NOTIFY_FAILURE]
    assert notify_failure["Retry"]
    assert "Catch" not in notify_failure
    assert notify_failure["Next"] == workflow.RETRAINING_FAILED
    assert notify_failure["Resource"] == states[workflow.NOTIFY]["Resource"]  # one function
    failed = states[workflow.RETRAINING_FAILED]
    assert failed["Type"] == "Fail"
    assert failed["ErrorPath"] == "$.error.Error" and failed["CausePath"] == "$.error.Cause"


WILDCARDS = {"States.ALL", "States.TaskFailed"}


def test_a_failed_job_is_retried_at_most_once(states):
    for name in (workflow.TRAIN, workflow.EVALUATE):
        for retrier in states[name]["Retry"]:
            if WILDCARDS & set(retrier["ErrorEquals"]):
                assert retrier["MaxAttempts"] <= 1, (name, retrier)


def test_a_rolled_back_promotion_is_never_retried(states):
    assert PromotionRolledBack.__name__ == PROMOTION_ROLLED_BACK  # the error name Lambda reports
    for retrier in states[workflow.VERIFY_DEPLOYMENT]["Retry"]:
        assert not ({*WILDCARDS, PROMOTION_ROLLED_BACK} & set(retrier["ErrorEquals"])), retrier


# -- the steps -------------------------------------------------------------------------------


def served_image(synth) -> str:
    endpoint = next(iter(synth.stack.serving.endpoints.values()))
    model = synth.template["Resources"][logical_id(synth, endpoint.node.find_child("Model"))]
    return resolve(model["Properties"]["PrimaryContainer"]["Image"])


def test_lambda_steps_run_the_contract_handlers(synth, states):
    functions = synth.resources("AWS::Lambda::Function")
    for name, function in workflow.RETRAIN_LAMBDAS.items():
        resource = states[name]["Resource"]
        assert resource.startswith("<") and resource.endswith(".Arn>"), name
        props = functions[resource[1 : -len(".Arn>")]]["Properties"]
        assert props["Handler"] == f"retrain.handlers.{function}"
        assert props["FunctionName"] == f"{synth.config.prefix}-retrain-{function.replace('_', '-')}"
        env = props["Environment"]["Variables"]
        expected = {field.validation_alias for field in RetrainSettings.model_fields.values()}
        assert expected <= set(env), name
        assert env["RESOURCE_PREFIX"] == synth.config.prefix
    assert functions[states[workflow.BUILD_DATASET]["Resource"][1:-5]]["Properties"]["Timeout"] == 900


def test_lambdas_know_each_endpoints_rollback_alarms(synth):
    fn = synth.stack.retraining.functions["deploy"]
    env = synth.template["Resources"][logical_id(synth, fn)]["Properties"]["Environment"]["Variables"]
    alarms = json.loads(resolve(env["ROLLBACK_ALARMS"]))
    assert set(alarms) == set(synth.config.models)
    for model, endpoint in synth.stack.serving.endpoints.items():
        assert alarms[model] == [f"<{logical_id(synth, a)}>" for a in endpoint.alarms]
    assert env["SAGEMAKER_ROLE_ARN"] == {"Fn::GetAtt": [logical_id(synth, synth.stack.serving.role), "Arn"]}
    assert env["RETRAIN_TOPIC_ARN"] == {"Ref": logical_id(synth, synth.stack.retraining.topic)}


def test_train_is_a_training_job_on_the_serving_image(synth, states):
    train = states[workflow.TRAIN]
    assert train["Resource"] == f"{PARTITION_ARN}:states:::sagemaker:createTrainingJob.sync"
    params = train["Parameters"]
    assert params["TrainingJobName.$"] == "$.dataset.training_job_name"
    assert params["AlgorithmSpecification"]["TrainingImage"] == served_image(synth)
    train_channel, reference = params["InputDataConfig"]
    assert train_channel["ChannelName"] == "train"
    assert train_channel["DataSource"]["S3DataSource"] == {
        "S3Uri.$": "$.dataset.train_uri",
        "S3DataType": "S3Prefix",
    }
    # the holdout, as the rows the version's monitoring baseline is computed on
    assert reference["ChannelName"] == "reference"
    assert reference["DataSource"]["S3DataSource"] == {
        "S3Uri.$": "$.dataset.holdout_uri",
        "S3DataType": "S3Prefix",
    }
    assert params["OutputDataConfig"] == {"S3OutputPath.$": "$.dataset.output_uri"}
    assert params["HyperParameters"] == {
        "model.$": "$.model",
        "version.$": "$.dataset.contender_version",
        "seed.$": "$.dataset.hyperparameters.seed",
        "params.$": "$.dataset.hyperparameters.params",
    }
    assert params["ResourceConfig"]["InstanceType"] == synth.config.training_instance_type
    assert params["StoppingCondition"]["MaxRuntimeInSeconds"] > 0
    assert params["RoleArn"] == f"<{logical_id(synth, synth.stack.retraining.training_role)}.Arn>"
    assert train["ResultSelector"] == {"model_data_url.$": "$.ModelArtifacts.S3ModelArtifacts"}


def test_evaluate_is_a_processing_job_on_the_serving_image(synth, states):
    evaluate = states[workflow.EVALUATE]
    assert evaluate["Resource"] == f"{PARTITION_ARN}:states:::sagemaker:createProcessingJob.sync"
    params = evaluate["Parameters"]
    assert params["ProcessingJobName.$"] == "$.dataset.evaluation_job_name"
    assert params["AppSpecification"] == {
        "ImageUri": served_image(synth),
        "ContainerEntrypoint": ["python", "-m", "model_artifacts.evaluate"],
    }
    inputs = {i["InputName"]: i["S3Input"] for i in params["ProcessingInputs"]}
    assert {name: (i["S3Uri.$"], i["LocalPath"], i["S3DataType"]) for name, i in inputs.items()} == {
        "holdout": ("$.dataset.holdout_uri", "/opt/ml/processing/holdout", "S3Prefix"),
        "contender": ("$.training.model_data_url", "/opt/ml/processing/contender", "S3Prefix"),
        "champion": ("$.dataset.champion.model_data_url", "/opt/ml/processing/champion", "S3Prefix"),
    }
    (output,) = params["ProcessingOutputConfig"]["Outputs"]
    assert output["OutputName"] == "evaluation"
    assert output["S3Output"]["S3Uri.$"] == "$.dataset.evaluation_uri"
    assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/evaluation"
    cluster = params["ProcessingResources"]["ClusterConfig"]
    assert cluster["InstanceType"] == synth.config.training_instance_type
    assert params["RoleArn"] == f"<{logical_id(synth, synth.stack.retraining.processing_role)}.Arn>"
    assert set(evaluate["ResultSelector"]) == {"job_name.$", "status.$"}


# -- IAM ---------------------------------------------------------------------------------------


def test_state_machine_role_scopes_sagemaker_and_passes_only_the_job_roles(synth):
    retraining = synth.stack.retraining
    found = statements(synth, retraining.state_machine.role)
    for statement in found:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if any(a.startswith("sagemaker:") and a != "sagemaker:ListTags" for a in actions):
            assert "*" not in resources, statement
    sagemaker = actions_on(found, "sagemaker:")
    processing = sagemaker[f"{SAGEMAKER_ARN}:processing-job/{synth.config.prefix}-*"]
    assert {
        "sagemaker:CreateProcessingJob",
        "sagemaker:DescribeProcessingJob",
        "sagemaker:StopProcessingJob",
    } <= processing
    assert "sagemaker:CreateTrainingJob" in sagemaker[f"{SAGEMAKER_ARN}:training-job/*"]
    assert set(actions_on(found, "events:")) == {
        f"{PARTITION_ARN}:events:<AWS::Region>:<AWS::AccountId>:rule/"
        f"StepFunctionsGetEventsForSageMaker{kind}JobsRule"
        for kind in ("Training", "Processing")
    }
    passes = [s for s in found if s["Action"] == "iam:PassRole"]
    assert passes
    passed = set()
    for statement in passes:
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
        passed |= set(
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
    assert passed == {
        f"<{logical_id(synth, r)}.Arn>" for r in (retraining.training_role, retraining.processing_role)
    }


def test_no_retraining_role_touches_s3_outside_named_prefixes(synth):
    retraining = synth.stack.retraining
    roles = [
        retraining.training_role,
        retraining.processing_role,
        *(fn.role for fn in retraining.functions.values()),
    ]
    for role in roles:
        s3 = actions_on(statements(synth, role), "s3:")
        assert "*" not in s3, (role.node.path, s3)


def s3_access(synth, role) -> dict[str, set[str]]:
    """A role's S3 access as {"<bucket name>[/<pattern>]": {"read" | "write" | "list"}}: reads
    and writes of objects, listings of buckets."""
    names = {f"<{logical_id(synth, b)}.Arn>": name for name, b in synth.stack.storage.buckets.items()}
    access: dict[str, set[str]] = {}
    for resource, actions in actions_on(statements(synth, role), "s3:").items():
        kinds = {"read" for a in actions if a.startswith("s3:GetObject")}
        kinds |= {"write" for a in actions if a.startswith("s3:PutObject")}
        kinds |= {"list" for a in actions if a.startswith("s3:List")}
        arn, slash, pattern = str(resource).partition("/")
        if arn in names:  # one of the stack's buckets: objects are read and written, buckets listed
            kinds &= {"read", "write"} if slash else {"list"}
            resource = names[arn] + slash + pattern
        access.setdefault(str(resource), set()).update(kinds)
    return access


def test_the_steps_touch_only_their_own_s3_prefixes(synth):
    """Where functions/retrain reads and writes: datasets in the data bucket under retraining/,
    model versions and their evaluation reports in the artifacts bucket under models/."""
    retraining = synth.stack.retraining
    fns = retraining.functions
    expected = {
        fns["build_dataset"].role: {
            "data": {"list"},
            "data/predictions/*": {"read"},
            "data/ground-truth/*": {"read"},
            "data/training/*": {"read"},
            "data/retraining/*": {"write"},
            "data/retraining/*/versions/*": {"read"},  # version claims: a retry finds its own
            # the champion's model.tar.gz, for its version: a version under models/, or the
            # model data the stack was deployed with
            "artifacts": {"list"},
            "artifacts/models/*": {"read"},
        },
        fns["gate"].role: {"artifacts": {"list"}, "artifacts/models/*": {"read"}},
        fns["register"].role: {"artifacts": {"list"}, "artifacts/models/*": {"read"}},
        retraining.training_role: {
            "data": {"list"},
            "data/retraining/*": {"read"},
            "artifacts/models/*": {"write"},
        },
    }
    for role, access in expected.items():
        found = s3_access(synth, role)
        if role is fns["build_dataset"].role:
            # ... and, read only, the model data each endpoint was deployed with (any bucket)
            deployed = {k: v for k, v in found.items() if k.startswith("arn:")}
            assert list(deployed.values()) == [{"read"}] * len(synth.stack.serving.endpoints)
            found = {k: v for k, v in found.items() if k not in deployed}
        assert found == access, role.node.path
    for step in ("deploy", "check_endpoint", "verify_deployment", "notify"):
        assert s3_access(synth, fns[step].role) == {}, step


def test_evaluation_reads_holdout_and_models_and_writes_beside_the_contender(synth):
    access = s3_access(synth, synth.stack.retraining.processing_role)
    ours = {
        "data": {"list"},
        "data/retraining/*": {"read"},
        "artifacts": {"list"},
        "artifacts/models/*": {"read", "write"},
    }
    assert {k: access[k] for k in ours} == ours
    # The first champion, the model data the stack was deployed with (a deploy-time
    # parameter here): that object, and a listing of its bucket, per model.
    initial = sorted(sorted(kinds) for where, kinds in access.items() if where not in ours)
    assert initial == sorted([["list"], ["read"]] * len(synth.config.models))


def test_deploy_may_pass_only_the_serving_role_and_update_only_these_endpoints(synth):
    prefix = synth.config.prefix
    deploy = synth.stack.retraining.functions["deploy"]
    found = statements(synth, deploy.role)
    (passes,) = [s for s in found if s["Action"] == "iam:PassRole"]
    assert passes["Resource"] == f"<{logical_id(synth, synth.stack.serving.role)}.Arn>"
    assert passes["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    sagemaker = actions_on(found, "sagemaker:")
    updated = {r for r, actions in sagemaker.items() if "sagemaker:UpdateEndpoint" in actions}
    assert updated == {
        *(f"{SAGEMAKER_ARN}:endpoint/{endpoint_name(prefix, m)}" for m in synth.config.models),
        f"{SAGEMAKER_ARN}:endpoint-config/{prefix}-*",
    }
    created = {r for r, actions in sagemaker.items() if any("Create" in a for a in actions)}
    assert created == {f"{SAGEMAKER_ARN}:model/{prefix}-*", f"{SAGEMAKER_ARN}:endpoint-config/{prefix}-*"}


def test_register_writes_only_this_stacks_registry(synth):
    prefix = synth.config.prefix
    register = synth.stack.retraining.functions["register"]
    sagemaker = actions_on(statements(synth, register.role), "sagemaker:")
    groups = {model_package_group(prefix, m) for m in synth.config.models}
    writable = {
        r
        for r, actions in sagemaker.items()
        if {"sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage"} & actions
    }
    assert writable == {f"{SAGEMAKER_ARN}:model-package-group/{g}" for g in groups} | {
        f"{SAGEMAKER_ARN}:model-package/{g}/*" for g in groups
    }


@pytest.mark.parametrize("step", ["check_endpoint", "verify_deployment"])
def test_endpoint_checks_describe_the_endpoints(synth, step):
    prefix = synth.config.prefix
    fn = synth.stack.retraining.functions[step]
    expected = {
        f"{SAGEMAKER_ARN}:endpoint/{endpoint_name(prefix, m)}": {"sagemaker:DescribeEndpoint"}
        for m in synth.config.models
    }
    if step == "verify_deployment":  # a rolled-back version is marked Rejected in the registry
        expected |= {
            f"{SAGEMAKER_ARN}:model-package/{model_package_group(prefix, m)}/*": {
                "sagemaker:DescribeModelPackage",
                "sagemaker:UpdateModelPackage",
            }
            for m in synth.config.models
        }
    assert actions_on(statements(synth, fn.role), "sagemaker:") == expected


def test_notify_publishes_to_the_retraining_topic_only_and_may_reject_a_failed_promotion(synth):
    retraining = synth.stack.retraining
    found = statements(synth, retraining.functions["notify"].role)
    assert actions_on(found, "sns:") == {f"<{logical_id(synth, retraining.topic)}>": {"sns:Publish"}}
    assert actions_on(found, "s3:") == {}
    # A failed promotion: the version the gate approved is marked Rejected in its group.
    sagemaker = actions_on(found, "sagemaker:")
    actions = set().union(*sagemaker.values())
    assert actions == {"sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"}
    assert all(":model-package/" in str(resource) for resource in sagemaker)
    topic = synth.template["Resources"][logical_id(synth, retraining.topic)]["Properties"]
    assert topic["TopicName"] == f"{synth.config.prefix}-retraining"
    assert "KmsMasterKeyId" in topic


def test_endpoints_may_load_any_version_of_their_model(synth):
    artifacts = f"<{logical_id(synth, synth.stack.storage.artifacts)}.Arn>"
    s3 = actions_on(statements(synth, synth.stack.serving.role), "s3:")
    for model in synth.config.models:
        assert s3[f"{artifacts}/models/{model}/*"] == {"s3:GetObject"}


# -- schedules, registry, alarm, outputs -------------------------------------------------------


def test_one_schedule_per_model_starts_the_workflow(synth):
    config, retraining = synth.config, synth.stack.retraining
    machine_ref = logical_id(synth, retraining.state_machine)
    schedules = {
        s["Properties"]["Name"]: s["Properties"]
        for s in synth.resources("AWS::Scheduler::Schedule").values()
        if s["Properties"]["Name"].startswith(f"{config.prefix}-retrain-")  # (monitoring has its own)
    }
    assert set(schedules) == {f"{config.prefix}-retrain-{m}" for m in config.models}
    for model in config.models:
        schedule = schedules[f"{config.prefix}-retrain-{model}"]
        assert schedule["ScheduleExpression"] == config.retrain_schedule == "cron(0 3 1 * ? *)"
        assert schedule["State"] == "ENABLED"
        target = schedule["Target"]
        assert target["Arn"] == {"Ref": machine_ref}
        assert json.loads(target["Input"]) == {"model": model, "trigger": "schedule"}
        role_id = target["RoleArn"]["Fn::GetAtt"][0]
        found = role_statements(synth.template, role_id)
        assert found == [
            {"Action": "states:StartExecution", "Effect": "Allow", "Resource": f"<{machine_ref}>"}
        ]


def test_one_model_package_group_per_model(synth):
    groups = {
        g["Properties"]["ModelPackageGroupName"]: g
        for g in synth.resources("AWS::SageMaker::ModelPackageGroup").values()
    }
    assert set(groups) == {model_package_group(synth.config.prefix, m) for m in synth.config.models}
    for group in groups.values():
        assert group["DeletionPolicy"] == "Retain"


def test_failed_runs_alarm_to_the_alarm_topic(synth):
    machine_ref = logical_id(synth, synth.stack.retraining.state_machine)
    (alarm,) = [
        a["Properties"]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"] == f"{synth.config.prefix}-retrain-failures"
    ]
    watched = {
        m["MetricStat"]["Metric"]["MetricName"]: m["MetricStat"]["Metric"]["Dimensions"]
        for m in alarm["Metrics"]
        if "MetricStat" in m
    }
    assert "ExecutionsFailed" in watched
    assert watched["ExecutionsFailed"] == [{"Name": "StateMachineArn", "Value": {"Ref": machine_ref}}]
    assert alarm["AlarmActions"] == [{"Ref": logical_id(synth, synth.stack.observability.topic)}]


def test_outputs_name_the_state_machine_and_topic(synth):
    outputs = synth.template["Outputs"]
    machine_ref = logical_id(synth, synth.stack.retraining.state_machine)
    assert outputs["RetrainStateMachineArn"]["Value"] == {"Ref": machine_ref}
    assert outputs["RetrainTopicArn"]["Value"] == {"Ref": logical_id(synth, synth.stack.retraining.topic)}
