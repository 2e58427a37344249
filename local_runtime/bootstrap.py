"""Create, in the embedded AWS, the tables and buckets the CDK stack creates, from the same
definitions (inferline.resources). Idempotent: an existing resource is left as it is."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from inferline.resources import (
    BUCKETS,
    QUEUES,
    TABLES,
    UPLOADS_PREFIX,
    bucket_name,
    queue_name,
    table_name,
)


def bootstrap(prefix: str, dynamodb, s3) -> dict[str, list[str]]:
    """Create what is missing, given boto3 dynamodb and s3 clients; returns what was created."""
    created: dict[str, list[str]] = {"tables": [], "buckets": []}
    for key, table in TABLES.items():
        name = table_name(prefix, key)
        try:
            dynamodb.create_table(
                TableName=name,
                AttributeDefinitions=[{"AttributeName": table.partition_key, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": table.partition_key, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
                SSESpecification={"Enabled": True},
            )
        except dynamodb.exceptions.ResourceInUseException:
            continue
        dynamodb.get_waiter("table_exists").wait(TableName=name)
        if table.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
        created["tables"].append(name)
    for key in BUCKETS:
        name = bucket_name(prefix, key)
        try:
            s3.create_bucket(Bucket=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                continue
            raise
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
            },
        )
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        created["buckets"].append(name)
    return created


# Locally a failed message comes back after a few seconds (AWS: 6x the function timeout), so
# a poison message reaches its dead-letter queue in well under a minute.
LOCAL_VISIBILITY_TIMEOUT_S = 5
MAX_RECEIVE_COUNT = 3


def bootstrap_batch(prefix: str, sqs, s3, ses, sender: str) -> dict[str, dict[str, str]]:
    """The batch path's queues (each with a dead-letter queue), the data bucket's upload
    notifications to the uploads queue, and the verified sender identity; returns each
    queue's {"url", "arn", "dlq_url", "dlq_arn"} by name."""
    queues: dict[str, dict[str, str]] = {}
    for queue in QUEUES:
        dlq_url = sqs.create_queue(QueueName=queue_name(prefix, queue, dead_letter=True))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        url = sqs.create_queue(
            QueueName=queue_name(prefix, queue),
            Attributes={
                "VisibilityTimeout": str(LOCAL_VISIBILITY_TIMEOUT_S),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
                ),
            },
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queues[queue] = {"url": url, "arn": arn, "dlq_url": dlq_url, "dlq_arn": dlq_arn}
    s3.put_bucket_notification_configuration(
        Bucket=bucket_name(prefix, "data"),
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queues["batch-uploads"]["arn"],
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": "prefix", "Value": UPLOADS_PREFIX},
                                {"Name": "suffix", "Value": ".csv"},
                            ]
                        }
                    },
                }
            ]
        },
    )
    ses.verify_email_identity(EmailAddress=sender)
    return queues


# -- retraining: each served model as the CDK stack leaves it, plus its registry ---------------

LOCAL_ROLE_ARN = "arn:aws:iam::123456789012:role/inferline-local-sagemaker"
LOCAL_INSTANCE_TYPE = "ml.m5.large"


def model_archive(model_dir) -> bytes:
    """model.tar.gz of a model folder, as a SageMaker training job writes it."""
    import io
    import tarfile
    from pathlib import Path

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path in sorted(Path(model_dir).iterdir()):
            if path.is_file():
                tar.add(path, arcname=path.name)
    return out.getvalue()


def served_backend_of(model_dir) -> str:
    """onnxruntime when the version carries its checked ONNX model (saved only if it passed)."""
    from pathlib import Path

    from model_artifacts.bundle import ONNX_FILE
    from model_artifacts.compiled import ONNX_RUNTIME, SCIKIT_LEARN

    return ONNX_RUNTIME if (Path(model_dir) / ONNX_FILE).is_file() else SCIKIT_LEARN


def bootstrap_model(
    prefix: str, model: str, version: str, model_dir, image: str, sagemaker, s3, base_training_csv=None
) -> str:
    """Upload the served model version, create its SageMaker Model and EndpointConfig, the
    model's registry group with the version Approved in it (unless it is registered already),
    and the base training set; returns the EndpointConfig's name."""
    from inferline.endpoints import VERSION_ENV, resource_name
    from inferline.resources import (
        base_training_key,
        endpoint_name,
        model_package_group,
        model_version_prefix,
    )
    from retrain import registry

    artifacts, data = bucket_name(prefix, "artifacts"), bucket_name(prefix, "data")
    key = f"{model_version_prefix(model)}local-v{version}/output/model.tar.gz"
    s3.put_object(Bucket=artifacts, Key=key, Body=model_archive(model_dir))
    model_data_url = f"s3://{artifacts}/{key}"
    name = resource_name(endpoint_name(prefix, model), f"v{version}", "local")
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=LOCAL_ROLE_ARN,
        PrimaryContainer={
            "Image": image,
            "ModelDataUrl": model_data_url,
            "Environment": {VERSION_ENV: version},
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": LOCAL_INSTANCE_TYPE,
            }
        ],
    )
    group = model_package_group(prefix, model)
    try:
        sagemaker.create_model_package_group(ModelPackageGroupName=group)
    except ClientError:
        pass  # exists
    if registry.find(sagemaker, group, version) is None:
        registry.create(
            sagemaker, group=group, version=version, image=image, model_data_url=model_data_url,
            approval=registry.APPROVED, description="initial version, served at startup",
            metadata={"decision": "initial", "backend": served_backend_of(model_dir)},
        )  # fmt: skip
    if base_training_csv is not None:
        s3.put_object(Bucket=data, Key=base_training_key(model), Body=base_training_csv)
    return name
