"""Batch predictions: a CSV uploaded to S3 is split, predicted in chunks and emailed back.

    s3://<data>/uploads/<model>/<name>.csv  (s3:ObjectCreated:*, suffix .csv)
      -> SQS <prefix>-batch-uploads  -> Lambda <prefix>-batch-split
           checks the header against the spec (a bad file fails its job at once, by email),
           cuts the file into byte ranges on row boundaries, creates/advances the job in
           <prefix>-jobs
      -> SQS <prefix>-batch-chunks   -> Lambda <prefix>-batch-chunk (at most
           batchMaxConcurrency at once, so a big file cannot starve the online path)
           predicts one range through the endpoint, writes batch/ parts and the prediction
           log (one S3 object and one index item per chunk); the last chunk assembles
           results/<model>/<job>/{results,errors}.csv and emails presigned links through SES
    both queues' dead-letter queues -> Lambda <prefix>-batch-dead-letter: marks the job
           failed and emails why

Every queue is SSE-encrypted (SQS-managed keys, which S3 notifications can write to) and
refuses plain HTTP; every event source reports partial batch failures, so one bad message is
retried alone. A message that fails `MAX_RECEIVE_COUNT` times moves to its dead-letter queue.

The SES sender is the `emailSender` setting; left empty, it becomes the deploy-time
parameter `BatchEmailSender` (CloudFormation refuses to deploy without it), so `cdk synth`
needs no address but no stack is ever deployed that cannot send its emails. SES mails the
address a verification link on deploy; nothing is sent until it is clicked.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnParameter, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_ses as ses
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from inferline.resources import ENV_VARS, QUEUES, UPLOADS_PREFIX, queue_name
from infra.config import EMAIL_PATTERN, Config
from infra.lambda_code import LambdaFunctions
from infra.nag import acknowledge, arn_of
from infra.online_api import PREDICTIONS_PREFIX, REFUSALS_PREFIX
from infra.serving import Serving
from infra.storage import BATCH_PARTS_PREFIX, RESULTS_PREFIX, Storage

PREDICTION_LOG_PREFIX = PREDICTIONS_PREFIX.removesuffix("*")  # "predictions/"
REFUSAL_LOG_PREFIX = REFUSALS_PREFIX.removesuffix("*")  # "refusals/"
UPLOADS_QUEUE, CHUNKS_QUEUE = QUEUES  # "batch-uploads", "batch-chunks"

# Function names and Powertools services ("<prefix>-<name>"; metrics carry the service).
SPLIT, CHUNK, DEAD_LETTER = "batch-split", "batch-chunk", "batch-dead-letter"
SUBMIT, STATUS = "batch-submit", "batch-status"
# A presigned upload URL is signed with the submit Lambda's session credentials, which
# outlive an hour; the uploader has that long to start the PUT.
UPLOAD_URL_EXPIRY_SECONDS = 3600
# The Powertools metric the handlers add when a job fails (namespace: the prefix).
JOBS_FAILED_METRIC = "JobsFailed"
UPLOAD_SUFFIX = ".csv"  # S3 filters are case-sensitive: "x.CSV" starts no job
EMAIL_SENDER_PARAMETER = "BatchEmailSender"
# AWS: a queue's visibility timeout should be at least six times its function's timeout, so
# Lambda's retries of a throttled or failed batch never see a message reappear mid-run.
VISIBILITY_PER_TIMEOUT = 6
MAX_RECEIVE_COUNT = 3  # a message failing 3 times is a poison message: dead-letter it
DLQ_RETENTION = Duration.days(14)  # the SQS maximum: what the dead-letter Lambda cannot handle waits
QUEUE_RETENTION = Duration.days(4)

# One upload is a whole job, and a 1 GB file is scanned end to end for row boundaries.
SPLIT_TIMEOUT = Duration.minutes(5)
# The splitter caps a chunk's rows and bytes (CHUNK_MAX_ROWS / CHUNK_MAX_BYTES, read by
# functions/batch) to well under a minute of endpoint calls; 5 minutes covers a slow endpoint.
CHUNK_TIMEOUT = Duration.minutes(5)
# A handful of DynamoDB updates and one email per dead message.
DEAD_LETTER_TIMEOUT = Duration.minutes(1)
# 1769 MB is one full vCPU: CSV parsing and row validation are CPU-bound (a worker holds one
# chunk of a few MB at most, so memory use stays far below this).
WORKER_MEMORY = 1769

# Multipart uploads: Create/UploadPart(Copy)/Complete are s3:PutObject; these are the rest.
MULTIPART = ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]


# Why a batch Lambda may touch a whole prefix (the cdk-nag acknowledgment's reason).
PREFIX_REASONS = {
    UPLOADS_PREFIX: "the uploaded CSVs and their metadata.",
    BATCH_PARTS_PREFIX: "one partial output per chunk, named by job and chunk.",
    RESULTS_PREFIX: "each job's results.csv and errors.csv, and their presigned links.",
    PREDICTION_LOG_PREFIX: "the prediction log, one object per chunk.",
    REFUSAL_LOG_PREFIX: "the refusal log, one object per chunk with refused rows.",
}


class BatchQueue(Construct):
    """An encrypted, TLS-only queue and its dead-letter queue."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        prefix: str,
        consumer_timeout: Duration,
        dead_letter_consumer_timeout: Duration,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=queue_name(prefix, name, dead_letter=True),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
            visibility_timeout=Duration.seconds(
                dead_letter_consumer_timeout.to_seconds() * VISIBILITY_PER_TIMEOUT
            ),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=queue_name(prefix, name),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=QUEUE_RETENTION,
            visibility_timeout=Duration.seconds(consumer_timeout.to_seconds() * VISIBILITY_PER_TIMEOUT),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )


class Batch(Construct):
    """The batch queues, the three batch Lambdas, the upload notification and the sender."""

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
        prefix = config.prefix
        self._data = data = storage.data
        jobs = storage.tables["jobs"]
        features, predictions = storage.tables["features"], storage.tables["predictions"]

        self.uploads = BatchQueue(
            self,
            "Uploads",
            name=UPLOADS_QUEUE,
            prefix=prefix,
            consumer_timeout=SPLIT_TIMEOUT,
            dead_letter_consumer_timeout=DEAD_LETTER_TIMEOUT,
        )
        self.chunks = BatchQueue(
            self,
            "Chunks",
            name=CHUNKS_QUEUE,
            prefix=prefix,
            consumer_timeout=CHUNK_TIMEOUT,
            dead_letter_consumer_timeout=DEAD_LETTER_TIMEOUT,
        )
        data.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.SqsDestination(self.uploads.queue),
            s3.NotificationKeyFilter(prefix=UPLOADS_PREFIX, suffix=UPLOAD_SUFFIX),
        )
        # CDK's one handler per stack that sets the bucket's notification configuration.
        (handler,) = [
            c for c in Stack.of(self).node.children if c.node.id.startswith("BucketNotificationsHandler")
        ]
        acknowledge(
            handler,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
            "service-role/AWSLambdaBasicExecutionRole]",
            "CDK's bucket-notification handler (a deploy-time custom resource) only writes its own logs.",
        )

        if config.email_sender:
            self.sender = config.email_sender
        else:
            parameter = CfnParameter(
                self,
                "EmailSender",
                type="String",
                allowed_pattern=EMAIL_PATTERN.pattern,
                constraint_description="an email address",
                description="SES sender address of batch job emails (or synth with "
                "-c emailSender=<address>); SES mails it a verification link",
            )
            parameter.override_logical_id(EMAIL_SENDER_PARAMETER)
            self.sender = parameter.value_as_string
        self.identity = ses.EmailIdentity(self, "SenderIdentity", identity=ses.Identity.email(self.sender))

        email_env = {
            "EMAIL_SENDER": self.sender,
            "RESULT_LINK_EXPIRY_SECONDS": str(config.result_link_expiry_seconds),
        }
        base_env = {ENV_VARS["data"]: data.bucket_name, ENV_VARS["jobs"]: jobs.table_name}

        # -- split: one upload -> header check -> chunk messages ---------------------------
        self.split = lambdas.function(
            self,
            "Split",
            name=SPLIT,
            handler="batch.handlers.split",
            memory=WORKER_MEMORY,
            timeout=SPLIT_TIMEOUT,
            env={
                **base_env,
                ENV_VARS[CHUNKS_QUEUE]: self.chunks.queue.queue_url,
                "EMAIL_SENDER": self.sender,
            },
        )
        self._objects(self.split, UPLOADS_PREFIX, "s3:GetObject")
        # direct uploads create their job; every upload moves it to splitting and running
        jobs.grant(self.split, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        self.chunks.queue.grant_send_messages(self.split)
        # a wrong header, an empty file or an unknown model fails the job at once, by email
        self.identity.grant_send_email(self.split)
        self.split.add_event_source(
            sources.SqsEventSource(
                self.uploads.queue,
                batch_size=1,  # one file is one job: a bad file is retried and dead-lettered alone
                report_batch_item_failures=True,
            )
        )

        # -- chunk: one byte range -> predictions, parts; the last one assembles and emails --
        self.chunk = lambdas.function(
            self,
            "Chunk",
            name=CHUNK,
            handler="batch.handlers.chunk",
            memory=WORKER_MEMORY,
            timeout=CHUNK_TIMEOUT,
            env={
                **base_env,
                ENV_VARS["features"]: features.table_name,
                ENV_VARS["predictions"]: predictions.table_name,
                "RESOURCE_PREFIX": prefix,  # endpoint names: inferline.resources.endpoint_name
                **email_env,
            },
        )
        self._objects(self.chunk, UPLOADS_PREFIX, "s3:GetObject")
        self._objects(self.chunk, BATCH_PARTS_PREFIX, "s3:GetObject", "s3:PutObject", *MULTIPART)
        # Assembly lists the job's parts (their sizes decide copy or stream): ListBucket on the
        # bucket itself, for keys under the parts prefix only.
        self.chunk.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self._data.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{BATCH_PARTS_PREFIX}*"]}},
            )
        )
        # GetObject on results/: the presigned links are signed with this role
        self._objects(self.chunk, RESULTS_PREFIX, "s3:GetObject", "s3:PutObject", *MULTIPART)
        self._objects(self.chunk, PREDICTION_LOG_PREFIX, "s3:PutObject", "s3:AbortMultipartUpload")
        self._objects(self.chunk, REFUSAL_LOG_PREFIX, "s3:PutObject")
        features.grant(self.chunk, "dynamodb:BatchGetItem")
        # one index item per chunk (the prediction log itself is one S3 object per chunk)
        predictions.grant(self.chunk, "dynamodb:PutItem")
        jobs.grant(self.chunk, "dynamodb:GetItem", "dynamodb:UpdateItem")
        self.chunk.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sagemaker:InvokeEndpoint"],
                resources=[e.endpoint_arn for e in serving.endpoints.values()],
            )
        )
        self.identity.grant_send_email(self.chunk)
        self.chunk.add_event_source(
            sources.SqsEventSource(
                self.chunks.queue,
                # one chunk per invocation: chunks of one job run in parallel, and a timeout
                # bounds one chunk's work rather than several
                batch_size=1,
                report_batch_item_failures=True,
                # the endpoint is shared with the online path: cap the workers calling it (the
                # poller then leaves messages queued instead of burning their receive counts)
                max_concurrency=config.batch_max_concurrency,
            )
        )

        # -- dead letter: a poisoned upload or chunk fails its job, with an email ----------
        self.dead_letter = lambdas.function(
            self,
            "DeadLetter",
            name=DEAD_LETTER,
            handler="batch.handlers.dead_letter",
            memory=512,
            timeout=DEAD_LETTER_TIMEOUT,
            env={**base_env, **email_env},
        )
        # A direct upload whose split never created its job: the object's metadata (HeadObject
        # is s3:GetObject) names the address, and the job is created to be failed.
        self._objects(self.dead_letter, UPLOADS_PREFIX, "s3:GetObject")
        jobs.grant(self.dead_letter, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        self.identity.grant_send_email(self.dead_letter)
        for queue in (self.uploads, self.chunks):
            self.dead_letter.add_event_source(
                sources.SqsEventSource(
                    queue.dead_letter_queue,
                    batch_size=10,  # cheap messages; failures are reported one by one
                    report_batch_item_failures=True,
                )
            )

        # -- the jobs API: submit (a presigned upload URL) and status (with result links) -----
        api_env = {
            **base_env,
            "UPLOAD_URL_EXPIRY_SECONDS": str(UPLOAD_URL_EXPIRY_SECONDS),
            "RESULT_LINK_EXPIRY_SECONDS": str(config.result_link_expiry_seconds),
        }
        # Small and quick: one conditional PutItem or GetItem and a presigned URL.
        self.submit = lambdas.function(
            self,
            "Submit",
            name=SUBMIT,
            handler="batch.api_handler.submit",
            memory=512,
            timeout=Duration.seconds(10),
            env=api_env,
        )
        jobs.grant(self.submit, "dynamodb:PutItem")
        # the presigned PUT acts as this role: it may put uploads/ objects and nothing else
        self._objects(self.submit, UPLOADS_PREFIX, "s3:PutObject")
        self.status = lambdas.function(
            self,
            "Status",
            name=STATUS,
            handler="batch.api_handler.status",
            memory=512,
            timeout=Duration.seconds(10),
            env=api_env,
        )
        jobs.grant(self.status, "dynamodb:GetItem")
        self._objects(self.status, RESULTS_PREFIX, "s3:GetObject")

    def submit_wiring(self, model: str | None = None) -> dict[str, Any]:
        return {"integration": apigw.LambdaIntegration(self.submit, allow_test_invoke=False)}

    def status_wiring(self, model: str | None = None) -> dict[str, Any]:
        return {"integration": apigw.LambdaIntegration(self.status, allow_test_invoke=False)}

    @property
    def api_functions(self) -> dict[str, lambda_.Function]:
        return {SUBMIT: self.submit, STATUS: self.status}

    @property
    def functions(self) -> dict[str, lambda_.Function]:
        """{service name: function}"""
        return {SPLIT: self.split, CHUNK: self.chunk, DEAD_LETTER: self.dead_letter}

    @property
    def queues(self) -> list[BatchQueue]:
        return [self.uploads, self.chunks]

    def _objects(self, fn: lambda_.Function, prefix: str, *actions: str) -> None:
        """`actions` on the data bucket's objects under `prefix` only."""
        iam.Grant.add_to_principal(
            grantee=fn, actions=list(actions), resource_arns=[self._data.arn_for_objects(f"{prefix}*")]
        )
        acknowledge(
            fn.role.node.find_child("DefaultPolicy"),  # type: ignore[union-attr]
            f"AwsSolutions-IAM5[Resource::{arn_of(self._data)}/{prefix}*]",
            f"Objects under {prefix} only: {PREFIX_REASONS[prefix]}",
        )
