"""Observability: alarms on every part of the online and batch paths and on failed retraining
and monitoring runs, an SNS topic they notify, and a CloudWatch dashboard that follows a
prediction from the API to the endpoint and back, a batch job from its queue to its email, and
each model's monitored figures.

The endpoint's error and latency alarms are made by Serving (a deployment rolls back on
them), and the monitoring alarms by Monitoring (a drift or quality alarm starts retraining);
here they are wired to the topic and shown with the rest.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.batch import JOBS_FAILED_METRIC, MAX_RECEIVE_COUNT, Batch
from infra.config import Config
from infra.monitoring import Monitoring
from infra.online_api import OnlineApi
from infra.retraining import Retraining
from infra.serving import Serving

PERIOD = Duration.minutes(5)
# Monitoring runs hourly or daily: its graphs show a week of runs.
MONITORING_RANGE = "-P7D"
GREATER_OR_EQUAL = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        serving: Serving,
        online_api: OnlineApi,
        batch: Batch,
        retraining: Retraining,
        monitoring: Monitoring,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = config.prefix

        # CloudWatch can publish to an encrypted topic only with a customer managed key that
        # lets it use the key (the AWS managed aws/sns key does not).
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description=f"{prefix}: encrypts the alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                  "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            topic_name=f"{prefix}-alarms",
            display_name=f"{prefix} alarms",
            master_key=key,
            enforce_ssl=True,
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        stage = online_api.api.deployment_stage
        functions = online_api.functions.all
        workflows = {m: w.state_machine for m, w in online_api.workflows.items()}

        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(construct_id: str, name: str, metric: cloudwatch.IMetric, description: str,
                  threshold: float = 1) -> None:
            self.alarms.append(cloudwatch.Alarm(
                self,
                construct_id,
                alarm_name=f"{prefix}-{name}",
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=GREATER_OR_EQUAL,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ))

        alarm("Api5xx", "api-5xx", stage.metric_server_error(period=PERIOD, statistic="Sum"),
              "The API answered 5xx (including 503 model_unavailable) at least 5 times in "
              "5 minutes.", threshold=5)
        for fn in functions:
            name = fn.node.id.lower()
            alarm(f"{fn.node.id}Errors", f"{name}-errors",
                  fn.metric_errors(period=PERIOD, statistic="Sum"),
                  f"The {name} Lambda raised (not a 4xx answer: a crash).")
            alarm(f"{fn.node.id}Throttles", f"{name}-throttles",
                  fn.metric_throttles(period=PERIOD, statistic="Sum"),
                  f"The {name} Lambda was throttled: raise its concurrency.")
        for model, machine in workflows.items():
            alarm(
                f"{online_api.workflows[model].node.id}Failures",
                f"online-{model}-failures",
                cloudwatch.MathExpression(
                    expression="failed + timedOut",
                    using_metrics={
                        "failed": machine.metric_failed(period=PERIOD, statistic="Sum"),
                        "timedOut": machine.metric_timed_out(period=PERIOD, statistic="Sum"),
                    },
                    label="failed or timed out",
                    period=PERIOD,
                ),
                f"The {model} workflow failed or timed out (the caller got a 500 or 504).",
            )

        retrain = retraining.state_machine
        alarm(
            "RetrainFailures",
            "retrain-failures",
            cloudwatch.MathExpression(
                expression="failed + timedOut",
                using_metrics={
                    "failed": retrain.metric_failed(period=PERIOD, statistic="Sum"),
                    "timedOut": retrain.metric_timed_out(period=PERIOD, statistic="Sum"),
                },
                label="failed or timed out",
                period=PERIOD,
            ),
            "A retraining run failed or timed out (a rolled-back promotion included); the "
            "retraining topic got the error, and the execution's history shows the step.",
        )

        monitor = monitoring.state_machine
        alarm(
            "MonitorFailures",
            "monitor-failures",
            cloudwatch.MathExpression(
                expression="failed + timedOut",
                using_metrics={
                    "failed": monitor.metric_failed(period=PERIOD, statistic="Sum"),
                    "timedOut": monitor.metric_timed_out(period=PERIOD, statistic="Sum"),
                },
                label="failed or timed out",
                period=PERIOD,
            ),
            "A monitoring run failed or timed out: its figures were not published, so the "
            "monitoring alarms keep their state; the execution's history shows the step (a "
            "monitoring job's failure reason is in its SageMaker description).",
        )

        for q in batch.queues:
            dlq = q.dead_letter_queue
            # The dead-letter Lambda drains its queue within seconds, so the depth alone is
            # rarely sampled above 0: the messages it received count as well.
            alarm(
                f"{q.node.id}DeadLetters",
                f"batch-{q.node.id.lower()}-dead-letters",
                cloudwatch.MathExpression(
                    expression="visible + received",
                    using_metrics={
                        "visible": dlq.metric_approximate_number_of_messages_visible(
                            period=PERIOD, statistic="Maximum"),
                        "received": dlq.metric_number_of_messages_received(
                            period=PERIOD, statistic="Sum"),
                    },
                    label="messages in the dead-letter queue",
                    period=PERIOD,
                ),
                f"A batch {q.node.id.lower()} message failed {MAX_RECEIVE_COUNT} times and "
                "was dead-lettered: its job is failed and the user emailed; see the logs.",
            )
        for service, fn in batch.functions.items():
            alarm(f"{fn.node.id}Errors", f"{service}-errors",
                  fn.metric_errors(period=PERIOD, statistic="Sum"),
                  f"The {service} Lambda crashed or timed out (its messages are retried, "
                  "then dead-lettered).")
        jobs_failed = cloudwatch.MathExpression(
            expression=" + ".join(f"m{i}" for i in range(len(batch.functions))),
            using_metrics={
                f"m{i}": cloudwatch.Metric(namespace=prefix, metric_name=JOBS_FAILED_METRIC,
                                           dimensions_map={"service": service},
                                           period=PERIOD, statistic="Sum")
                for i, service in enumerate(batch.functions)
            },
            label="batch jobs failed",
            period=PERIOD,
        )
        alarm("BatchJobsFailed", "batch-jobs-failed", jobs_failed,
              "A batch job failed (a bad file or a dead-lettered message); the user was "
              "emailed why, and the job item's failure_reason says it too.")

        endpoints = list(serving.endpoints.values())
        monitored = list(monitoring.alarms.values())
        for each in [*self.alarms, *(a for e in endpoints for a in e.alarms), *monitored]:
            each.add_alarm_action(actions.SnsAction(self.topic))
            each.add_ok_action(actions.SnsAction(self.topic))

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{prefix}-online",
            default_interval=Duration.hours(3),
        )
        five = {"period": PERIOD, "statistic": "Sum"}
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=f"# {prefix}: online predictions\nAPI -> workflow (preprocess -> "
                "endpoint -> postprocess) -> API. Alarms notify the SNS topic "
                f"`{prefix}-alarms`.",
                width=24,
                height=2,
            ),
            cloudwatch.AlarmStatusWidget(
                title="Alarms",
                alarms=[*self.alarms, *(a for e in endpoints for a in e.alarms), *monitored],
                width=24,
                height=6,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[stage.metric_count(**five), stage.metric_client_error(**five),
                      stage.metric_server_error(**five)],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="API latency (ms)",
                left=[stage.metric_latency(period=PERIOD, statistic="p50"),
                      stage.metric_latency(period=PERIOD, statistic="p99"),
                      stage.metric_integration_latency(period=PERIOD, statistic="p99")],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Workflow executions",
                left=[m for machine in workflows.values() for m in (
                    machine.metric_succeeded(**five), machine.metric_failed(**five),
                    machine.metric_timed_out(**five))],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Workflow duration p99 (ms)",
                left=[machine.metric_time(period=PERIOD, statistic="p99")
                      for machine in workflows.values()],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Lambda errors and throttles",
                left=[m for fn in functions
                      for m in (fn.metric_errors(**five), fn.metric_throttles(**five))],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Lambda duration p99 (ms)",
                left=[fn.metric_duration(period=PERIOD, statistic="p99") for fn in functions],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Endpoint invocations and errors",
                left=[m for e in endpoints for m in (
                    e.metric("Invocations", "Sum", period=PERIOD),
                    e.metric("Invocation4XXErrors", "Sum", period=PERIOD),
                    e.metric("Invocation5XXErrors", "Sum", period=PERIOD))],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Endpoint latency p99 (µs)",
                left=[m for e in endpoints for m in (
                    e.metric("ModelLatency", "p99", period=PERIOD),
                    e.metric("OverheadLatency", "p99", period=PERIOD))],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Endpoint instances: CPU and GPU (%)",
                left=[m for e in endpoints for m in (
                    e.metric("CPUUtilization", "Average", period=PERIOD,
                             namespace="/aws/sagemaker/Endpoints"),
                    e.metric("GPUUtilization", "Average", period=PERIOD,
                             namespace="/aws/sagemaker/Endpoints"))],
                width=8,
            ),
        )
        # Powertools metrics from the handlers (namespace = prefix, dimension service).
        def app_metric(service: str, name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace=prefix, metric_name=name,
                                     dimensions_map={"service": service}, **five)

        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Predictions and refusals",
                left=[app_metric("postprocess", "Predictions"),
                      app_metric("preprocess", "InvalidRequests"),
                      app_metric("preprocess", "UnknownEntities"),
                      app_metric("postprocess", "BadModelOutputs")],
                width=24,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Batch queues: messages waiting (dead-letter queues right)",
                left=[q.queue.metric_approximate_number_of_messages_visible(
                    period=PERIOD, statistic="Maximum") for q in batch.queues],
                right=[q.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=PERIOD, statistic="Maximum") for q in batch.queues],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Batch Lambdas: errors (left), duration p99 ms (right)",
                left=[fn.metric_errors(**five) for fn in batch.functions.values()],
                right=[fn.metric_duration(period=PERIOD, statistic="p99")
                       for fn in batch.functions.values()],
                width=8,
            ),
            cloudwatch.GraphWidget(title="Batch jobs failed", left=[jobs_failed], width=8),
        )
        self._monitoring_widgets(monitoring, config)

    def _monitoring_widgets(self, monitoring: Monitoring, config: Config) -> None:
        """Each model's monitored figures, one row per model: what the monitoring alarms watch
        (by model, across versions), over a week of runs."""
        week = {"start": MONITORING_RANGE, "height": 6}
        schedule = config.monitor_schedule or "started by hand"
        self.dashboard.add_widgets(cloudwatch.TextWidget(
            markdown=f"## Model monitoring\nOne point per monitoring run ({schedule}); the newest "
            "run's report is `s3://<DataBucket>/monitoring/<model>/latest/report.html`. Drift and "
            "quality alarms start retraining.",
            width=24,
            height=2,
        ))  # fmt: skip
        for model in config.models:
            def figures(*names: str, model: str = model) -> list[cloudwatch.IMetric]:
                return [monitoring.metric(model, name) for name in names]

            self.dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title=f"{model}: drift (drifted inputs, prediction drift; max PSI right)",
                    left=figures("DriftedFeatures", "PredictionDrift"),
                    right=figures("MaxFeaturePSI"),
                    width=6, **week,
                ),
                cloudwatch.GraphWidget(
                    title=f"{model}: quality (live and estimated metric; drops right)",
                    left=figures("LiveMetric", "EstimatedMetric"),
                    right=figures("MetricDrop", "EstimatedMetricDrop"),
                    width=6, **week,
                ),
                cloudwatch.GraphWidget(
                    title=f"{model}: data quality (shares)",
                    left=figures("MissingShare", "UnknownCategoryShare", "OutOfRangeShare",
                                 "DefaultFeaturesShare", "RefusedShare"),
                    width=6, **week,
                ),
                cloudwatch.GraphWidget(
                    title=f"{model}: predictions and labeled predictions per run",
                    left=figures("Predictions", "LabeledPredictions"),
                    width=6, **week,
                ),
            )  # fmt: skip
