"""The chunk worker: one byte range of an upload -> a results part, an errors part and the
chunk's prediction log.

Reading: the range is read whole (a few MB). A range that is UTF-8 text with no quote in it is
cut into records by str.split (the same records the CSV scanner finds, at C speed); any other
range is cut record by record by the splitter's scanner, each record decoded and parsed on its
own (bad UTF-8 or bad CSV is that row's error, not a crash).

Validating: cells are checked a column at a time (inferline.csv_rows.check_columns). A row the
fast path does not accept is validated row by row by the online path's validate_instance, so it
is refused for the same reason in the same words (or accepted, when the fast path was only
unsure).

Scoring: stored features are fetched once per entity per job (JobFeatures keeps them for the
job this process is working on), the valid rows go to the endpoint as CSV in requests kept
under its payload limit (several in flight while this thread writes the log lines), scores are
mapped by map_scores, and every prediction is logged like an online one (source "batch", PII
erased): one JSON Lines object per chunk, and one index item that lets feedback find a batch
prediction by its id.

Idempotent: parts, log and index are written whole under deterministic keys, and prediction
ids and log timestamps derive from (job, chunk, row) and the job's start, so a redelivered
message rewrites the same objects and item; the chunk is then counted once by a conditional
update, and the worker that counts the last chunk assembles the outputs and sends the email.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from json.encoder import encode_basestring_ascii as json_string
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from batch.assemble import finish_if_complete
from batch.notify import fail_job
from batch.services import Services
from batch.split import replaced_reason
from inferline import jobs
from inferline.csv_rows import (
    FIELD_SIZE_LIMIT,
    check_columns,
    coerce_row,
    parse_record,
    record_spans,
    record_text,
    shown,
)
from inferline.features import get_features
from inferline.outputs import map_scores
from inferline.prediction_log import batch_index_item, batch_prediction_id
from inferline.redaction import redact
from inferline.refusals import count_problems, refusal_record, write_refusal
from inferline.resources import batch_part_key, endpoint_name, prediction_log_key
from inferline.spec import ModelSpec
from inferline.validation import validate_instance

logger = Logger(child=True)

# Endpoint requests: SageMaker's real-time payload limit is 6 MB; stay well under it. The
# serving container takes up to 10,000 rows a request (INFERLINE_SERVING_MAX_INSTANCES).
ENDPOINT_MAX_BYTES = 5 * 1024 * 1024
CSV = "text/csv"
# Bytes a blank record may hold: bytes.strip()'s whitespace, which str.strip() must match.
_ASCII_SPACE = " \t\n\r\x0b\x0c"
_CSV_SPECIAL = (",", '"', "\r", "\n")


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
    etag: str = ""  # the upload version the splitter planned ("": any, from an older splitter)


class JobMissing(LookupError):
    """A chunk message for a job that does not exist: retried, then dead-lettered."""


@dataclass
class ChunkRows:
    """The valid rows of a chunk, column by column, and an error for every other row."""

    rows: list[int]  # row numbers (the header is row 1), in input order
    texts: list[str]  # each row's fields as CSV text, as results.csv repeats them
    raws: list[str]  # each row as it was read (errors.csv shows a refused row this way)
    values: dict[str, list[Any]]  # column -> each row's value as validation cleaned it
    errors: list[list] = field(default_factory=list)  # [row, raw, reason]
    # (field or None, problem) -> refused rows, for the refusal log (no values)
    problems: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class Entity:
    """One entity's stored features, rendered once: CSV cells for the endpoint, JSON members for
    the log, in the spec's order."""

    csv: str
    json: str
    known: bool


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
    where = f"bytes={message.start}-{message.end - 1}"
    read = {"Bucket": services.bucket, "Key": message.key, "Range": where}
    if message.etag:
        read["IfMatch"] = message.etag
    try:
        data = services.s3.get_object(**read)
    except ClientError as exc:
        if exc.response["Error"].get("Code") not in ("PreconditionFailed", "412"):
            raise
        # The upload was replaced since the split: these offsets are not this file's rows.
        fail_job(services, message.job_id, replaced_reason(message.key))
        return summary | {"action": "failed", "status": jobs.FAILED}
    data = data["Body"].read()
    with _collector_paused():
        rows = read_rows(spec, message, data)
        del data
        results, log = score_rows(services, spec, message, jobs.started_at(job), rows, job.get("client"))
    if log is not None:
        write_log(services, spec, message, jobs.started_at(job), *log)
    write_parts(services, message, results, rows.errors)
    if rows.errors:
        write_refusal(services.s3, services.bucket, refusal_record(
            spec=spec, source="batch", request_id=f"batch-{message.job_id}-{message.chunk:06d}",
            created_at=jobs.started_at(job), status=400, error="invalid_rows",
            refused=len(rows.errors), problems=rows.problems,
        ))  # fmt: skip

    ok, failed = len(results), len(rows.errors)
    updated = jobs.mark_chunk_done(services.jobs, message.job_id, message.chunk, ok, failed)
    if updated is None:  # counted meanwhile by a concurrent delivery, or the job ended
        updated = jobs.get_job(services.jobs, message.job_id) or job
    finish_if_complete(services, updated)
    logger.info("chunk done", job_id=message.job_id, chunk=message.chunk, rows_ok=ok, rows_failed=failed)
    return summary | {"action": "processed", "rows_ok": ok, "rows_failed": failed}


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a chunk's rows are read and scored: they
    are a few hundred thousand short-lived lists and tuples with no cycles among them, and the
    collections their allocation triggers, each walking every one of them, cost a quarter of
    the worker's time. Reference counting frees them as usual; the collector runs again after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -- reading and validating -----------------------------------------------------------------------


