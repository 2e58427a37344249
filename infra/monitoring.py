"""Model monitoring: every model's production window judged against its serving version's
baseline, one CloudWatch alarm per figure that matters, and retraining started by the ones that
say the model went stale.

    EventBridge Scheduler "<prefix>-monitor-<model>" (monitorSchedule: hourly or daily), or
    `aws stepfunctions start-execution --input '{"model": "<model>"}'`
      -> Step Functions STANDARD "<prefix>-monitor", its states named by inferline.workflow:
         Prepare (Lambda: the run, the serving version) -> Monitor (SageMaker processing job,
         .sync, `python -m model_artifacts.monitoring` on the serving image) -> Publish
         (Lambda: the run's figures as EMF metrics); any failure -> MonitoringFailed
    CloudWatch alarms "<prefix>-monitor-<model>-<key>", one per model and row of
    inferline.monitoring.ALARMS, on the metrics Publish emits (thresholds from the spec)
      -> the alarm topic (Observability wires them, and draws the figures on the dashboard)
      -> a drift or quality alarm entering ALARM: EventBridge -> the on_alarm Lambda, which
         starts the retraining workflow once per cool-down

S3 layout (data bucket): the job reads predictions/, ground-truth/ and refusals/ for the
window, monitoring/ for history and kept baselines, and training/ or retraining/ only to
compute a baseline for a version trained before versions carried one; it writes each run under
monitoring/<model>/runs/<run>/ and again under monitoring/<model>/latest/.
"""

from __future__ import annotations

import json

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from inferline import workflow
from inferline.monitoring import (
    ALARMS,
    ALARMS_BY_KEY,
    METRICS_SERVICE,
    MODEL_DIMENSION,
    SCHEDULE_EXPRESSIONS,
    Alarm,
    alarm_name,
)
from inferline.resources import (
    ENV_VARS,
    monitor_state_machine_name,
    monitoring_latest_prefix,
    monitoring_runs_prefix,
    retrain_trigger_key,
)
from inferline.spec import load_spec
from infra.config import Config, monitor_schedule_name
from infra.lambda_code import LambdaFunctions, log_group_with_retention
from infra.nag import acknowledge, arn_of, default_policy
from infra.online_api import GROUND_TRUTH_PREFIX, LAMBDA_RETRYABLE, PREDICTIONS_PREFIX, REFUSALS_PREFIX
from infra.retraining import (
    JOB_VOLUME_GB,
    MODELS_PREFIX,
    RUNS_PREFIX,
    SAGEMAKER_API_RETRYABLE,
    SAGEMAKER_CAPACITY,
    TRAINING_SETS_PREFIX,
    Retraining,
)
from infra.serving import Serving
from infra.storage import Storage

# Top-level prefix of the monitoring runs, reports, baselines and the retraining trigger.
MONITORING_PREFIX = monitoring_runs_prefix("m").split("/", 1)[0] + "/"  # "monitoring/"
RESULTS_PATTERN = monitoring_runs_prefix("*") + "*"  # what Publish reads: a run's result.json
TRIGGER_PATTERN = retrain_trigger_key("*")  # the cool-down claim on_alarm reads and writes

# A run waits for Prepare, one processing job (capacity retries included) and Publish.
EXECUTION_TIMEOUT = Duration.hours(3)
JOB_MAX_RUNTIME = Duration.hours(1)
# The dimension Powertools adds to every metric: its value is the function's service name.
SERVICE_DIMENSION = "service"
# Publish emits each figure once per run; an alarm looks at the newest hour's maximum and
# keeps its state through hours without a run (missing data is ignored).
ALARM_PERIOD = Duration.hours(1)

# Each monitoring Lambda, by its handler function: (function name and Powertools service,
# memory MB, timeout). Publish's service name is every monitoring metric's "service"
# dimension, so the alarms watch what it emits.
LAMBDAS: dict[str, tuple[str, int, Duration]] = {
    "prepare": ("monitor-prepare", 512, Duration.minutes(1)),
    "publish": (METRICS_SERVICE, 512, Duration.minutes(1)),
    "on_alarm": ("monitor-on-alarm", 256, Duration.seconds(30)),
}

