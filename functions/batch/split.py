"""The splitter: an uploaded CSV becomes a job with one message per chunk of rows.

The object is streamed once (constant memory): the header is checked against the spec
(every problem listed), then the CSV-aware scanner finds record boundaries and the file is
cut into byte ranges of whole records. A wrong, empty or header-only file fails the job at
once with an email saying why. A redelivered upload event finds the job already past
splitting and does nothing (or, when a split crashed before its messages went out, sends
the same messages again: chunk processing is idempotent).
"""

from __future__ import annotations

import json
import operator
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger

from batch.notify import fail_job
from batch.recipients import check_address
from batch.services import Services
from inferline import jobs
from inferline.csv_rows import RowScanner, header_problems, parse_header
from inferline.resources import UPLOADS_PREFIX
from inferline.spec import UnknownModel

logger = Logger(child=True)

READ_BLOCK = 1024 * 1024
# A record this long is almost always a quote left open: everything after it would be one
# "row". Refusing the file says so, instead of handing a worker a gigabyte-long row.
MAX_RECORD_BYTES = 1024 * 1024
SQS_BATCH = 10


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # first byte of the chunk's first record
    end: int  # one past the last byte of its last record
    first_row: int  # row number of its first record (the header is row 1)
    rows: int  # records in it, blank lines included


class BadFile(ValueError):
    """The file cannot be processed at all; the message is the reason the user reads."""