def read_rows(spec: ModelSpec, message: ChunkMessage, data: bytes) -> ChunkRows:
    """The chunk's valid rows, and [row, raw, reason] for every other non-blank record."""
    columns, width = message.columns, len(message.columns)
    numbers: list[int] = []
    raws: list[str] = []
    records: list[list[str]] = []
    encoded: dict[int, str] = {}  # rows parsed by the csv module: results.csv re-quotes them
    errors: list[list] = []
    problems: Counter = Counter()
    for row, raw, text in _records(message, data):
        if text is None:
            errors.append([row, shown(raw), _not_utf8(raw)])
            problems[(None, "the row is not UTF-8 text")] += 1
            continue
        if '"' in text or "\r" in text or "\x00" in text or len(text) > FIELD_SIZE_LIMIT:
            try:
                fields = parse_record(text)
            except csv.Error as exc:
                errors.append([row, text, f"the row is not valid CSV: {exc}"])
                problems[(None, "the row is not valid CSV")] += 1
                continue
            if len(fields) == width:
                encoded[len(records)] = _csv_line(fields)
        else:
            fields = text.split(",")  # no quote, CR or NUL: exactly what the csv module reads
        if len(fields) != width:
            errors.append([row, text, f"the row has {len(fields)} fields; the header has {width}"])
            problems[(None, "the row has a different number of fields than the header")] += 1
            continue
        numbers.append(row)
        raws.append(text)
        records.append(fields)

    values, passed = check_columns(spec, columns, records)
    del records
    if not all(passed):
        keep = []
        for i, ok in enumerate(passed):
            if ok:
                keep.append(i)
                continue
            fields = parse_record(raws[i]) if i in encoded else raws[i].split(",")
            clean, problems_found = validate_instance(
                spec, coerce_row(spec, dict(zip(columns, fields, strict=True))), numbers[i]
            )
            if problems_found:
                reason = "; ".join(
                    f"{p.field}: {p.problem}" if p.field else p.problem for p in problems_found
                )
                errors.append([numbers[i], raws[i], reason])
                problems.update(count_problems(spec, [(p.field, p.problem) for p in problems_found]))
            else:  # the fast path was only unsure: take the row-by-row values
                keep.append(i)
                for name in columns:
                    values[name][i] = clean.get(name)
        if len(keep) < len(passed):
            values = {name: [column[i] for i in keep] for name, column in values.items()}
            texts = [encoded.get(i, raws[i]) for i in keep]
            numbers = [numbers[i] for i in keep]
            raws = [raws[i] for i in keep]
        else:
            texts = [encoded.get(i, raw) for i, raw in enumerate(raws)]
    else:
        texts = [encoded.get(i, raw) for i, raw in enumerate(raws)] if encoded else raws
    errors.sort(key=lambda e: e[0])
    return ChunkRows(numbers, texts, raws, values, errors, problems)


def _not_utf8(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the row is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start + 1})"
    return "the row is not UTF-8 text"