MONITORING_WHY = "Runs' reports and history, and baselines kept for old versions: under monitoring/ only."
# The job's S3 reads in the data bucket (each ends in "/"), and why (cdk-nag's reason).
JOB_READS: dict[str, str] = {
    PREDICTIONS_PREFIX.removesuffix("*"): "The window's prediction log, in date partitions.",
    GROUND_TRUTH_PREFIX.removesuffix("*"): "Ground truth that arrived since the window began.",
    REFUSALS_PREFIX.removesuffix("*"): "The window's refused requests and batch rows.",
    MONITORING_PREFIX: MONITORING_WHY,
    TRAINING_SETS_PREFIX: "Base training sets: the baseline of a version trained before baselines.",
    RUNS_PREFIX: "Retraining runs' claims and train sets: the same, for a retrained version.",
}
# How cdk-nag spells this account's SageMaker ARNs in a finding.
SAGEMAKER_NAG_ARN = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>"
MODELS_WHY = "Model versions: the serving version's model.tar.gz, one folder per training job."


class Monitoring(Construct):
    """The monitoring workflow, its Lambdas and job role, one schedule per model, one alarm per
    model and monitored figure, and the rule that turns a stale model's alarm into retraining."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        storage: Storage,
        serving: Serving,
        retraining: Retraining,
        lambdas: LambdaFunctions,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._data, self._artifacts = storage.data, storage.artifacts
        self._serving = serving

        # -- the Lambdas, each with only what its step does ----------------------------------
        self.functions = self._build_functions(lambdas, retraining)
        self._grant_prepare(self.functions["prepare"])
        self._grant_publish(self.functions["publish"])
        self._grant_on_alarm(self.functions["on_alarm"], retraining)

        # -- the processing job and the workflow ----------------------------------------------
        self.job_role = self._build_job_role()
        self.state_machine = self._build_workflow()

        # -- when it runs, and what it tells --------------------------------------------------
        self.schedules = self._build_schedules()
        self.alarms = self._build_alarms()
        self.retrain_rule = self._build_retrain_rule()

    def metric(
        self, model: str, name: str, statistic: str = "Maximum", period: Duration = ALARM_PERIOD
    ) -> cloudwatch.Metric:
        """A figure Publish emits for `model` (by model, across versions): what the alarms watch."""
        return cloudwatch.Metric(
            namespace=self._config.prefix,
            metric_name=name,
            dimensions_map={SERVICE_DIMENSION: METRICS_SERVICE, MODEL_DIMENSION: model},
            statistic=statistic,
            period=period,
        )

    # -- the Lambdas ----------------------------------------------------------------------------

    def _build_functions(
        self, lambdas: LambdaFunctions, retraining: Retraining
    ) -> dict[str, lambda_.Function]:
        # Every monitoring Lambda gets the same environment (functions/monitor/settings.py).
        env = {
            ENV_VARS["data"]: self._data.bucket_name,
            "RESOURCE_PREFIX": self._config.prefix,
            "MODELS": json.dumps(list(self._config.models)),
            "RETRAIN_STATE_MACHINE_ARN": retraining.state_machine.state_machine_arn,
        }
        return {
            handler: lambdas.function(
                self,
                "".join(part.capitalize() for part in handler.split("_")),
                name=name,
                handler=f"monitor.handlers.{handler}",
                memory=memory,
                timeout=timeout,
                env=env,
            )
            for handler, (name, memory, timeout) in LAMBDAS.items()
        }

    def _grant_prepare(self, fn: lambda_.Function) -> None:
        """Which version each endpoint serves (its config and model), and the version number in
        the model.tar.gz of the model the stack was deployed with."""
        stack = Stack.of(self)
        endpoints = self._serving.endpoints.values()
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["sagemaker:DescribeEndpoint"],
            resources=[stack.format_arn(service="sagemaker", resource=f"endpoint/{e.endpoint_name}")
                       for e in endpoints],
        ))  # fmt: skip
        serving_now = ["endpoint-config/*", "model/*"]
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
            resources=[stack.format_arn(service="sagemaker", resource=path) for path in serving_now],
        ))  # fmt: skip
        for path in serving_now:
            acknowledge(
                default_policy(fn),
                f"AwsSolutions-IAM5[Resource::{SAGEMAKER_NAG_ARN}:{path}]",
                "The endpoint's current config and model, named by CloudFormation or by a retraining "
                "run: describe only.",
            )
        _objects(fn, self._artifacts, f"{MODELS_PREFIX}*", ["s3:GetObject"], MODELS_WHY)
        _model_data(fn, self._serving)

    def _grant_publish(self, fn: lambda_.Function) -> None:
        """The run's result.json (its metrics go out as EMF log lines: no CloudWatch API call)."""
        _objects(fn, self._data, RESULTS_PATTERN, ["s3:GetObject"],
                 "Each monitoring run's result, one folder per model and run.")  # fmt: skip

    def _grant_on_alarm(self, fn: lambda_.Function, retraining: Retraining) -> None:
        """The cool-down claim (a conditional write), and starting the retraining workflow."""
        _objects(fn, self._data, TRIGGER_PATTERN, ["s3:GetObject", "s3:PutObject"],
                 "Each model's retraining cool-down claim, one object per model.")  # fmt: skip
        # No ListBucket: a missing claim (the model's first alarm) then reads as AccessDenied,
        # which inferline.objects.get_if_exists takes for "absent"; the conditional write decides.
        retraining.state_machine.grant_start_execution(fn)

    # -- the processing job ---------------------------------------------------------------------

    def _build_job_role(self) -> iam.Role:
        """Pull the serving image, write the job's logs, read the window and the serving version,
        write the run's reports."""
        role = self._serving.job_role(
            self, "JobRole", log_group="ProcessingJobs",
            description="inferline monitoring jobs: read the logs and the serving version, write the reports",
        )  # fmt: skip
        for prefix, why in JOB_READS.items():
            _objects(role, self._data, f"{prefix}*", ["s3:GetObject"], why)
        _list(role, self._data, [f"{prefix}*" for prefix in JOB_READS])
        # The reports, history lines and baselines (small objects: single PUTs).
        _objects(role, self._data, f"{MONITORING_PREFIX}*", ["s3:PutObject"], MONITORING_WHY)
        _objects(role, self._artifacts, f"{MODELS_PREFIX}*", ["s3:GetObject"], MODELS_WHY)
        _model_data(role, self._serving)
        return role

    # -- the workflow ---------------------------------------------------------------------------

    def _build_workflow(self) -> sfn.StateMachine:
        config, stack = self._config, Stack.of(self)
        # The states in a scope of their own: the Lambdas beside them use the same names.
        flow = Construct(self, "Workflow")

        def lambda_step(state: str) -> tasks.LambdaInvoke:
            step = tasks.LambdaInvoke(
                flow,
                state,
                lambda_function=self.functions[workflow.MONITOR_LAMBDAS[state]],
                payload_response_only=True,
                retry_on_service_exceptions=False,
                result_path=workflow.MONITOR_RESULT_PATHS[state],
            )
            # Lambda's own hiccups only: a step's error (a bad window, no endpoint) is an answer.
            step.add_retry(
                errors=LAMBDA_RETRYABLE, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2
            )
            return step

        prepare = lambda_step(workflow.MONITOR_PREPARE)
        publish = lambda_step(workflow.MONITOR_PUBLISH)
        # aws-cdk-lib has no task for CreateProcessingJob: the state is written out as Step
        # Functions' optimized integration documents it (as retraining's Evaluate is).
        job = sfn.CustomState(
            flow,
            workflow.MONITOR_JOB,
            state_json={
                "Type": "Task",
                "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createProcessingJob.sync",
                "Parameters": {
                    "ProcessingJobName.$": "$.run.job_name",
                    "RoleArn": self.job_role.role_arn,
                    "AppSpecification": {
                        "ImageUri": self._serving.image_uri,
                        "ContainerEntrypoint": list(workflow.MONITOR_ENTRYPOINT),
                        "ContainerArguments.$": "$.run.arguments",
                    },
                    "ProcessingResources": {
                        "ClusterConfig": {
                            "InstanceCount": 1,
                            "InstanceType": config.monitor_instance_type,
                            "VolumeSizeInGB": JOB_VOLUME_GB,
                        }
                    },
                    # Not isolated: the job lists and reads the window's many small log objects
                    # from S3 itself (boto3, in parallel) and writes its reports there, which an
                    # isolated container cannot; its role limits it to those prefixes. No
                    # ProcessingInputs/Outputs for the same reason.
                    "NetworkConfig": {"EnableNetworkIsolation": False},
                    "StoppingCondition": {"MaxRuntimeInSeconds": int(JOB_MAX_RUNTIME.to_seconds())},
                    "Environment": {"AWS_DEFAULT_REGION": Aws.REGION},
                },
                # Publish reads the result from S3; the state keeps only which job wrote it.
                "ResultSelector": {"job_name.$": "$.ProcessingJobName", "status.$": "$.ProcessingJobStatus"},
                "ResultPath": workflow.MONITOR_RESULT_PATHS[workflow.MONITOR_JOB],
            },
        )
        job.add_retry(
            errors=SAGEMAKER_API_RETRYABLE, interval=Duration.seconds(30), max_attempts=3, backoff_rate=2
        )
        # e.g. the account's concurrent-job limit: wait for other jobs to finish
        job.add_retry(errors=SAGEMAKER_CAPACITY, interval=Duration.minutes(5), max_attempts=3, backoff_rate=2)

        failed = sfn.Fail(
            flow, workflow.MONITOR_FAILED, error_path="$.error.Error", cause_path="$.error.Cause"
        )
        for step in (prepare, job, publish):
            step.add_catch(failed, errors=[sfn.Errors.ALL], result_path="$.error")

        machine = sfn.StateMachine(
            flow,
            "StateMachine",
            state_machine_name=monitor_state_machine_name(config.prefix),
            state_machine_type=sfn.StateMachineType.STANDARD,
            # Publish ends the run (every state is the contract's): the output carries $.published.
            definition_body=sfn.DefinitionBody.from_chainable(prepare.next(job).next(publish)),
            timeout=EXECUTION_TIMEOUT,
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=log_group_with_retention(flow, "Logs", config),
                level=sfn.LogLevel.ALL,
                # The state holds the run's window, S3 URIs and figures, never a row of data.
                include_execution_data=True,
            ),
        )
        # What the optimized createProcessingJob.sync integration needs: the job, the managed
        # rule it watches the job with, and passing the job's role.
        machine.add_to_role_policy(iam.PolicyStatement(
            actions=["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                     "sagemaker:StopProcessingJob", "sagemaker:AddTags", "sagemaker:ListTags"],
            resources=[stack.format_arn(service="sagemaker", resource=f"processing-job/{config.prefix}-*")],
        ))  # fmt: skip
        machine.add_to_role_policy(iam.PolicyStatement(
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[stack.format_arn(service="events", resource="rule",
                                        resource_name="StepFunctionsGetEventsForSageMakerProcessingJobsRule")],
        ))  # fmt: skip
        machine.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["iam:PassRole"],
            resources=[self.job_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ))  # fmt: skip

        policy = default_policy(machine.role)
        acknowledge(policy, "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray and CloudWatch Logs delivery have no resource-level permissions.")  # fmt: skip
        for state in workflow.MONITOR_LAMBDAS:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{arn_of(self.functions[workflow.MONITOR_LAMBDAS[state]])}:*]",
                "Invoking a Lambda by ARN covers its versions and aliases (CDK's grant for LambdaInvoke).",
            )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{SAGEMAKER_NAG_ARN}:processing-job/{config.prefix}-*]",
            "One monitoring job per run, named <prefix>-<model>-monitor-<run> by Prepare.",
        )
        return machine

    # -- schedules, alarms, and the alarm that retrains -------------------------------------------

    def _build_schedules(self) -> dict[str, scheduler.Schedule]:
        config = self._config
        if not config.monitor_schedule:
            return {}
        role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
            description="inferline monitoring schedules: start the monitoring workflow",
        )
        return {
            model: scheduler.Schedule(
                self,
                f"{endpoint.node.id}Schedule",
                schedule_name=monitor_schedule_name(config.prefix, model),
                description=f"Monitor {model} ({config.monitor_schedule})",
                schedule=scheduler.ScheduleExpression.expression(
                    SCHEDULE_EXPRESSIONS[config.monitor_schedule]
                ),
                # The target grants the role states:StartExecution on this machine only.
                target=scheduler_targets.StepFunctionsStartExecution(
                    self.state_machine,
                    input=scheduler.ScheduleTargetInput.from_object({"model": model, "trigger": "schedule"}),
                    role=role,
                    # A run that cannot start within the hour is skipped: the next one covers it.
                    max_event_age=Duration.hours(1),
                    retry_attempts=10,
                ),
            )
            for model, endpoint in self._serving.endpoints.items()
        }

    def _build_alarms(self) -> dict[tuple[str, str], cloudwatch.Alarm]:
        """(model, alarm key) -> the alarm on the figure Publish emits, at the spec's threshold."""
        config = self._config
        alarms = {}
        for model, endpoint in self._serving.endpoints.items():
            spec = load_spec(model)
            report = f"s3://{self._data.bucket_name}/{monitoring_latest_prefix(model)}report.html"
            for alarm in ALARMS:
                construct_id = "".join(part.capitalize() for part in alarm.key.split("_"))
                alarms[model, alarm.key] = cloudwatch.Alarm(
                    self,
                    f"{endpoint.node.id}{construct_id}Alarm",
                    alarm_name=alarm_name(config.prefix, model, alarm),
                    alarm_description=f"{alarm.description} Newest report: {report}. "
                    + _retraining_note(model, alarm),
                    metric=self.metric(model, alarm.metric),
                    threshold=alarm.threshold(spec),
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    evaluation_periods=1,
                    # A run that could not judge a figure leaves it out: the alarm keeps its state
                    # (model_artifacts/monitoring/history.py alarm_states does the same locally).
                    treat_missing_data=cloudwatch.TreatMissingData.IGNORE,
                )
        return alarms

    def _build_retrain_rule(self) -> events.Rule | None:
        """A retraining alarm entering ALARM -> on_alarm (which keeps the cool-down)."""
        # The names as text (the alarms are named so), not references: the pattern reads as it is.
        names = [
            alarm_name(self._config.prefix, model, ALARMS_BY_KEY[key])
            for model, key in self.alarms
            if retrains(model, ALARMS_BY_KEY[key])
        ]
        if not names:
            return None
        rule = events.Rule(
            self,
            "RetrainOnAlarm",
            description="A monitoring alarm that retrains entered ALARM: start retraining (with a cool-down)",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                detail={"alarmName": names, "state": {"value": ["ALARM"]}},
            ),
        )
        # on_alarm is idempotent (the claim is a conditional write): EventBridge may retry it.
        rule.add_target(targets.LambdaFunction(
            self.functions["on_alarm"], max_event_age=Duration.hours(1), retry_attempts=3
        ))  # fmt: skip
        return rule


