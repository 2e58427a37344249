"""Retraining: every model retrained on a schedule, promoted only when it beats the champion.

    EventBridge Scheduler "<prefix>-retrain-<model>" (retrainSchedule, monthly by default), or
    `aws stepfunctions start-execution --input '{"model": "<model>"}'`
      -> Step Functions STANDARD "<prefix>-retrain", its states named by inferline.workflow:
         BuildDataset (Lambda) -> HasEnoughData -> Train (SageMaker training job, .sync)
         -> Evaluate (SageMaker processing job, .sync) -> Gate (Lambda) -> Register (Lambda)
         -> IsPromoted -> Deploy (Lambda: blue/green UpdateEndpoint) -> WaitForEndpoint
         -> CheckEndpoint (Lambda) -> EndpointSettled (loops while the endpoint changes)
         -> VerifyDeployment (Lambda) -> Notify (Lambda, SNS) -> Done
         a skip (not enough data) or a rejection goes straight to Notify; any failure is
         caught into $.error -> NotifyFailure -> RetrainingFailed

Training and evaluation run the image the endpoints serve (its `train` program, and
`python -m model_artifacts.evaluate`), so a model is trained, judged and served by the same
pinned scikit-learn. One Model Registry group per model holds every contender, approved or
rejected. Outcomes are published to the SNS topic "<prefix>-retraining".

S3 layout (functions/retrain): the prediction and ground-truth logs and the base training set
are read from the data bucket, and each run's train/holdout datasets and manifest written
there under retraining/<model>/<run_id>/; training writes each model version under
models/<model>/<job>/ in the artifacts bucket, and evaluation its report beside it.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Size, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from inferline import workflow
from inferline.resources import (
    ENV_VARS,
    base_training_key,
    model_package_group,
    model_version_prefix,
    retrain_run_prefix,
    retrain_state_machine_name,
    retrain_version_claim_key,
)
from infra.config import Config, retrain_schedule_name
from infra.lambda_code import LambdaFunctions, log_group_with_retention
from infra.nag import acknowledge, arn_of, default_policy
from infra.online_api import GROUND_TRUTH_PREFIX, LAMBDA_RETRYABLE, PREDICTIONS_PREFIX
from infra.serving import Serving
from infra.storage import Storage

# Top-level S3 prefixes, read off the shared key layout (each ends in "/").
TRAINING_SETS_PREFIX = base_training_key("m").split("/", 1)[0] + "/"  # data bucket
RUNS_PREFIX = retrain_run_prefix("m", "r").split("/", 1)[0] + "/"  # data bucket
MODELS_PREFIX = model_version_prefix("m").split("/", 1)[0] + "/"  # artifacts bucket
CLAIMS_PATTERN = retrain_version_claim_key("*", "*").removesuffix(".json")  # data bucket

# A run waits for a training job, an evaluation job and a blue/green update with its bake.
EXECUTION_TIMEOUT = Duration.hours(24)
TRAINING_MAX_RUNTIME = Duration.hours(2)
EVALUATION_MAX_RUNTIME = Duration.hours(1)
JOB_VOLUME_GB = 30

# Why a role may touch a whole prefix (cdk-nag's reason).
RUNS_WHY = "Each run's train/holdout datasets and manifest, one folder per model and run."
MODELS_WHY = "Model versions and their evaluation reports, one folder per model and training job."
SNS_MANAGED_KEY = "alias/aws/sns"

# Where the evaluation job's inputs and output sit in its container.
PROCESSING_DIR = "/opt/ml/processing"
EVALUATE_ENTRYPOINT = ["python", "-m", "model_artifacts.evaluate"]

# Each retraining Lambda, by its handler function: (memory MB, timeout). BuildDataset reads
# a month of prediction logs and ground truth and writes the datasets: the longest step.
LAMBDA_SIZES: dict[str, tuple[int, Duration]] = {
    "build_dataset": (2048, Duration.minutes(15)),
    "gate": (512, Duration.minutes(1)),
    "register": (512, Duration.minutes(1)),
    "deploy": (512, Duration.minutes(2)),
    "check_endpoint": (256, Duration.seconds(30)),
    "verify_deployment": (256, Duration.seconds(30)),
    "notify": (512, Duration.minutes(1)),
}

# SageMaker's own API errors while creating a job (the job does not exist yet, so a retry
# with the same name is safe). A job that ran and failed is never retried: job names are
# unique, so a second CreateTrainingJob with the same name could only fail again.
SAGEMAKER_API_RETRYABLE = ["SageMaker.AmazonSageMakerException", "SageMaker.ThrottlingException"]
SAGEMAKER_CAPACITY = ["SageMaker.ResourceLimitExceededException"]
# VerifyDeployment's error when SageMaker rolled the update back: reported, never retried.
PROMOTION_ROLLED_BACK = "PromotionRolledBack"


class Retraining(Construct):
    """The retraining workflow, its Lambdas and SageMaker job roles, one Model Registry group
    and one schedule per model, and the outcomes topic."""

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
        prefix = config.prefix
        stack = Stack.of(self)
        data, artifacts = storage.data, storage.artifacts

        self.model_package_groups = {
            model: sagemaker.CfnModelPackageGroup(
                self,
                f"{endpoint.node.id}ModelPackageGroup",
                model_package_group_name=model_package_group(prefix, model),
                model_package_group_description=f"inferline {model}: every retrained "
                "contender, approved (promoted) or rejected",
            )
            for model, endpoint in serving.endpoints.items()
        }
        for group in self.model_package_groups.values():
            # Model versions are history, like the data: a `cdk destroy` keeps them (and
            # CloudFormation cannot delete a group that still holds versions).
            group.apply_removal_policy(RemovalPolicy.RETAIN)

        # Encrypted with the AWS managed SNS key: only SNS uses it on the account's behalf,
        # and email subscriptions need no key grant. A topic of its own, not the alarm topic:
        # its readers are the models' owners, and the Notify Lambda can publish nowhere else.
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=f"{prefix}-retraining",
            display_name=f"{prefix} retraining",
            master_key=kms.Alias.from_alias_name(self, "TopicKey", SNS_MANAGED_KEY),
            enforce_ssl=True,
        )
        for address in config.retrain_emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(address))

        # -- the Lambdas: one per handler function, every one told the same ----------------
        env = {
            ENV_VARS["data"]: data.bucket_name,
            ENV_VARS["artifacts"]: artifacts.bucket_name,
            "RESOURCE_PREFIX": prefix,
            "SAGEMAKER_ROLE_ARN": serving.role.role_arn,
            "ROLLBACK_ALARMS": stack.to_json_string(
                {m: [a.alarm_name for a in e.alarms] for m, e in serving.endpoints.items()}
            ),
            "RETRAIN_TOPIC_ARN": self.topic.topic_arn,
        }
        self.functions: dict[str, lambda_.Function] = {}
        for function in dict.fromkeys(workflow.RETRAIN_LAMBDAS.values()):
            memory, timeout = LAMBDA_SIZES[function]
            self.functions[function] = lambdas.function(
                self,
                "".join(part.capitalize() for part in function.split("_")),
                name=f"retrain-{function.replace('_', '-')}",
                handler=f"retrain.handlers.{function}",
                memory=memory,
                timeout=timeout,
                env=env,
            )
        fns = self.functions
        build_dataset, gate, register = fns["build_dataset"], fns["gate"], fns["register"]
        deploy, check_endpoint, verify = fns["deploy"], fns["check_endpoint"], fns["verify_deployment"]
        notify = fns["notify"]

        # SageMaker resources, as ARN paths: this stack's endpoints and registry groups.
        endpoints = [f"endpoint/{e.endpoint_name}" for e in serving.endpoints.values()]
        groups = [f"model-package-group/{model_package_group(prefix, m)}" for m in config.models]
        packages = [f"model-package/{model_package_group(prefix, m)}/*" for m in config.models]
        # The endpoint's current config and model: named by CloudFormation, or by an earlier
        # run's Deploy. Describe only.
        serving_now = ["endpoint-config/*", "model/*"]
        serving_now_why = (
            "The endpoint's current config and model, named by CloudFormation "
            "or by an earlier run: describe only."
        )
        packages_why = "The versions in this stack's own Model Registry groups."

        # BuildDataset: the logs and the base training set in, the run's datasets out; the
        # champion is read off the endpoint, the next version number off the registry.
        for pattern, why in (
            (PREDICTIONS_PREFIX, "The prediction log, joined with ground truth by id."),
            (GROUND_TRUTH_PREFIX, "The ground truth, joined with the prediction log by id."),
            (f"{TRAINING_SETS_PREFIX}*", "Each model's base training set."),
        ):
            self._read(build_dataset, data, pattern, why)
        self._write(build_dataset, data, RUNS_PREFIX, RUNS_WHY)
        # The version claims (written under RUNS_PREFIX): a retried run finds its own.
        self._read(build_dataset, data, CLAIMS_PATTERN, "Each model's version claims, one per version.")
        self._sagemaker(build_dataset, ["sagemaker:DescribeEndpoint"], endpoints)
        self._sagemaker(
            build_dataset,
            ["sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
            serving_now,
            serving_now_why,
        )
        self._list_model_packages(build_dataset)
        # The champion's version: from its Model, or else from the metrics.json in its
        # model.tar.gz (the model the stack was deployed with, wherever it is, or a version
        # under models/); registered on the first run so a rollback can return to it.
        self._read(build_dataset, artifacts, f"{MODELS_PREFIX}*", MODELS_WHY)
        for endpoint in serving.endpoints.values():
            build_dataset.add_to_role_policy(
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[endpoint.model_data_object_arn])
            )
        self._sagemaker(
            build_dataset,
            ["sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage"]
            + ["sagemaker:DescribeModelPackage"],
            [*groups, *packages],
            packages_why,
        )

        # Gate reads the evaluation; Register records the contender with it in the registry.
        self._read(gate, artifacts, f"{MODELS_PREFIX}*", MODELS_WHY)
        self._read(register, artifacts, f"{MODELS_PREFIX}*", MODELS_WHY)
        self._sagemaker(
            register,
            [
                "sagemaker:CreateModelPackage",
                "sagemaker:UpdateModelPackage",
                "sagemaker:DescribeModelPackage",
            ],
            [*groups, *packages],
            packages_why,
        )
        self._sagemaker(register, ["sagemaker:DescribeModelPackageGroup"], groups)
        self._list_model_packages(register)

        # Deploy: a Model and an EndpointConfig named "<prefix>-...", then a blue/green
        # UpdateEndpoint of this stack's endpoints, naming their rollback alarms.
        named_why = "Models and endpoint configs a run creates, named <prefix>-..."
        self._sagemaker(deploy, ["sagemaker:CreateModel"], [f"model/{prefix}-*"], named_why)
        self._sagemaker(
            deploy, ["sagemaker:CreateEndpointConfig"], [f"endpoint-config/{prefix}-*"], named_why
        )
        self._sagemaker(
            deploy,
            ["sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint"],
            [*endpoints, f"endpoint-config/{prefix}-*"],
            named_why,
        )
        self._sagemaker(
            deploy,
            ["sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
            serving_now,
            serving_now_why,
        )
        self._sagemaker(deploy, ["sagemaker:DescribeModelPackage"], packages, packages_why)
        deploy.add_to_role_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:DescribeAlarms"],
                resources=[a.alarm_arn for e in serving.endpoints.values() for a in e.alarms],
            )
        )
        self._pass_role(deploy.role, serving.role)  # type: ignore[arg-type]

        for fn in (check_endpoint, verify):
            self._sagemaker(fn, ["sagemaker:DescribeEndpoint"], endpoints)
        # A rolled-back promotion: VerifyDeployment marks the version Rejected (it never served).
        self._sagemaker(
            verify, ["sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"], packages, packages_why
        )
        # A failed promotion: Notify marks a version the gate approved but that never served
        # as Rejected, so a rollback never returns to it.
        self._sagemaker(
            notify, ["sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"], packages, packages_why
        )
        self.topic.grant_publish(notify)
        acknowledge(
            default_policy(notify),
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            f"Publishing to a topic encrypted with {SNS_MANAGED_KEY} (CDK's grant_publish).",
        )
        acknowledge(
            default_policy(notify),
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kms:<AWS::Region>:<AWS::AccountId>:key/*]",
            f"Only the key with the alias {SNS_MANAGED_KEY} (a kms:ResourceAliases condition).",
        )

        # -- the SageMaker jobs' roles ----------------------------------------------------------
        # Training: the run's datasets in, a model version out.
        self.training_role = serving.job_role(
            self, "TrainingRole", log_group="TrainingJobs", description="inferline retraining: training jobs"
        )
        self._read(self.training_role, data, f"{RUNS_PREFIX}*", RUNS_WHY)
        self._write(self.training_role, artifacts, MODELS_PREFIX, MODELS_WHY)
        # Evaluation: the holdout, the contender and the champion in, the report out beside the
        # contender. The first champion is the model data the stack was deployed with,
        # wherever it is.
        self.processing_role = serving.job_role(
            self, "ProcessingRole", log_group="ProcessingJobs",
            description="inferline retraining: evaluation jobs",
        )  # fmt: skip
        self._read(self.processing_role, data, f"{RUNS_PREFIX}*", RUNS_WHY)
        self._read(self.processing_role, artifacts, f"{MODELS_PREFIX}*", MODELS_WHY)
        self._write(self.processing_role, artifacts, MODELS_PREFIX, MODELS_WHY)
        for endpoint in serving.endpoints.values():
            self.processing_role.add_to_policy(
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[endpoint.model_data_object_arn])
            )
            # An input is an S3 prefix (here, one object's key): SageMaker lists it.
            self.processing_role.add_to_policy(
                iam.PolicyStatement(actions=["s3:ListBucket"], resources=[endpoint.model_data_bucket_arn])
            )

        # -- the workflow -------------------------------------------------------------------------
        self.state_machine = self._workflow(serving)

        # -- one schedule per model ---------------------------------------------------------------
        self.schedules: dict[str, scheduler.Schedule] = {}
        if config.retrain_schedule:
            role = iam.Role(
                self,
                "SchedulerRole",
                assumed_by=iam.ServicePrincipal(
                    "scheduler.amazonaws.com",
                    conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
                ),
                description="inferline retraining schedules: start the retraining workflow",
            )
            for model, endpoint in serving.endpoints.items():
                self.schedules[model] = scheduler.Schedule(
                    self,
                    f"{endpoint.node.id}Schedule",
                    schedule_name=retrain_schedule_name(prefix, model),
                    description=f"Retrain {model}",
                    schedule=scheduler.ScheduleExpression.expression(config.retrain_schedule),
                    # The target grants the role states:StartExecution on this machine only.
                    target=scheduler_targets.StepFunctionsStartExecution(
                        self.state_machine,
                        input=scheduler.ScheduleTargetInput.from_object(
                            {"model": model, "trigger": "schedule"}
                        ),
                        role=role,
                        # A run that cannot start within the hour waits for next month's.
                        max_event_age=Duration.hours(1),
                        retry_attempts=10,
                    ),
                )

    # -- the state machine --------------------------------------------------------------------

    def _workflow(self, serving: Serving) -> sfn.StateMachine:
        config = self._config
        fns = self.functions
        # The states in a scope of their own: their names are the workflow's, and the
        # Lambdas beside them already use some of those names.
        flow = Construct(self, "Workflow")

        def lambda_step(state: str) -> tasks.LambdaInvoke:
            # The Lambda's return value, as it is, under the step's own key of the state.
            step = tasks.LambdaInvoke(
                flow,
                state,
                lambda_function=fns[workflow.RETRAIN_LAMBDAS[state]],
                payload_response_only=True,
                retry_on_service_exceptions=False,
                result_path=workflow.RETRAIN_RESULT_PATHS[state],
            )
            # Lambda's own hiccups only: a step's errors (PromotionRolledBack included) are
            # answers, and Deploy's CreateModel is not worth repeating blindly.
            step.add_retry(
                errors=LAMBDA_RETRYABLE, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2
            )
            return step

        build_dataset = lambda_step(workflow.BUILD_DATASET)
        gate = lambda_step(workflow.GATE)
        register = lambda_step(workflow.REGISTER)
        deploy = lambda_step(workflow.DEPLOY)
        check_endpoint = lambda_step(workflow.CHECK_ENDPOINT)
        verify = lambda_step(workflow.VERIFY_DEPLOYMENT)
        notify = lambda_step(workflow.NOTIFY)
        notify_failure = lambda_step(workflow.NOTIFY_FAILURE)

        train = tasks.SageMakerCreateTrainingJob(
            flow,
            workflow.TRAIN,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            training_job_name=sfn.JsonPath.string_at("$.dataset.training_job_name"),
            # Without policy updates: for S3 locations read from the state, the task would
            # grant the role s3:GetObject/ListBucket/PutObject on every bucket ("*"). The
            # role's own grants above name the prefixes instead.
            role=self.training_role.without_policy_updates(),
            # SageMaker runs the image as `<image> train` (its bring-your-own-container
            # contract); the job needs no network beyond S3, which SageMaker does for it.
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=tasks.DockerImage.from_registry(serving.image_uri),
                training_input_mode=tasks.InputMode.FILE,
            ),
            enable_network_isolation=True,
            # "train", and "reference": the holdout (the newest production rows), which the
            # version's monitoring baseline is computed on (model_artifacts/train.py).
            input_data_config=[
                tasks.Channel(
                    channel_name=channel,
                    data_source=tasks.DataSource(
                        s3_data_source=tasks.S3DataSource(
                            s3_location=tasks.S3Location.from_json_expression(uri),
                            s3_data_type=tasks.S3DataType.S3_PREFIX,
                        )
                    ),
                )
                for channel, uri in (("train", "$.dataset.train_uri"), ("reference", "$.dataset.holdout_uri"))
            ],
            output_data_config=tasks.OutputDataConfig(
                s3_output_location=tasks.S3Location.from_json_expression("$.dataset.output_uri"),
            ),
            hyperparameters={
                "model": sfn.JsonPath.string_at("$.model"),
                "version": sfn.JsonPath.string_at("$.dataset.contender_version"),
                "seed": sfn.JsonPath.string_at("$.dataset.hyperparameters.seed"),
                "params": sfn.JsonPath.string_at("$.dataset.hyperparameters.params"),
            },
            resource_config=tasks.ResourceConfig(
                instance_count=1,
                # rendered as "ml.<type>"
                instance_type=ec2.InstanceType(config.training_instance_type.removeprefix("ml.")),
                volume_size=Size.gibibytes(JOB_VOLUME_GB),
            ),
            stopping_condition=tasks.StoppingCondition(max_runtime=TRAINING_MAX_RUNTIME),
            result_selector={"model_data_url": sfn.JsonPath.string_at("$.ModelArtifacts.S3ModelArtifacts")},
            result_path=workflow.RETRAIN_RESULT_PATHS[workflow.TRAIN],
        )

        def s3_input(name: str, uri_path: str) -> dict:
            return {
                "InputName": name,
                "S3Input": {
                    "S3Uri.$": uri_path,
                    "LocalPath": f"{PROCESSING_DIR}/{name}",
                    "S3DataType": "S3Prefix",  # a model's URL is an object key: a prefix of itself
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }

        # aws-cdk-lib has no task for CreateProcessingJob: the state is written out as
        # Step Functions' optimized integration documents it.
        evaluate = sfn.CustomState(
            flow,
            workflow.EVALUATE,
            state_json={
                "Type": "Task",
                "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createProcessingJob.sync",
                "Parameters": {
                    "ProcessingJobName.$": "$.dataset.evaluation_job_name",
                    "RoleArn": self.processing_role.role_arn,
                    "AppSpecification": {
                        "ImageUri": serving.image_uri,
                        "ContainerEntrypoint": EVALUATE_ENTRYPOINT,
                    },
                    "ProcessingResources": {
                        "ClusterConfig": {
                            "InstanceCount": 1,
                            "InstanceType": config.training_instance_type,
                            "VolumeSizeInGB": JOB_VOLUME_GB,
                        }
                    },
                    "NetworkConfig": {"EnableNetworkIsolation": True},
                    "StoppingCondition": {"MaxRuntimeInSeconds": int(EVALUATION_MAX_RUNTIME.to_seconds())},
                    "ProcessingInputs": [
                        s3_input("holdout", "$.dataset.holdout_uri"),
                        s3_input("contender", "$.training.model_data_url"),
                        s3_input("champion", "$.dataset.champion.model_data_url"),
                    ],
                    "ProcessingOutputConfig": {
                        "Outputs": [
                            {
                                "OutputName": "evaluation",
                                "S3Output": {
                                    "S3Uri.$": "$.dataset.evaluation_uri",
                                    "LocalPath": f"{PROCESSING_DIR}/evaluation",
                                    "S3UploadMode": "EndOfJob",
                                },
                            }
                        ]
                    },
                },
                # Gate reads the evaluation from S3; the state keeps only which job wrote it.
                "ResultSelector": {
                    "job_name.$": "$.ProcessingJobName",
                    "status.$": "$.ProcessingJobStatus",
                },
                "ResultPath": workflow.RETRAIN_RESULT_PATHS[workflow.EVALUATE],
            },
        )
        for job in (train, evaluate):
            job.add_retry(
                errors=SAGEMAKER_API_RETRYABLE, interval=Duration.seconds(30), max_attempts=3, backoff_rate=2
            )
            # e.g. the account's concurrent-job limit: wait for other jobs to finish
            job.add_retry(
                errors=SAGEMAKER_CAPACITY, interval=Duration.minutes(5), max_attempts=3, backoff_rate=2
            )

        # Every failure ends in NotifyFailure (which only retries) and the Fail state, which
        # carries the original error as the execution's.
        failed = sfn.Fail(
            flow, workflow.RETRAINING_FAILED, error_path="$.error.Error", cause_path="$.error.Cause"
        )
        notify_failure.next(failed)
        states = {
            workflow.BUILD_DATASET: build_dataset,
            workflow.TRAIN: train,
            workflow.EVALUATE: evaluate,
            workflow.GATE: gate,
            workflow.REGISTER: register,
            workflow.DEPLOY: deploy,
            workflow.CHECK_ENDPOINT: check_endpoint,
            workflow.VERIFY_DEPLOYMENT: verify,
            workflow.NOTIFY: notify,
        }
        for name in workflow.RETRAIN_TASKS:
            states[name].add_catch(notify_failure, errors=[sfn.Errors.ALL], result_path="$.error")

        notify.next(sfn.Succeed(flow, workflow.DONE))
        wait = sfn.Wait(
            flow,
            workflow.WAIT_FOR_ENDPOINT,
            time=sfn.WaitTime.duration(Duration.seconds(workflow.ENDPOINT_WAIT_SECONDS)),
        )
        changing = sfn.Condition.or_(
            *(
                sfn.Condition.string_equals("$.endpoint_status.status", status)
                for status in workflow.ENDPOINT_CHANGING
            )
        )
        settled = sfn.Choice(flow, workflow.ENDPOINT_SETTLED).when(changing, wait).otherwise(verify)
        verify.next(notify)
        wait.next(check_endpoint).next(settled)
        is_promoted = (
            sfn.Choice(flow, workflow.IS_PROMOTED)
            .when(sfn.Condition.string_equals("$.gate.decision", "promote"), deploy.next(wait))
            .otherwise(notify)
        )
        has_enough_data = (
            sfn.Choice(flow, workflow.HAS_ENOUGH_DATA)
            .when(sfn.Condition.string_equals("$.dataset.status", "skipped"), notify)
            .otherwise(train.next(evaluate).next(gate).next(register).next(is_promoted))
        )

        machine = sfn.StateMachine(
            flow,
            "StateMachine",
            state_machine_name=retrain_state_machine_name(config.prefix),
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(build_dataset.next(has_enough_data)),
            timeout=EXECUTION_TIMEOUT,
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=log_group_with_retention(flow, "Logs", config),
                level=sfn.LogLevel.ALL,
                # The state holds S3 URIs, job names and metrics, never a row of data.
                include_execution_data=True,
            ),
        )

        # What the optimized createProcessingJob.sync integration needs (the training task
        # adds its own): the job, the managed rule it watches the job with, and the role.
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                resources=[
                    Stack.of(flow).format_arn(
                        service="sagemaker", resource=f"processing-job/{config.prefix}-*"
                    )
                ],
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    Stack.of(flow).format_arn(
                        service="events",
                        resource="rule",
                        resource_name="StepFunctionsGetEventsForSageMakerProcessingJobsRule",
                    )
                ],
            )
        )
        self._pass_role(machine.role, self.processing_role)

        policy = default_policy(machine.role)
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray, CloudWatch Logs delivery "
            "and sagemaker:ListTags (CDK's training task) have no resource-level permissions.",
        )
        for fn in fns.values():
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{arn_of(fn)}:*]",
                "Invoking a Lambda by ARN covers its versions and aliases (CDK's grant for LambdaInvoke).",
            )
        jobs = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>"
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{jobs}:training-job/*]",
            "CDK's training task: a job name read from the state scopes to training-job/*.",
        )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{jobs}:processing-job/{config.prefix}-*]",
            "One evaluation job per run, named <prefix>-... by BuildDataset.",
        )
        return machine

    # -- IAM helpers: each grant with cdk-nag's wildcard findings acknowledged beside it ------

    @staticmethod
    def _read(grantee: iam.IGrantable, bucket: s3.Bucket, pattern: str, why: str) -> None:
        bucket.grant_read(grantee, pattern)
        policy = default_policy(grantee)
        acknowledge(policy, f"AwsSolutions-IAM5[Resource::{arn_of(bucket)}/{pattern}]", why)
        for action in ("s3:GetObject*", "s3:GetBucket*", "s3:List*"):
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Action::{action}]",
                "CDK's grant_read: read and list objects, on the prefixes listed only.",
            )

    @staticmethod
    def _write(grantee: iam.IGrantable, bucket: s3.Bucket, prefix: str, why: str) -> None:
        bucket.grant_put(grantee, f"{prefix}*")
        policy = default_policy(grantee)
        acknowledge(policy, f"AwsSolutions-IAM5[Resource::{arn_of(bucket)}/{prefix}*]", why)
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Action::s3:Abort*]",
            "grant_put includes aborting the role's own multipart uploads.",
        )

    @staticmethod
    def _sagemaker(
        fn: lambda_.Function, actions: list[str], paths: list[str], why: str | None = None
    ) -> None:
        """`actions` on SageMaker resources given as ARN paths ("endpoint/<name>")."""
        stack = Stack.of(fn)
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=actions,
                resources=[stack.format_arn(service="sagemaker", resource=path) for path in paths],
            )
        )
        for path in paths:
            if "*" in path:
                assert why, f"say why {actions} may act on {path}"
                acknowledge(
                    default_policy(fn),
                    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:"
                    f"sagemaker:<AWS::Region>:<AWS::AccountId>:{path}]",
                    why,
                )

    @staticmethod
    def _list_model_packages(fn: lambda_.Function) -> None:
        # Authorized without a package ARN: the request names a group, not a package.
        fn.add_to_role_policy(iam.PolicyStatement(actions=["sagemaker:ListModelPackages"], resources=["*"]))
        acknowledge(
            default_policy(fn),
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray's PutTraceSegments and sagemaker:ListModelPackages have no resource-level permissions.",
        )

    @staticmethod
    def _pass_role(principal: iam.IRole, role: iam.IRole) -> None:
        """PassRole of one role, to SageMaker only."""
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
