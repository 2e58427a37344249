"""The chunk worker: one byte range of an upload -> a results part and an errors part.

Each record in the range is decoded (bad UTF-8 is that row's error, not a crash), parsed,
coerced to the spec's types and validated by the online path's validate_instance. Valid rows
get their stored features in batches, are scored by the endpoint in batches kept under its
payload limit, mapped by map_scores and logged like online predictions (source "batch",
PII erased). The parts are written whole under deterministic keys and prediction ids are
derived from (job, row), so a redelivered message rewrites the same objects and items; the
chunk is then counted once by a conditional update, and the worker that counts the last
chunk assembles the outputs and sends the email.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from batch.assemble import finish_if_complete
from batch.services import Services
from inferline import jobs
from inferline.csv_rows import coerce_row, parse_record, record_spans, record_text, shown
from inferline.features import get_features
from inferline.outputs import map_scores
from inferline.prediction_log import prediction_record, write_prediction_log
from inferline.redaction import redact
from inferline.resources import batch_part_key, endpoint_name
from inferline.spec import ModelSpec
from inferline.validation import validate_instance

logger = Logger(child=True)

# Endpoint batches: SageMaker's real-time payload limit is 6 MB; stay well under it.
ENDPOINT_MAX_ROWS = 500
ENDPOINT_MAX_BYTES = 5 * 1024 * 1024
_PREDICTION_NAMESPACE = uuid.UUID("0c9a54c2-8f6b-4b55-9d0e-6a3f1f2f7b21")


class ChunkMessage(BaseModel):
    """The message the splitter sends for one chunk (see batch.split.chunk_message)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str = Field(min_length=1)
    model: str = Field(min_length=1)
    key: str = Field(min_length=1)
    chunk: int = Field(ge=0)
    start: int = Field(ge=0)
    end: int  # exclusive
    first_row: int = Field(ge=2)
    columns: list[str] = Field(min_length=1)


class JobMissing(LookupError):
    """A chunk message for a job that does not exist: retried, then dead-lettered."""


@dataclass
class GoodRow:
    row: int
    text: str
    fields: list[str]
    clean: dict[str, Any]


def prediction_id(job_id: str, row: int) -> str:
    """The same id for the same row of the same job, however often the chunk is retried."""
    return str(uuid.uuid5(_PREDICTION_NAMESPACE, f"{job_id}:{row}"))


def process_chunk(services: Services, body: str | dict) -> dict[str, Any]:
    """Process one chunk message (a JSON string or its dict); returns a summary."""
    message = (
        ChunkMessage.model_validate_json(body) if isinstance(body, str) else ChunkMessage.model_validate(body)
    )
    job = jobs.get_job(services.jobs, message.job_id)
    if job is None:
        raise JobMissing(f"no job {message.job_id} for chunk {message.chunk}")
    summary = {"job_id": message.job_id, "chunk": message.chunk}
    if job["status"] != jobs.RUNNING or message.chunk in job.get("done_chunks", []):
        # finished, failed, or this chunk already counted: at most finish what is pending
        finish_if_complete(services, job)
        return summary | {"action": "skipped", "status": job["status"]}

    spec = services.load_spec(message.model)
    data = services.s3.get_object(
        Bucket=services.bucket, Key=message.key, Range=f"bytes={message.start}-{message.end - 1}"
    )["Body"].read()
    good, errors = read_rows(spec, message, data)
    results = score_rows(services, spec, message, good, errors)
    write_parts(services, spec, message, results, errors)

    updated = jobs.mark_chunk_done(services.jobs, message.job_id, message.chunk, len(results), len(errors))
    if updated is None:  # counted meanwhile by a concurrent delivery, or the job ended
        updated = jobs.get_job(services.jobs, message.job_id) or job
    finish_if_complete(services, updated)
    logger.info(
        "chunk done",
        job_id=message.job_id,
        chunk=message.chunk,
        rows_ok=len(results),
        rows_failed=len(errors),
    )
    return summary | {"action": "processed", "rows_ok": len(results), "rows_failed": len(errors)}


def read_rows(spec: ModelSpec, message: ChunkMessage, data: bytes) -> tuple[list[GoodRow], list[list]]:
    """Valid rows, and [row, raw, reason] for every other non-blank record of the chunk."""
    good: list[GoodRow] = []
    errors: list[list] = []
    width = len(message.columns)
    row = message.first_row - 1
    for begin, end in record_spans([data], message.start):
        row += 1
        raw = data[begin - message.start : end - message.start]
        if not raw.strip():
            continue  # a blank line is not a row
        try:
            text = record_text(raw)
        except UnicodeDecodeError as exc:
            errors.append(
                [
                    row,
                    shown(raw),
                    f"the row is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start + 1})",
                ]
            )
            continue
        try:
            fields = parse_record(text)
        except csv.Error as exc:
            errors.append([row, text, f"the row is not valid CSV: {exc}"])
            continue
        if len(fields) != width:
            errors.append([row, text, f"the row has {len(fields)} fields; the header has {width}"])
            continue
        clean, problems = validate_instance(
            spec, coerce_row(spec, dict(zip(message.columns, fields, strict=True))), row
        )
        if problems:
            errors.append(
                [row, text, "; ".join(f"{p.field}: {p.problem}" if p.field else p.problem for p in problems)]
            )
        else:
            good.append(GoodRow(row, text, fields, clean))
    return good, errors


