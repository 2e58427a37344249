"""Create, in the embedded AWS, the tables and buckets the CDK stack creates, from the same
definitions (inferline.resources). Idempotent: an existing resource is left as it is."""

from __future__ import annotations

from botocore.exceptions import ClientError

from inferline.resources import BUCKETS, TABLES, bucket_name, table_name


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
