"""The chunk worker's fast path against the row-by-row path it replaces.

Column-wise checking (csv_rows.check_columns) and str.split cutting are only allowed to be
faster: every row must be accepted or refused exactly as the online path's validate_instance
refuses it, with the same reason and the same cleaned values; every log line must be what
json.dumps(prediction_record(...)) writes; every result line what csv.writer writes.
"""

from __future__ import annotations

import csv
import io
import json
import random

import pytest
from test_batch import HEADER, MODEL, SPEC, good_row
from test_batch import batch as batch  # noqa: F401  (the fixture, shared)

from batch import assemble
from batch.chunk import ChunkMessage, JobFeatures, read_rows
from inferline import jobs
from inferline.csv_rows import check_columns, coerce_row, parse_record, record_spans, record_text, shown
from inferline.features import get_features
from inferline.outputs import map_scores
from inferline.prediction_log import batch_prediction_id, prediction_record
from inferline.redaction import redact
from inferline.resources import batch_output_key, prediction_log_key
from inferline.validation import validate_instance

COLUMNS = HEADER.split(",")

# Cells the fast path must judge exactly as the row-by-row path: plain values, and every way a
# number or a name can be almost right.
NUMBERS = ["1", "7", " 2 ", "+3", "-0", "0", "1e2", "4.0", "4.5", "1_000", "1__0", "٣", "²", "0x10",
           "nan", "-inf", "inf", "1e400", "-1", "23", "24", "99", "90", "90.0001", "10000", "10001",
           "99999999999999999999999", "9" * 400, "", " ", "abc", "1.5e-3", ".5", "5.", "--1",
           "+-1"]  # fmt: skip
TEXTS = {
    "user_id": ["u1", "u3", "u999", " u1", "", " ", "x" * 64, "x" * 65, "ü", "u1 "],
    "category": ["books", "toys", "Books", " books", "", "pets", "grocery"],
    "device": ["mobile", "tablet", "desktop", "", "phone"],
    "country": ["US", "DE", "us", "", "XX"],
    "email": ["", "a@example.com", "x" * 254, "y" * 255, " "],
}


def random_cell(rng: random.Random, column: str) -> str:
    if column in TEXTS:
        return rng.choice(TEXTS[column] + [TEXTS[column][0]] * 6)  # mostly valid
    return rng.choice(NUMBERS + ["3", "5", "12.5"] * 6)


def reference_rows(message: ChunkMessage, data: bytes) -> tuple[list[tuple[int, dict]], list[list]]:
    """The worker's reading before the fast path: record by record, row by row."""
    good, errors = [], []
    width = len(message.columns)
    row = message.first_row - 1
    for begin, end in record_spans([data], message.start):
        row += 1
        raw = data[begin - message.start : end - message.start]
        if not raw.strip():
            continue
        try:
            text = record_text(raw)
        except UnicodeDecodeError as exc:
            reason = f"the row is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start + 1})"
            errors.append([row, shown(raw), reason])
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
            SPEC, coerce_row(SPEC, dict(zip(message.columns, fields, strict=True))), row
        )
        if problems:
            reason = "; ".join(f"{p.field}: {p.problem}" if p.field else p.problem for p in problems)
            errors.append([row, text, reason])
        else:
            good.append((row, clean))
    return good, errors


def fast_rows(message: ChunkMessage, data: bytes) -> tuple[list[tuple[int, dict]], list[list]]:
    rows = read_rows(SPEC, message, data)
    good = [
        (row, {name: column[i] for name, column in rows.values.items() if column[i] is not None})
        for i, row in enumerate(rows.rows)
    ]
    return good, rows.errors


def message_for(data: bytes, columns: list[str] = COLUMNS) -> ChunkMessage:
    return ChunkMessage(
        job_id="j",
        model=MODEL,
        key="k",
        chunk=0,
        start=100,
        end=100 + len(data),
        first_row=2,
        columns=columns,
    )


def typed(pairs):
    """Values with their types: 3 and 3.0 are not the same cleaned value."""
    return [(row, {k: (type(v).__name__, v) for k, v in clean.items()}) for row, clean in pairs]


@pytest.mark.parametrize("seed", range(6))
def test_random_dirty_rows_are_judged_exactly_as_row_by_row(seed):
    rng = random.Random(seed)
    lines = [",".join(random_cell(rng, c) for c in COLUMNS) for _ in range(400)]
    data = ("\n".join(lines) + "\n").encode()
    expected = reference_rows(message_for(data), data)
    good, errors = fast_rows(message_for(data), data)
    assert errors == expected[1]
    assert typed(good) == typed(expected[0])
    assert len(good) + len(errors) == 400
    assert 0 < len(good) < 400, "both paths exercised"