def _records(message: ChunkMessage, data: bytes) -> Iterator[tuple[int, bytes, str | None]]:
    """(row number, raw bytes, text or None when not UTF-8) of every non-blank record."""
    row = message.first_row
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and '"' not in text:
        # Without quotes a record ends at each newline, as the scanner says: split at C speed.
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the newline that ends the last record
        for line in lines:
            if line.strip(_ASCII_SPACE):
                yield row, b"", line.rstrip("\r")
            row += 1
        return
    for begin, end in record_spans([data], message.start):
        raw = data[begin - message.start : end - message.start]
        if raw.strip():
            try:
                yield row, raw, record_text(raw)
            except UnicodeDecodeError:
                yield row, raw, None
        row += 1


# -- features, the endpoint and the log -----------------------------------------------------------


class JobFeatures:
    """Stored features kept by this process for the job it is working on, so each entity is
    fetched once per job (a warm Lambda runs many chunks of one job) rather than once per chunk;
    the first chunk of another job starts afresh. Bounded: past max_entities it starts over."""

    def __init__(self, max_entities: int = 200_000):
        self.max_entities = max_entities
        self._job: str | None = None
        self._entities: dict[str, Entity] = {}
        self._lock = threading.Lock()

    def lookup(self, table, spec: ModelSpec, job_id: str, ids: set[str]) -> dict[str, Entity]:
        with self._lock:
            if job_id != self._job or len(self._entities) + len(ids) > self.max_entities:
                self._job, self._entities = job_id, {}
            entities = self._entities
            missing = [i for i in ids if i not in entities]
            if missing:
                entities.update(render_entities(spec, get_features(table, spec, missing)))
            return entities


def render_entities(spec: ModelSpec, stored: dict) -> dict[str, Entity]:
    names = list(spec.stored_features)
    keys = [json_string(n) + ":" for n in names]
    return {
        entity_id: Entity(
            ",".join(_csv_value(features.values[n]) for n in names),
            ",".join(k + _json_value(features.values[n]) for k, n in zip(keys, names, strict=True)),
            features.known,
        )
        for entity_id, features in stored.items()
    }


def score_rows(
    services: Services, spec: ModelSpec, message: ChunkMessage, at: datetime, rows: ChunkRows,
    client: str | None = None,
) -> tuple[list[str], tuple | None]:
    """results.csv lines for the rows the model scored (rows it refuses join the errors), and
    what the chunk's log needs (None when nothing was scored).

    A pipeline over slices of endpoint_max_rows rows: a slice's CSV goes to the endpoint, and
    while `endpoint_concurrency` slices are in flight this thread turns the oldest one's rows
    into log lines and result lines. Only those few slices' rendered values exist at once."""
    n = len(rows.rows)
    if not n:
        return [], None
    key = spec.entity.key
    cache = services.feature_cache or JobFeatures()
    entities = cache.lookup(services.features, spec, message.job_id, set(rows.values[key]))
    writer = _ChunkWriter(spec, message, at, rows, [entities[i] for i in rows.values[key]], client)
    size = max(1, services.endpoint_max_rows)
    in_flight: deque = deque()
    with ThreadPoolExecutor(max_workers=max(1, services.endpoint_concurrency)) as pool:
        for start in range(0, n, size):
            stop = min(start + size, n)
            texts, lines = writer.render(start, stop)
            calls = [
                pool.submit(_score, services, spec, writer.header, lines, range(a, b), start)
                for a, b in endpoint_batches(lines, size)
            ]
            in_flight.append((start, stop, texts, calls))
            if len(in_flight) > services.endpoint_concurrency:
                writer.write(*in_flight.popleft())
        while in_flight:
            writer.write(*in_flight.popleft())
    return writer.finish()


