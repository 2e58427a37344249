"""The one definition of inferline's AWS resources: names, key schemas, S3 layout, settings.

The CDK app (infra/) and the local bootstrap (local_runtime/) both build from these, and
tests check that they agree, so a table key or an object prefix is never written twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TableDef:
    """A DynamoDB table: its partition key (a string) and, where items expire, the TTL attribute."""

    partition_key: str
    ttl_attribute: str | None = None


TABLES: dict[str, TableDef] = {
    # stored features, one item per entity: pk = "<feature_group>#<entity id>"
    "features": TableDef(partition_key="pk"),
    # one item per prediction; ground truth is written onto the same item by feedback
    "predictions": TableDef(partition_key="prediction_id", ttl_attribute="expires_at"),
    # one item per batch job: status, chunk and row counts, updated atomically by workers
    "jobs": TableDef(partition_key="job_id", ttl_attribute="expires_at"),
}

# SQS queues, each with a dead-letter queue: S3 upload events for the batch splitter, and
# chunk messages for the batch workers.
QUEUES: tuple[str, ...] = ("batch-uploads", "batch-chunks")

# data: prediction logs, ground truth, uploads, results, datasets; artifacts: model versions
BUCKETS: tuple[str, ...] = ("data", "artifacts")

# The environment variable each Lambda reads a resource name from.
ENV_VARS: dict[str, str] = {
    "features": "FEATURES_TABLE",
    "predictions": "PREDICTIONS_TABLE",
    "data": "DATA_BUCKET",
    "artifacts": "ARTIFACTS_BUCKET",
    "jobs": "JOBS_TABLE",
    "batch-uploads": "UPLOADS_QUEUE_URL",
    "batch-chunks": "CHUNKS_QUEUE_URL",
}

DEFAULT_PREFIX = "inferline"


def table_name(prefix: str, table: str) -> str:
    return f"{prefix}-{table}"


def bucket_name(prefix: str, bucket: str, account: str | None = None) -> str:
    """Bucket names are global in AWS: deployed stacks add the account; local ones need not."""
    return f"{prefix}-{bucket}-{account}" if account else f"{prefix}-{bucket}"


def queue_name(prefix: str, queue: str, dead_letter: bool = False) -> str:
    return f"{prefix}-{queue}{'-dlq' if dead_letter else ''}"


def endpoint_name(prefix: str, model: str) -> str:
    return f"{prefix}-{model}"


def local_environment(prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """The Lambda environment the local runtime gives the handlers (the CDK app sets the same)."""
    env = {ENV_VARS[t]: table_name(prefix, t) for t in TABLES}
    env |= {ENV_VARS[b]: bucket_name(prefix, b) for b in BUCKETS}
    env["RESOURCE_PREFIX"] = prefix
    return env


# -- S3 layout of the data bucket (Hive-style partitions so Athena/pandas read it in bulk) ---


def prediction_log_key(model: str, at: datetime, request_id: str) -> str:
    """One JSON Lines object per request: one line per prediction."""
    return f"predictions/model={model}/dt={at:%Y-%m-%d}/{request_id}.jsonl"


UPLOADS_PREFIX = "uploads/"


def upload_key(model: str, job_id: str) -> str:
    """Where a batch job's CSV is uploaded; any other name under uploads/<model>/ starts a job too."""
    return f"{UPLOADS_PREFIX}{model}/{job_id}.csv"


def batch_part_key(model: str, job_id: str, chunk: int, kind: str) -> str:
    """A chunk's partial output (kind: results or errors), rewritten whole on a retry."""
    return f"batch/{model}/{job_id}/parts/{chunk:06d}.{kind}.csv"


def batch_output_key(model: str, job_id: str, kind: str) -> str:
    """The assembled results.csv / errors.csv the job's email links to."""
    return f"results/{model}/{job_id}/{kind}.csv"


def ground_truth_key(model: str, recorded_at: datetime, batch_id: str) -> str:
    """One JSON Lines object per feedback request and model (one line per actual recorded or
    changed), partitioned by the date it arrived, as SageMaker Model Monitor lays ground truth
    out: monitoring and retraining read a window of it in a few large reads. A correction is
    a later line for the same prediction_id; readers keep each id's newest recorded_at."""
    return f"ground-truth/model={model}/dt={recorded_at:%Y-%m-%d}/{batch_id}.jsonl"


def refusal_log_key(model: str, at: datetime, request_id: str) -> str:
    """Requests (and batch rows) refused for invalid input: one JSON Lines object per refused
    request or chunk, naming each field and problem but never a value, for monitoring."""
    return f"refusals/model={model}/dt={at:%Y-%m-%d}/{request_id}.jsonl"


# -- retraining: the registry, the workflow, and the S3 layout of datasets and models -------


def model_package_group(prefix: str, model: str) -> str:
    """One SageMaker Model Registry group per model; every contender is a version in it."""
    return f"{prefix}-{model}"


def retrain_state_machine_name(prefix: str) -> str:
    return f"{prefix}-retrain"


def base_training_key(model: str) -> str:
    """The base training set (CSV: model inputs + target) each retraining adds to the logs."""
    return f"training/{model}/base.csv"


def retrain_run_prefix(model: str, run_id: str) -> str:
    """The datasets and manifest of one retraining run (data bucket)."""
    return f"retraining/{model}/{run_id}/"


def retrain_version_claim_key(model: str, version: str) -> str:
    """The object a retraining run writes to claim a version number (data bucket)."""
    return f"retraining/{model}/versions/{version}.json"


def model_version_prefix(model: str) -> str:
    """Where training jobs write model versions (artifacts bucket)."""
    return f"models/{model}/"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "key/or/prefix") of "s3://bucket/key/or/prefix"."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


# -- monitoring: runs, their reports, baselines and the retraining trigger (data bucket) ------


def monitor_state_machine_name(prefix: str) -> str:
    return f"{prefix}-monitor"


def monitoring_run_prefix(model: str, run_id: str) -> str:
    """One monitoring run's result.json, summary.json and report.html."""
    return f"monitoring/{model}/runs/{run_id}/"


def monitoring_runs_prefix(model: str) -> str:
    return f"monitoring/{model}/runs/"


def monitoring_latest_prefix(model: str) -> str:
    """Copies of the newest run's result.json and report.html: the alarms link here."""
    return f"monitoring/{model}/latest/"


def monitoring_baseline_key(model: str, version: str) -> str:
    """The baseline computed for a version trained before versions carried one."""
    return f"monitoring/{model}/baselines/{version}.json"


def retrain_trigger_key(model: str) -> str:
    """The last retraining a monitoring alarm started: the cool-down reads it."""
    return f"monitoring/{model}/retrain-trigger.json"
