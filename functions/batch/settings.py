"""The batch Lambdas' settings from the environment, one class per handler, checked at cold
start so a missing variable is named before any message is taken."""

from __future__ import annotations

from pydantic import Field

from inferline.settings import EnvSettings

SEVEN_DAYS = 7 * 24 * 3600


class MailSettings(EnvSettings):
    """Every batch handler can end a job, and every ended job sends an email."""

    data_bucket: str = Field(validation_alias="DATA_BUCKET", min_length=3)
    jobs_table: str = Field(validation_alias="JOBS_TABLE", min_length=3)
    email_sender: str = Field(validation_alias="EMAIL_SENDER", min_length=3)
    outbox_dir: str | None = Field(default=None, validation_alias="OUTBOX_DIR")


class SplitSettings(MailSettings):
    chunks_queue_url: str = Field(validation_alias="CHUNKS_QUEUE_URL", min_length=3)
    # A chunk ends at whichever limit comes first; both keep a worker well inside its time
    # and memory (the chunk is held in memory while it is scored).
    chunk_max_rows: int = Field(default=50_000, ge=1, le=1_000_000, validation_alias="CHUNK_MAX_ROWS")
    chunk_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1, validation_alias="CHUNK_MAX_BYTES")


class ChunkSettings(MailSettings):
    features_table: str = Field(validation_alias="FEATURES_TABLE", min_length=3)
    predictions_table: str = Field(validation_alias="PREDICTIONS_TABLE", min_length=3)
    resource_prefix: str = Field(validation_alias="RESOURCE_PREFIX", min_length=1)
    # SigV4 presigned URLs are valid for at most 7 days.
    result_link_expiry_seconds: int = Field(
        default=SEVEN_DAYS, ge=60, le=SEVEN_DAYS, validation_alias="RESULT_LINK_EXPIRY_SECONDS"
    )
    # Rows per endpoint request (the serving container takes up to 10,000; the 6 MB payload
    # limit is kept by the worker whatever this says), and requests in flight per worker: two
    # keep the endpoint busy while the worker writes the log lines of the rows already sent.
    endpoint_max_rows: int = Field(default=5_000, ge=1, le=10_000, validation_alias="ENDPOINT_MAX_ROWS")
    endpoint_concurrency: int = Field(default=2, ge=1, le=16, validation_alias="ENDPOINT_CONCURRENCY")


class DeadLetterSettings(MailSettings):
    pass