class _ChunkWriter:
    """A chunk's rows rendered a slice at a time: CSV for the endpoint, then, with the scores,
    result lines and log lines (the log encoded slice by slice: one copy of it in memory)."""

    def __init__(self, spec: ModelSpec, message: ChunkMessage, at: datetime, rows: ChunkRows, entity: list,
                 client: str | None = None):  # fmt: skip
        self.spec, self.at, self.rows, self.entity, self.client = spec, at, rows, entity, client
        self.fields = spec.request.fields
        self.request_inputs = [name for name, f in self.fields.items() if f.model_input]
        self.header = ",".join(_csv_cell(name) for name in spec.model_inputs)
        self.request_id = f"batch-{message.job_id}-{message.chunk:06d}"
        self.prefix = batch_prediction_id(message.job_id, message.chunk, 0)[:-1]  # every id of the chunk
        self.plain_ids = not _has_special([self.prefix]) and json_string(self.prefix) == f'"{self.prefix}"'
        self.labels: dict[str, tuple[str, str]] = {}  # label -> (CSV cell, JSON string)
        self.heads: dict[str, str] = {}  # model version -> the log members its lines share
        self.results: list[str] = []
        self.log: list[bytes] = []
        self.by_version: dict[str, list[int]] = {}
        self.refused: list[list] = []

    def render(self, start: int, stop: int) -> tuple[dict, list[str]]:
        """Rows [start, stop): every request value rendered once (a JSON member for the log, a
        CSV cell for the endpoint), and the endpoint's CSV lines (model inputs, then stored features)."""
        values = self.rows.values
        texts = {
            name: _column_text(name, f.type, values[name][start:stop])
            for name, f in self.fields.items()
            if name in values
        }
        columns = [texts[name][1] if name in texts else [""] * (stop - start) for name in self.request_inputs]
        if self.spec.stored_features:
            columns.append([e.csv for e in self.entity[start:stop]])
        return texts, list(map(",".join, zip(*columns, strict=True)))

    def write(self, start: int, stop: int, texts: dict, calls: list) -> None:
        """Rows [start, stop), once scored: their result lines and log lines."""
        spec, rows, entity = self.spec, self.rows, self.entity[start:stop]
        request_json, features_json = _log_members(
            spec, rows.values, start, texts, self.request_inputs, entity
        )
        for groups, refusals in (call.result() for call in calls):
            self.refused += [[rows.rows[i], rows.raws[i], reason] for i, reason in refusals]
            if refusals:
                rows.problems[(None, "refused by the model")] += len(refusals)
            for indexes, outputs, version, latency_ms in groups:
                self._scored(indexes, outputs, version, latency_ms, start, request_json, features_json)

    def _scored(self, indexes, outputs, version, latency_ms, start, request_json, features_json) -> None:
        spec, rows = self.spec, self.rows
        if version not in self.heads:
            self.heads[version] = _log_head(spec, self.request_id, version, self.at, self.client)
            self.by_version[version] = []
        head, latency = self.heads[version], _json_float(round(latency_ms, 3))
        numbers = [rows.rows[i] for i in indexes]
        self.by_version[version] += numbers
        ids = [self.prefix + str(row) for row in numbers]
        ids_csv = ids if self.plain_ids else [_csv_cell(pid) for pid in ids]
        ids_json = [f'"{pid}"' for pid in ids] if self.plain_ids else [json_string(pid) for pid in ids]
        for output in outputs:
            if output["label"] not in self.labels:
                self.labels[output["label"]] = (_csv_cell(output["label"]), json_string(output["label"]))
        labels = [self.labels[o["label"]] for o in outputs]
        scores = [float(o["score"]) for o in outputs]
        score_csv = list(map(float.__repr__, scores))
        score_json = score_csv if math.isfinite(sum(scores)) else list(map(_json_float, scores))
        if spec.task == "multiclass":
            top_k = [_csv_cell(json.dumps(o["top_k"], separators=(",", ":"))) for o in outputs]
            score_csv = [f"{s},{t}" for s, t in zip(score_csv, top_k, strict=True)]
            out = [json.dumps(o, separators=(",", ":")) for o in outputs]
        else:
            out = [
                f'{{"label":{label[1]},"score":{score}}}'
                for label, score in zip(labels, score_json, strict=True)
            ]
        self.results += [
            f"{row},{rows.texts[i]},{pid},{label[0]},{score}"
            for row, i, pid, label, score in zip(numbers, indexes, ids_csv, labels, score_csv, strict=True)
        ]
        known = ["true" if self.entity[i].known else "false" for i in indexes]
        lines = [
            f'{{"prediction_id":{pid},{head},"request":{request_json[i - start]},'
            f'"features":{features_json[i - start]},"entity_known":{k},"output":{o},'
            f'"latency_ms":{latency}}}\n'
            for i, pid, k, o in zip(indexes, ids_json, known, out, strict=True)
        ]
        self.log.append("".join(lines).encode())

    def finish(self) -> tuple[list[str], tuple | None]:
        if self.refused:
            self.rows.errors.extend(self.refused)
            self.rows.errors.sort(key=lambda e: e[0])
        if not self.log:
            return self.results, None
        return self.results, (self.request_id, self.log, self.by_version)