def upload_events(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(bucket, key) of each object-created record in an S3 event notification; the
    s3:TestEvent S3 sends when notifications are configured holds none."""
    found = []
    for record in body.get("Records") or []:
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record["s3"]
        found.append((s3["bucket"]["name"], unquote_plus(s3["object"]["key"])))
    return found


def model_and_name(key: str) -> tuple[str, str]:
    """uploads/<model>/<name>.csv -> (model, name stem); ValueError for any other key."""
    if not key.startswith(UPLOADS_PREFIX):
        raise ValueError(f"not an upload key: {key}")
    parts = key[len(UPLOADS_PREFIX) :].split("/")
    if len(parts) < 2 or not parts[0] or not parts[-1]:
        raise ValueError(f"an upload key is uploads/<model>/<name>.csv, got {key}")
    name = parts[-1]
    return parts[0], name[: -len(".csv")] if name.lower().endswith(".csv") else name


def split_upload(services: Services, key: str) -> dict[str, Any]:
    """Split one uploaded object into chunk messages; returns what was done (for logs/tests)."""
    model, stem = model_and_name(key)
    head = services.s3.head_object(Bucket=services.bucket, Key=key)  # missing: retried, DLQ
    job = _job_for_upload(services, key, model, stem, head)
    job_id = job["job_id"]
    if job["status"] in jobs.FINAL or (job["status"] == jobs.RUNNING and jobs.is_complete(job)):
        logger.info("upload already processed", job_id=job_id, status=job["status"])
        return {"job_id": job_id, "action": "skipped", "status": job["status"]}
    etag = head.get("ETag", "")
    if job.get("source_etag") and job["source_etag"] != etag:
        # A new upload to the key of a running job: its chunks were planned on the old file.
        return _refuse(services, job_id, replaced_reason(key))
    if job.get("model") != model:
        reason = f"the file was uploaded under model '{model}' but job {job_id} is for '{job.get('model')}'"
        fail_job(services, job_id, reason)
        return {"job_id": job_id, "action": "failed", "reason": reason}
    if not job.get("email"):
        reason = "no valid email address: give one when creating the job or as x-amz-meta-email"
        jobs.mark_failed(services.jobs, job_id, reason)
        logger.warning("job failed with nobody to tell", job_id=job_id, reason=reason)
        return {"job_id": job_id, "action": "failed", "reason": reason}
    if job["status"] != jobs.RUNNING and not jobs.start_splitting(services.jobs, job_id, key):
        job = jobs.get_job(services.jobs, job_id) or job
        if job["status"] != jobs.RUNNING:
            return {"job_id": job_id, "action": "skipped", "status": job["status"]}

    try:
        spec = services.load_spec(model)
        columns, chunks = plan_chunks(
            # the version HeadObject saw (replaced since: this fails and the event is retried)
            services.s3.get_object(Bucket=services.bucket, Key=key, IfMatch=etag)["Body"],
            spec,
            services.chunk_max_rows,
            services.chunk_max_bytes,
        )
    except UnknownModel:
        return _refuse(services, job_id, f"there is no model named '{model}'")
    except BadFile as exc:
        return _refuse(services, job_id, f"{key.rsplit('/', 1)[-1]}: {exc}")

    if job["status"] != jobs.RUNNING and not jobs.start_running(
        services.jobs, job_id, len(chunks), columns, source_etag=etag
    ):
        job = jobs.get_job(services.jobs, job_id) or job
        if job["status"] != jobs.RUNNING or job.get("source_etag", etag) != etag:
            # finished, or running on another version of the file: a later split won
            return {"job_id": job_id, "action": "skipped", "status": job["status"]}
    messages = [chunk_message(job_id, model, key, columns, c, etag) for c in chunks]
    send_chunk_messages(services.sqs, services.chunks_queue_url, messages)
    logger.info(
        "upload split", job_id=job_id, model=model, chunks=len(chunks), bytes=head.get("ContentLength")
    )
    return {"job_id": job_id, "action": "split", "chunks": len(chunks)}


def _job_for_upload(services: Services, key: str, model: str, stem: str, head: dict) -> dict:
    """The API's job named by the file, or the job this object version started."""
    job = jobs.get_job(services.jobs, stem)
    if job is not None:
        return job
    job_id = jobs.upload_job_id(key, head.get("ETag", ""))
    job = jobs.get_job(services.jobs, job_id)
    if job is not None:
        return job
    # An address that is not valid is no address: the job fails, with nobody to tell.
    email, _ = check_address((head.get("Metadata") or {}).get("email"))
    try:
        return jobs.create_job(services.jobs, model, email, job_id, source_key=key, status=jobs.SPLITTING)
    except FileExistsError:  # a concurrent delivery of the same event made it first
        return jobs.get_job(services.jobs, job_id)


def replaced_reason(key: str) -> str:
    return (
        f"{key.rsplit('/', 1)[-1]} was uploaded again while its rows were being predicted, so "
        "the job could not finish without mixing the two files. Submit a new job for the new file."
    )


def _refuse(services: Services, job_id: str, reason: str) -> dict[str, Any]:
    fail_job(services, job_id, reason)
    return {"job_id": job_id, "action": "failed", "reason": reason}


def plan_chunks(body, spec, max_rows: int, max_bytes: int) -> tuple[list[str], list[Chunk]]:
    """Stream the file once: its checked header and its chunks; BadFile says what is wrong."""
    blocks = _record_blocks(_blocks(body))
    first = next((block for block in blocks if block[0]), None)  # where the first record ends
    if first is None:
        raise BadFile("the file is empty")
    ends, raw_of, _ = first
    header_end = ends[0]
    try:
        columns = parse_header(raw_of(0))
    except ValueError as exc:
        raise BadFile(str(exc)) from None
    if not columns:
        rest = chain(
            (raw_of(i) for i in range(1, len(ends))),
            (raw(i) for more, raw, _ in blocks for i in range(len(more))),
        )
        if all(not raw.strip() for raw in rest):
            raise BadFile("the file is empty")
        raise BadFile("the first line is empty: the file needs a header row naming the columns")
    problems = header_problems(spec, columns)
    if problems:
        expected = ", ".join(
            f"{n}{'' if f.required else ' (optional)'}" for n, f in spec.request.fields.items()
        )
        raise BadFile(
            "the header does not match the model's fields:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\nExpected columns: {expected}"
        )

    plan = _Planner(header_end, max_rows, max_bytes)
    # the header's block from its second record on, then every other block
    for ends, raw_of, begin, i in chain([(*first, 1)], ((*block, 0) for block in blocks)):
        while i < len(ends) and not plan.data_rows:  # blank lines decide nothing until a row
            plan.record(begin if i == 0 else ends[i - 1], ends[i], raw_of(i))
            i += 1
        if i < len(ends):
            plan.records(ends[i:] if i else ends)
    return columns, plan.finish()


class _Planner:
    """Records -> chunks of at most max_rows records and max_bytes bytes (a record larger than
    max_bytes makes a chunk of its own), one record at a time or a block's worth at once."""

    def __init__(self, header_end: int, max_rows: int, max_bytes: int):
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.chunks: list[Chunk] = []
        self.row, self.data_rows = 1, 0  # the last record's number (the header is row 1)
        self.start = self.end = header_end  # the open chunk's first byte; its last record's end
        self.first_row, self.rows = 2, 0

    def record(self, begin: int, stop: int, raw: bytes) -> None:
        row = self.row + 1
        if stop - begin > MAX_RECORD_BYTES:
            raise BadFile(f"row {row} is longer than {MAX_RECORD_BYTES} bytes: is a quote left open?")
        if raw.strip():
            self.data_rows += 1
        if self.rows and (self.rows >= self.max_rows or stop - self.start > self.max_bytes):
            self._close(begin)
        self.row, self.rows, self.end = row, self.rows + 1, stop

    def records(self, ends: list[int]) -> None:
        """Records ending at `ends` (the first begins where the last one planned ended), once a
        data row has been seen: what `record` does to each, without a Python step per record."""
        gaps = [ends[0] - self.end, *map(operator.sub, ends[1:], ends[:-1])]
        if max(gaps) > MAX_RECORD_BYTES:
            longest = next(i for i, gap in enumerate(gaps) if gap > MAX_RECORD_BYTES)
            raise BadFile(
                f"row {self.row + 1 + longest} is longer than {MAX_RECORD_BYTES} bytes: is a quote left open?"
            )
        i, n = 0, len(ends)
        while i < n:
            if not self.rows:  # an empty chunk takes its first record whatever its size
                self.rows, self.row, self.end, i = 1, self.row + 1, ends[i], i + 1
                continue
            # the records that still fit: by count, and by the bytes from the chunk's start
            by_bytes = bisect_right(ends, self.start + self.max_bytes, i) - i
            fit = min(self.max_rows - self.rows, by_bytes, n - i)
            if fit > 0:
                i += fit
                self.rows += fit
                self.row += fit
                self.end = ends[i - 1]
            if i < n:
                self._close(self.end)

    def _close(self, begin: int) -> None:
        """End the open chunk; the next one starts with the record beginning at `begin`."""
        self.chunks.append(Chunk(len(self.chunks), self.start, self.end, self.first_row, self.rows))
        self.start, self.first_row, self.rows = begin, self.row + 1, 0

    def finish(self) -> list[Chunk]:
        if self.rows:
            self.chunks.append(Chunk(len(self.chunks), self.start, self.end, self.first_row, self.rows))
        if self.data_rows == 0:
            raise BadFile("the file has a header but no rows")
        return self.chunks


def _blocks(body) -> Iterator[bytes]:
    while block := body.read(READ_BLOCK):
        yield block


def _record_blocks(blocks: Iterator[bytes]) -> Iterator[tuple[list[int], Callable[[int], bytes], int]]:
    """For each block: the absolute ends of the records that end in it, a function giving the
    i-th one's bytes, and where the first one begins (a record may start in an earlier block).
    The last record of a file without a final newline comes as a block of its own.

    Only short records are kept whole across blocks (the blank-line check needs them); a longer
    one stands in as b"x" so memory stays flat; the file's first record (the header) is kept up
    to MAX_RECORD_BYTES."""
    scanner = RowScanner()
    pending = bytearray()  # bytes of the record being read, kept only while small
    keep, first, begin = True, True, 0
    for block in blocks:
        ends = scanner.feed(block)
        base = scanner.offset - len(block)
        if ends:
            head = bytes(pending) + block[: ends[0] - base] if keep else b"x"

            def raw_of(i: int, block=block, base=base, ends=ends, head=head) -> bytes:
                return head if i == 0 else block[ends[i - 1] - base : ends[i] - base]

            yield ends, raw_of, begin
            first, begin, keep = False, ends[-1], True
            pending.clear()
            tail = block[ends[-1] - base :]
        else:
            tail = block
        if keep:
            pending += tail
            if not first and len(pending) > 256:
                keep = False
                pending.clear()
            elif first and len(pending) > MAX_RECORD_BYTES:
                raise BadFile(f"the header is longer than {MAX_RECORD_BYTES} bytes")
    if scanner.offset > begin:
        last = bytes(pending) if keep else b"x"
        yield [scanner.offset], lambda i: last, begin


def chunk_message(
    job_id: str, model: str, key: str, columns: list[str], chunk: Chunk, etag: str = ""
) -> dict:
    """The message a chunk worker gets: everything it needs to read and place its rows (the
    object version's ETag too: a byte range of another version is not these rows)."""
    return {
        "job_id": job_id,
        "model": model,
        "key": key,
        "etag": etag,
        "chunk": chunk.index,
        "start": chunk.start,
        "end": chunk.end,
        "first_row": chunk.first_row,
        "columns": columns,
    }


def send_chunk_messages(sqs, queue_url: str, messages: list[dict]) -> None:
    """SendMessageBatch, ten at a time; a message SQS refuses raises (the event is retried)."""
    for start in range(0, len(messages), SQS_BATCH):
        entries = [
            {"Id": str(i), "MessageBody": json.dumps(m, separators=(",", ":"))}
            for i, m in enumerate(messages[start : start + SQS_BATCH])
        ]
        reply = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if reply.get("Failed"):
            codes = sorted({f.get("Code", "?") for f in reply["Failed"]})
            raise RuntimeError(f"SQS refused {len(reply['Failed'])} chunk messages: {codes}")