def test_each_tricky_number_in_each_numeric_column():
    numeric = [c for c in COLUMNS if c not in TEXTS]
    base = good_row(1).split(",")
    lines = []
    for column in numeric:
        for cell in NUMBERS:
            fields = list(base)
            fields[COLUMNS.index(column)] = cell
            lines.append(",".join(fields))
    data = ("\n".join(lines) + "\n").encode()
    expected = reference_rows(message_for(data), data)
    good, errors = fast_rows(message_for(data), data)
    assert errors == expected[1] and typed(good) == typed(expected[0])


@pytest.mark.parametrize(
    "data",
    [
        b'u1,"10",books,mobile,US,2,3,5,\nu2,10,"bo,oks",mobile,US,2,3,5,\n',  # quotes: record by record
        b"u1,10,books,mobile,US,2,3,5,\r\nu2,10,books,mobile,US,2,3,5,\r\n",  # CRLF
        b"u1,10,books,mobile,US,2,3,5,\rx\nu2,10,books,mobile,US,2,3,5,\r\r\n",  # stray CR
        b"u1,10,books,mobile,US,2,3,5,\x00\nu2,10,books,mobile,US,2,3,5,\n",  # NUL
        b"u1,10,books,mobile,US,2,3,5,caf\xe9\nu2,10,books,mobile,US,2,3,5,\n",  # not UTF-8
        b"\n \n\t\n\xc2\xa0\nu2,10,books,mobile,US,2,3,5,\n\x0b\n",  # blank, and NBSP (not blank)
        b"u1,10,books,mobile,US,2,3,5\nu1,10,books,mobile,US,2,3,5,,\nu1,10,books",  # widths, no end
        b"u1,10,books,mobile,US,2,3,5," + b"x" * 140_000 + b"\n",  # a field past csv's size limit
    ],
    ids=["quotes", "crlf", "stray-cr", "nul", "not-utf8", "blank", "widths", "field-limit"],
)
def test_odd_records_read_as_row_by_row(data):
    expected = reference_rows(message_for(data), data)
    good, errors = fast_rows(message_for(data), data)
    assert errors == expected[1] and typed(good) == typed(expected[0])


def test_a_file_without_the_optional_column():
    columns = [c for c in COLUMNS if c != "email"]
    data = b"u1,10,books,mobile,US,2,3,5\nu2,,books,mobile,US,2,3,5\n"
    expected = reference_rows(message_for(data, columns), data)
    good, errors = fast_rows(message_for(data, columns), data)
    assert errors == expected[1] and typed(good) == typed(expected[0]) and len(good) == 1


def test_check_columns_never_accepts_what_validation_refuses():
    rng = random.Random(9)
    records = [[random_cell(rng, c) for c in COLUMNS] for _ in range(2000)]
    values, passed = check_columns(SPEC, COLUMNS, records)
    for i, fields in enumerate(records):
        clean, problems = validate_instance(SPEC, coerce_row(SPEC, dict(zip(COLUMNS, fields, strict=True))))
        if passed[i]:
            assert not problems
            fast = {c: values[c][i] for c in COLUMNS if values[c][i] is not None}
            assert typed([(0, fast)]) == typed([(0, clean)])


# -- what the worker writes ------------------------------------------------------------------------


