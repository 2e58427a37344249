"""Reading an S3 object that may not exist.

S3 answers a GET of a missing key with 404 (NoSuchKey) only to a caller that may list the
bucket; any other caller gets 403 (AccessDenied), as for a key it may not read. The roles that
read optional objects (a model's retraining cool-down claim, a kept baseline, a version's
training data) may read those keys by name and list little or nothing, so both answers mean
"absent" here. A write to the same key is what proves a permission problem: it fails loudly.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

ABSENT = ("NoSuchKey", "404", "AccessDenied", "403")


def get_if_exists(s3, bucket: str, key: str) -> dict[str, Any] | None:
    """GetObject's response, or None when the object is absent (404, or 403 to a caller that
    may not list the bucket)."""
    try:
        return s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ABSENT:
            return None
        raise