def retrains(model: str, alarm: Alarm) -> bool:
    """Whether the alarm starts retraining: a drift or quality alarm, unless the spec says no."""
    return alarm.retrains and load_spec(model).monitoring.retrain_on_alarm


def _retraining_note(model: str, alarm: Alarm) -> str:
    if retrains(model, alarm):
        hours = load_spec(model).monitoring.retrain_cooldown_hours
        return f"Entering ALARM starts retraining (at most once every {hours} h)."
    if alarm.retrains:
        return "Does not start retraining (the spec's monitoring.retrain_on_alarm is false)."
    return "Does not start retraining: fix the data at its source."


# -- IAM helpers: each grant with cdk-nag's wildcard findings acknowledged beside it ------------


def _objects(grantee: iam.IGrantable, bucket: s3.IBucket, pattern: str, actions: list[str], why: str) -> None:
    """`actions` on the bucket's objects matching `pattern` only."""
    iam.Grant.add_to_principal(
        grantee=grantee, actions=actions, resource_arns=[bucket.arn_for_objects(pattern)]
    )
    acknowledge(default_policy(grantee), f"AwsSolutions-IAM5[Resource::{arn_of(bucket)}/{pattern}]", why)


def _list(grantee: iam.IGrantable, bucket: s3.IBucket, patterns: list[str]) -> None:
    """ListBucket on the bucket, for keys matching `patterns` only."""
    iam.Grant.add_to_principal(
        grantee=grantee,
        actions=["s3:ListBucket"],
        resource_arns=[bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": patterns}},
    )


def _model_data(grantee: iam.IGrantable, serving: Serving) -> None:
    """The model.tar.gz each endpoint was deployed with (wherever it is): the first champion."""
    for endpoint in serving.endpoints.values():
        iam.Grant.add_to_principal(
            grantee=grantee, actions=["s3:GetObject"], resource_arns=[endpoint.model_data_object_arn]
        )