def endpoint_batches(lines: list[str], max_rows: int) -> Iterator[tuple[int, int]]:
    """[start, stop) ranges of at most max_rows lines and ENDPOINT_MAX_BYTES of CSV."""
    sizes = list(map(len, lines))
    if max(sizes, default=0) * max_rows + max_rows <= ENDPOINT_MAX_BYTES:  # rows alone decide
        yield from ((start, min(start + max_rows, len(lines))) for start in range(0, len(lines), max_rows))
        return
    start, size = 0, 0
    for i, line in enumerate(lines):
        length = len(line) + 1
        if i > start and (i - start >= max_rows or size + length > ENDPOINT_MAX_BYTES):
            yield start, i
            start, size = i, 0
        size += length
    if start < len(lines):
        yield start, len(lines)


def _score(
    services: Services, spec: ModelSpec, header: str, lines: list[str], indexes: range | list, offset: int
):
    """([(row indexes, outputs, model version, latency ms)], [(row index, reason)]) for one
    request of lines[i] for i in `indexes` (row index: offset + i); when the model refuses rows
    or fails on them (a ModelError from a 4xx or a 500) the rows are halved until those rows are
    found one by one."""
    body = header + "\n" + "\n".join([lines[i] for i in indexes]) + "\n"
    started = time.perf_counter()
    try:
        reply = services.runtime.invoke_endpoint(
            EndpointName=endpoint_name(services.resource_prefix, spec.name),
            ContentType=CSV,
            Accept="application/json",
            Body=body.encode(),
        )
    except ClientError as exc:
        if not _refused_by_model(exc):
            raise  # throttling, endpoint missing, the model not ready (503): the message is retried
        if len(indexes) == 1:
            detail = exc.response.get("OriginalMessage") or exc.response["Error"].get("Message")
            return [], [(offset + indexes[0], f"the model refused the row: {_model_reason(detail)}")]
        half = len(indexes) // 2
        left = _score(services, spec, header, lines, indexes[:half], offset)
        right = _score(services, spec, header, lines, indexes[half:], offset)
        return left[0] + right[0], left[1] + right[1]
    answer = json.loads(reply["Body"].read())
    latency_ms = (time.perf_counter() - started) * 1000
    outputs = map_scores(spec, answer["classes"], answer["scores"], expected=len(indexes))
    return [([offset + i for i in indexes], outputs, str(answer["model_version"]), latency_ms)], []


def _refused_by_model(exc: ClientError) -> bool:
    """A ModelError about the rows sent: the container refused them (4xx) or its model raised on
    them (500), so they are halved until the rows at fault are found. SageMaker reports every
    non-2xx container answer as ModelError; any other one (503: the model is not loaded yet) is
    about the server, not the rows, and the delivery is retried instead."""
    if exc.response["Error"].get("Code") != "ModelError":
        return False
    status = exc.response.get("OriginalStatusCode")  # where botocore puts the container's status
    try:
        return 400 <= int(status) <= 500
    except (TypeError, ValueError):
        return False


def _model_reason(detail: Any) -> str:
    try:
        parsed = json.loads(detail)
    except (TypeError, ValueError):
        return str(detail)
    return str(parsed.get("message", parsed)) if isinstance(parsed, dict) else str(parsed)


def _log_members(
    spec: ModelSpec,
    values: dict[str, list[Any]],
    start: int,
    texts: dict[str, tuple[list[str | None], list[str]]],
    request_inputs: list[str],
    entity: list[Entity],
) -> tuple[list[str], list[str]]:
    """The "request" (PII erased) and "features" JSON objects of rows start, start + 1, ... (as
    many as `texts` renders), exactly as json.dumps writes prediction_record's, a column at a time."""
    n = len(entity)
    members = {name: texts[name][0] for name in spec.request.fields if name in texts}
    # PII erased by the shared redaction function: one call tells what it erases a value to
    for name in spec.pii_fields:
        if name not in members:
            continue
        masks: dict[type, str] = {}
        column = members[name] = list(members[name])
        for i, value in enumerate(values[name][start : start + n]):
            if value is not None:
                if type(value) not in masks:
                    erased = redact(spec, [{name: value}])[0][name]
                    masks[type(value)] = f"{json_string(name)}:{json.dumps(erased)}"
                column[i] = masks[type(value)]
    ordered = list(members.values())
    if not ordered:
        request = ["{}"] * n
    elif any(None in column for column in ordered):
        request = ["{" + ",".join(filter(None, parts)) + "}" for parts in zip(*ordered, strict=True)]
    else:
        request = ["{" + ",".join(parts) + "}" for parts in zip(*ordered, strict=True)]

    # features: every model input, null when missing, then the entity's stored features
    inputs = []
    for name in request_inputs:
        column = members.get(name)
        if column is None or None in column:
            null = json_string(name) + ":null"
            column = [null] * n if column is None else [c if c is not None else null for c in column]
        inputs.append(column)
    if spec.stored_features:
        inputs.append([e.json for e in entity])
    features = ["{" + ",".join(parts) + "}" for parts in zip(*inputs, strict=True)] if inputs else ["{}"] * n
    return request, features