def test_log_lines_and_result_lines_are_what_the_record_and_csv_writers_write(batch):  # noqa: F811
    rows = [good_row(i) for i in range(6)]
    rows[2] = rows[2].rsplit(",", 1)[0] + ","  # no email: absent from the request
    rows[3] = 'u7,"12.5",books,mobile,US,2,3,5,"quoted, email@example.com"'  # csv-parsed row
    job = run(batch, rows)
    key = prediction_log_key(MODEL, jobs.started_at(job), f"batch-{job['job_id']}-000000")
    lines = (
        batch.aws.s3.get_object(Bucket=batch.aws.data_bucket, Key=key)["Body"].read().decode().splitlines()
    )
    assert len(lines) == 6
    stored = get_features(batch.aws.features, SPEC, [f"u{i % 5}" for i in range(6)] + ["u7"])
    for n, (line, text) in enumerate(zip(lines, rows, strict=True)):
        fields = next(csv.reader([text]))
        clean, problems = validate_instance(SPEC, coerce_row(SPEC, dict(zip(COLUMNS, fields, strict=True))))
        assert not problems
        entity = stored[clean["user_id"]]
        merged = clean | entity.values
        features = {name: merged.get(name) for name in SPEC.model_inputs}
        (output,) = map_scores(SPEC, [0, 1], [min(clean["price"] / 100, 1.0)], expected=1)
        record = prediction_record(
            prediction_id=batch_prediction_id(job["job_id"], 0, n + 2),
            request_id=f"batch-{job['job_id']}-000000",
            model=MODEL,
            model_version="v7",
            created_at=jobs.started_at(job),
            ttl_days=SPEC.logging.prediction_ttl_days,
            request=redact(SPEC, [clean])[0],
            features=features,
            entity_known=entity.known,
            output=output,
            latency_ms=json.loads(line)["latency_ms"],
            source="batch",
        )
        assert line == json.dumps(record, separators=(",", ":"))

    body = batch.aws.s3.get_object(
        Bucket=batch.aws.data_bucket, Key=batch_output_key(MODEL, job["job_id"], "results")
    )
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["row", *COLUMNS, "prediction_id", "label", "score"])
    for n, text in enumerate(rows):
        score = min(float(next(csv.reader([text]))[1]) / 100, 1.0)
        label = "purchase" if score >= 0.5 else "no_purchase"
        pid = batch_prediction_id(job["job_id"], 0, n + 2)
        writer.writerow([n + 2, *next(csv.reader([text])), pid, label, score])
    assert body["Body"].read().decode() == out.getvalue()


def run(batch, rows: list[str]) -> dict:  # noqa: F811
    return batch.run((HEADER + "\n" + "\n".join(rows) + "\n").encode())


def test_stored_features_are_fetched_once_per_entity_per_job(batch, monkeypatch):  # noqa: F811
    import batch.chunk as chunk_module

    fetched: list[list[str]] = []

    def counting(table, spec, ids):
        fetched.append(sorted(ids))
        return get_features(table, spec, ids)

    monkeypatch.setattr(chunk_module, "get_features", counting)
    from dataclasses import replace

    batch.services = replace(batch.services, feature_cache=JobFeatures())
    batch.with_chunks(rows=4)
    job = run(batch, [good_row(i) for i in range(12)])  # users u0..u4, in 3 chunks
    assert job["status"] == jobs.SUCCEEDED and job["rows_ok"] == 12
    assert sorted(sum(fetched, [])) == [f"u{i}" for i in range(5)], "each user once for the job"
    fetched.clear()
    run(batch, [good_row(i) for i in range(4)])  # another job: fetched afresh
    assert sorted(sum(fetched, [])) == [f"u{i}" for i in range(4)]


def test_large_parts_are_copied_into_the_outputs_by_s3(batch, monkeypatch):  # noqa: F811
    import moto.s3.models

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 256)
    monkeypatch.setattr(assemble, "MIN_PART_BYTES", 256)
    monkeypatch.setattr(assemble, "PART_BYTES", 600)
    copies = []
    batch.aws.s3.meta.events.register("before-call.s3.UploadPartCopy", lambda **kw: copies.append(1))
    batch.with_chunks(rows=5)
    rows = [good_row(i) for i in range(23)]
    rows[7] = "u1,oops,books,mobile,US,2,3,5,"
    job = run(batch, rows)
    assert job["status"] == jobs.SUCCEEDED and job["total_chunks"] == 5
    assert copies, "parts of at least the minimum size go in by UploadPartCopy"
    results = batch.output(job, "results")
    assert [int(r["row"]) for r in results] == [n + 2 for n in range(23) if n != 7]
    assert [r["row"] for r in batch.output(job, "errors")] == ["9"]


def test_small_endpoint_requests_in_flight_give_the_same_outputs(batch):  # noqa: F811
    from dataclasses import replace

    from test_batch import REFUSED_PRICE

    rows = [good_row(i) for i in range(23)]
    rows[4] = good_row(4, price=REFUSED_PRICE)  # the model refuses it: found by halving
    rows[9] = "u1,oops,books,mobile,US,2,3,5,"
    rows[17] = good_row(17, price=REFUSED_PRICE)
    expected = run(batch, rows)
    batch.services = replace(batch.services, endpoint_max_rows=3, endpoint_concurrency=2)
    calls = batch.services.runtime.calls
    first_run = len(calls)
    job = run(batch, rows)
    for kind in ("results", "errors"):
        mine, theirs = batch.output(job, kind), batch.output(expected, kind)
        for row in mine + theirs:
            row.pop("prediction_id", None)  # ids name their job
        assert mine == theirs
    assert [e["row"] for e in batch.output(job, "errors")] == ["6", "11", "19"]
    assert max(calls[first_run:]) <= 3
