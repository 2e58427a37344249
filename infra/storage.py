"""Storage: the S3 buckets and DynamoDB tables, named and keyed by inferline.resources.

Buckets are private, encrypted, TLS-only, versioned and access-logged; tables are on-demand,
encrypted with KMS and point-in-time recoverable. Data outlives the stack (RETAIN): a
`cdk destroy` never deletes predictions, ground truth or model versions.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from inferline.resources import (
    BUCKETS,
    TABLES,
    UPLOADS_PREFIX,
    batch_output_key,
    batch_part_key,
    bucket_name,
    table_name,
)
from infra.config import Config

# Endpoint data capture (requests and responses as SageMaker saw them) lands here, in the
# data bucket; it is a debugging aid next to the prediction log, so it expires.
DATA_CAPTURE_PREFIX = "data-capture/"
DATA_CAPTURE_DAYS = 30
# Old object versions are kept this long after an overwrite or delete.
NONCURRENT_VERSION_DAYS = 30
ACCESS_LOG_DAYS = 90
# Batch jobs (infra/batch.py), read off the shared key layout: the uploaded CSVs, the
# chunks' partial outputs (only needed until the job is assembled), and the emailed results.
BATCH_PARTS_PREFIX = batch_part_key("m", "j", 0, "results").split("/", 1)[0] + "/"
RESULTS_PREFIX = batch_output_key("m", "j", "results").split("/", 1)[0] + "/"
# A chunk's parts wait for the job's last chunk, whose message may sit in its queue for up to
# QUEUE_RETENTION (4 days, infra/batch.py) when the workers are backed up: they outlive it.
BATCH_PARTS_DAYS = 5
# Batch objects hold users' rows: an expired or overwritten version is gone the next day,
# not after NONCURRENT_VERSION_DAYS.
BATCH_NONCURRENT_DAYS = 1


class Storage(Construct):
    """The data and artifacts buckets and the tables of inferline.resources.TABLES."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config) -> None:
        super().__init__(scope, construct_id)

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # S3 server access logging needs SSE-S3
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(ACCESS_LOG_DAYS))],
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.buckets: dict[str, s3.Bucket] = {}
        for name in BUCKETS:
            rules = [
                s3.LifecycleRule(
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                    noncurrent_version_expiration=Duration.days(NONCURRENT_VERSION_DAYS),
                )
            ]
            if name == "data":
                rules.append(s3.LifecycleRule(
                    prefix=DATA_CAPTURE_PREFIX, expiration=Duration.days(DATA_CAPTURE_DAYS)
                ))
                rules += [
                    s3.LifecycleRule(
                        id=f"expire-{kind}",
                        prefix=prefix,
                        expiration=Duration.days(days),
                        noncurrent_version_expiration=Duration.days(BATCH_NONCURRENT_DAYS),
                        # abandoned multipart uploads of large CSVs
                        abort_incomplete_multipart_upload_after=Duration.days(1),
                    )
                    for kind, prefix, days in (
                        ("uploads", UPLOADS_PREFIX, config.upload_expiry_days),
                        ("batch-parts", BATCH_PARTS_PREFIX, BATCH_PARTS_DAYS),
                        ("results", RESULTS_PREFIX, config.result_expiry_days),
                    )
                ]
            self.buckets[name] = s3.Bucket(
                self,
                name.capitalize(),
                bucket_name=bucket_name(config.prefix, name, Aws.ACCOUNT_ID),
                encryption=s3.BucketEncryption.S3_MANAGED,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                versioned=True,  # an overwrite of ground truth or a model is recoverable
                lifecycle_rules=rules,
                server_access_logs_bucket=self.access_logs,
                server_access_logs_prefix=f"{name}/",
                removal_policy=RemovalPolicy.RETAIN,
            )

        self.tables: dict[str, dynamodb.Table] = {}
        for name, definition in TABLES.items():
            self.tables[name] = dynamodb.Table(
                self,
                f"{name.capitalize()}Table",
                table_name=table_name(config.prefix, name),
                partition_key=dynamodb.Attribute(
                    name=definition.partition_key, type=dynamodb.AttributeType.STRING
                ),
                time_to_live_attribute=definition.ttl_attribute,
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                encryption=dynamodb.TableEncryption.AWS_MANAGED,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                removal_policy=RemovalPolicy.RETAIN,
            )

    @property
    def data(self) -> s3.Bucket:
        return self.buckets["data"]

    @property
    def artifacts(self) -> s3.Bucket:
        return self.buckets["artifacts"]