def _column_text(name: str, kind: str, values: list[Any]) -> tuple[list[str | None], list[str]]:
    """One column of valid values as JSON members ('"name":value', None when missing) and as CSV
    cells ('' when missing), each distinct value rendered once where values repeat."""
    key = json_string(name) + ":"
    if kind != "float":  # (a float column may hold 0.0 and -0.0, equal but written apart)
        distinct = set(values)
        if len(distinct) * 4 <= len(values):
            as_json = {v: None if v is None else key + _json_value(v) for v in distinct}
            as_csv = {v: _csv_value(v) for v in distinct}
            return list(map(as_json.__getitem__, values)), list(map(as_csv.__getitem__, values))
    if None in values or kind == "bool":
        return [None if v is None else key + _json_value(v) for v in values], list(map(_csv_value, values))
    if kind == "string":
        cells = [_csv_cell(v) for v in values] if _has_special(values) else values
        return [key + json_string(v) for v in values], cells
    cells = list(map(float.__repr__ if kind == "float" else int.__repr__, values))  # finite: validated
    return [key + c for c in cells], cells


def _has_special(values: list[str]) -> bool:
    joined = "".join(values)
    return any(c in joined for c in _CSV_SPECIAL)


def _log_head(spec: ModelSpec, request_id: str, version: str, at: datetime, client: str | None) -> str:
    """The members every log line of one chunk and version shares, as prediction_record orders them."""
    head = {
        "request_id": request_id,
        "model": spec.name,
        "model_version": version,
        "source": "batch",
        "client": client,
        "created_at": at.isoformat(),
        "expires_at": int((at + timedelta(days=spec.logging.prediction_ttl_days)).timestamp()),
    }
    return json.dumps(head, separators=(",", ":"))[1:-1]


def write_log(
    services: Services,
    spec: ModelSpec,
    message: ChunkMessage,
    at: datetime,
    request_id: str,
    log: list[bytes],
    by_version: dict[str, list[int]],
) -> None:
    """The chunk's log as one JSON Lines object, then its index item (S3 first: a retry after a
    failure in between rewrites both)."""
    key = prediction_log_key(spec.name, at, request_id)
    body = b"".join(log)
    log.clear()
    services.s3.put_object(Bucket=services.bucket, Key=key, Body=body, ContentType="application/x-ndjson")
    del body
    services.predictions.put_item(
        Item=batch_index_item(
            job_id=message.job_id,
            chunk=message.chunk,
            model=spec.name,
            created_at=at,
            ttl_days=spec.logging.prediction_ttl_days,
            log_key=key,
            first_row=message.first_row,
            rows_by_version=by_version,
        )
    )


def write_parts(services: Services, message: ChunkMessage, results: list[str], errors: list[list]) -> None:
    """The chunk's two parts, whole, under deterministic keys (no header: assembly adds it)."""
    parts = {
        "results": ("".join(line + "\r\n" for line in results)).encode(),
        "errors": _csv_bytes(errors),
    }
    for kind, body in parts.items():
        services.s3.put_object(
            Bucket=services.bucket,
            Key=batch_part_key(message.model, message.job_id, message.chunk, kind),
            Body=body,
            ContentType="text/csv",
        )


# -- CSV and JSON text ----------------------------------------------------------------------------


def _csv_bytes(rows: list[list]) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def _csv_line(fields: list[str]) -> str:
    """Fields as csv.writer writes them (no line ending)."""
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerow(fields)
    return out.getvalue()[:-1]


def _csv_cell(text: str) -> str:
    """One cell as csv.writer quotes it (QUOTE_MINIMAL)."""
    if any(c in text for c in _CSV_SPECIAL):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return _csv_cell(str(value))


def _json_float(value: float) -> str:
    """A float as json.dumps writes it (repr, unless it is not finite)."""
    return float.__repr__(value) if math.isfinite(value) else json.dumps(value)


def _json_value(value: Any) -> str:
    """A scalar as json.dumps writes it."""
    if isinstance(value, str):
        return json_string(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"))