def endpoint_batches(spec: ModelSpec, good: list[GoodRow], records: list[dict]) -> Iterator[tuple[int, int]]:
    """[start, stop) index ranges of at most ENDPOINT_MAX_ROWS rows and ENDPOINT_MAX_BYTES."""
    start, size = 0, 0
    for i, record in enumerate(records):
        length = len(json.dumps(record, separators=(",", ":"))) + 1
        if i > start and (i - start >= ENDPOINT_MAX_ROWS or size + length > ENDPOINT_MAX_BYTES):
            yield start, i
            start, size = i, 0
        size += length
    if start < len(records):
        yield start, len(records)


def score_rows(
    services: Services, spec: ModelSpec, message: ChunkMessage, good: list[GoodRow], errors: list[list]
) -> list[list]:
    """Result rows for the valid rows (rows the model refuses join errors); logs predictions."""
    if not good:
        return []
    key = spec.entity.key
    stored = get_features(services.features, spec, (g.clean[key] for g in good))
    records = []
    for g in good:
        merged = g.clean | stored[g.clean[key]].values
        records.append({name: merged.get(name) for name in spec.model_inputs})
    results: list[list] = []
    now = datetime.now(UTC)
    for batch_no, (start, stop) in enumerate(endpoint_batches(spec, good, records)):
        started = time.perf_counter()
        scored, refused = _score(services, spec, list(range(start, stop)), records)
        latency_ms = (time.perf_counter() - started) * 1000
        for index, reason in refused:
            g = good[index]
            errors.append([g.row, g.text, reason])
        if not scored:
            continue
        _log_predictions(services, spec, message, batch_no, now, latency_ms, good, records, stored, scored)
        for i, output, _version in scored:
            g = good[i]
            row = [g.row, *g.fields, prediction_id(message.job_id, g.row), output["label"], output["score"]]
            if spec.task == "multiclass":
                row.append(json.dumps(output["top_k"], separators=(",", ":")))
            results.append(row)
    errors.sort(key=lambda e: e[0])  # refused rows join the errors out of order
    return results


def _score(services: Services, spec: ModelSpec, indexes: list[int], records: list[dict]):
    """([(index, output, model_version)], [(index, reason)]): one call, or halves when the model refuses a
    row (a 4xx, ModelError), until the refused rows are found one by one."""
    body = json.dumps({"instances": [records[i] for i in indexes]}, separators=(",", ":"))
    try:
        reply = services.runtime.invoke_endpoint(
            EndpointName=endpoint_name(services.resource_prefix, spec.name),
            ContentType="application/json",
            Accept="application/json",
            Body=body.encode(),
        )
    except ClientError as exc:
        if exc.response["Error"].get("Code") != "ModelError":
            raise  # throttling, endpoint missing, server down: the message is retried
        if len(indexes) == 1:
            detail = exc.response["Error"].get("OriginalMessage") or exc.response["Error"].get("Message")
            return [], [(indexes[0], f"the model refused the row: {_model_reason(detail)}")]
        half = len(indexes) // 2
        left = _score(services, spec, indexes[:half], records)
        right = _score(services, spec, indexes[half:], records)
        return left[0] + right[0], left[1] + right[1]
    answer = json.loads(reply["Body"].read())
    outputs = map_scores(spec, answer["classes"], answer["scores"], expected=len(indexes))
    version = str(answer["model_version"])
    return [(i, o, version) for i, o in zip(indexes, outputs, strict=True)], []


def _model_reason(detail: Any) -> str:
    try:
        parsed = json.loads(detail)
    except (TypeError, ValueError):
        return str(detail)
    return str(parsed.get("message", parsed)) if isinstance(parsed, dict) else str(parsed)


def _log_predictions(services, spec, message, batch_no, now, latency_ms, good, records, stored, scored):
    """One prediction-log write per endpoint batch, like one online request; PII erased."""
    key = spec.entity.key
    requests = redact(spec, [good[i].clean for i, _, _ in scored])
    log = [
        prediction_record(
            prediction_id=prediction_id(message.job_id, good[i].row),
            request_id=f"batch-{message.job_id}-{message.chunk:06d}-{batch_no:04d}",
            model=spec.name,
            model_version=version,
            created_at=now,
            ttl_days=spec.logging.prediction_ttl_days,
            request=request,
            features=records[i],
            entity_known=stored[good[i].clean[key]].known,
            output=output,
            latency_ms=latency_ms,
            source="batch",
        )
        for (i, output, version), request in zip(scored, requests, strict=True)
    ]
    write_prediction_log(services.predictions, services.s3, services.bucket, log)


def write_parts(
    services: Services, spec: ModelSpec, message: ChunkMessage, results: list[list], errors: list[list]
) -> None:
    """The chunk's two parts, whole, under deterministic keys (no header: assembly adds it)."""
    for kind, rows in (("results", results), ("errors", errors)):
        services.s3.put_object(
            Bucket=services.bucket,
            Key=batch_part_key(message.model, message.job_id, message.chunk, kind),
            Body=_csv_bytes(rows),
            ContentType="text/csv",
        )


def _csv_bytes(rows: list[list]) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()
