"""The end of a job: the chunks' parts streamed, in chunk order, into results.csv and
errors.csv; the job marked succeeded by exactly one finisher; then the email.

Constant memory, and little data through the finisher: a chunk's part of at least
MIN_PART_BYTES becomes a part of the output's S3 multipart upload by a server-side copy
(UploadPartCopy); anything else (the header, small parts) is read a block at a time into a
buffer that goes out as an uploaded part whenever it reaches PART_BYTES (a single put when the
whole file is smaller). Assembly is deterministic, so two finishers racing write the same bytes.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from aws_lambda_powertools import Logger

from batch.notify import notify
from batch.services import Services
from inferline import jobs
from inferline.resources import batch_output_key, batch_part_key
from inferline.spec import ModelSpec

logger = Logger(child=True)

PART_BYTES = 8 * 1024 * 1024
MIN_PART_BYTES = 5 * 1024 * 1024  # S3 multipart parts must be >= 5 MB, except the last
READ_BLOCK = 1024 * 1024


def finish_if_complete(services: Services, job: dict[str, Any]) -> bool:
    """Assemble and mark succeeded when every chunk is counted; send the email of a finished
    job that has not had it yet. True when this call finished the job."""
    if job["status"] in jobs.FINAL:
        notify(services, job)
        return False
    if job["status"] != jobs.RUNNING or not jobs.is_complete(job):
        return False
    header = _result_header(services, job)
    outputs = {
        kind: assemble(services, job, kind, header if kind == "results" else ERROR_HEADER)
        for kind in ("results", "errors")
    }
    won = jobs.mark_succeeded(services.jobs, job["job_id"], outputs)
    job = jobs.get_job(services.jobs, job["job_id"]) or job
    if won:
        logger.info(
            "job succeeded",
            job_id=job["job_id"],
            rows_ok=job.get("rows_ok"),
            rows_failed=job.get("rows_failed"),
        )
        notify(services, job)
    return won


ERROR_HEADER = ["row", "raw", "reason"]


def result_columns(spec: ModelSpec, columns: list[str]) -> list[str]:
    """results.csv: the row number, the uploaded columns as given, then the prediction."""
    extra = ["prediction_id", "label", "score"] + (["top_k"] if spec.task == "multiclass" else [])
    return ["row", *columns, *extra]


def _result_header(services: Services, job: dict[str, Any]) -> list[str]:
    return result_columns(services.load_spec(job["model"]), job.get("columns") or [])


def assemble(services: Services, job: dict[str, Any], kind: str, header: list[str]) -> str:
    """Write <kind>.csv from the job's parts in chunk order; returns its key."""
    key = batch_output_key(job["model"], job["job_id"], kind)
    parts = [batch_part_key(job["model"], job["job_id"], chunk, kind) for chunk in range(job["total_chunks"])]
    sizes = _sizes(services, parts)
    writer = _Upload(services.s3, services.bucket, key)
    try:
        writer.write(_csv_line(header))
        for part in parts:
            if sizes.get(part, 0) >= MIN_PART_BYTES and writer.can_copy():
                writer.copy(part)
                continue
            body = services.s3.get_object(Bucket=services.bucket, Key=part)["Body"]
            while block := body.read(READ_BLOCK):
                writer.write(block)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return key


def _sizes(services: Services, parts: list[str]) -> dict[str, int]:
    """Each part's size, from one listing of the job's parts (a part missing here is read, and
    its absence then raises, as before)."""
    wanted = set(parts)
    prefix = parts[0].rsplit("/", 1)[0] + "/" if parts else ""
    sizes = {}
    for page in services.s3.get_paginator("list_objects_v2").paginate(Bucket=services.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"] in wanted:
                sizes[obj["Key"]] = obj["Size"]
    return sizes


def _csv_line(values: list[str]) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue().encode()


class _Upload:
    """A buffered S3 object writer: a multipart upload once over PART_BYTES, else one put."""

    def __init__(self, s3, bucket: str, key: str):
        self.s3, self.bucket, self.key = s3, bucket, key
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict] = []

    def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= PART_BYTES:
            self._flush()

    def can_copy(self) -> bool:
        """Whether an object may go in as the next part: whatever is buffered must be flushed
        first, which S3 allows only once it is a part's minimum size."""
        return not self.buffer or len(self.buffer) >= MIN_PART_BYTES

    def copy(self, source_key: str) -> None:
        """The whole object `source_key` (at least MIN_PART_BYTES) as the next part, copied by S3."""
        if self.buffer:
            self._flush()
        self._start()
        number = len(self.parts) + 1
        reply = self.s3.upload_part_copy(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            CopySource={"Bucket": self.bucket, "Key": source_key},
        )
        self.parts.append({"PartNumber": number, "ETag": reply["CopyPartResult"]["ETag"]})

    def _start(self) -> None:
        if self.upload_id is None:
            self.upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType="text/csv"
            )["UploadId"]

    def _flush(self) -> None:
        self._start()
        number = len(self.parts) + 1
        reply = self.s3.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=bytes(self.buffer),
        )
        self.parts.append({"PartNumber": number, "ETag": reply["ETag"]})
        self.buffer.clear()

    def close(self) -> None:
        if self.upload_id is None:
            self.s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer), ContentType="text/csv"
            )
            return
        if self.buffer:
            self._flush()
        self.s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    def abort(self) -> None:
        if self.upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
