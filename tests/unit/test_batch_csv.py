"""The CSV record scanner the splitter and the chunk workers share: it must find the same
records as the csv module, however the bytes are cut into blocks."""

from __future__ import annotations

import csv
import io
import random

import pytest

from inferline.csv_rows import (
    MAX_HEADER_PROBLEMS,
    MAX_SHOWN_NAME,
    coerce_row,
    header_problems,
    parse_header,
    record_spans,
)
from inferline.spec import load_spec

SPEC = load_spec("purchase-propensity")
TRICKY = (
    b'id,text\r\n1,"a,b"\r\n2,"line\nbreak"\n3,"say ""hi"", ok"\n4,plain"quote\n'
    b'5,"x\r\ny"\n6,""\n7,"ends with quote"""\n\n8,last'
)


def split_into_blocks(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    blocks, i = [], 0
    while i < len(data):
        n = rng.randint(1, 7)
        blocks.append(data[i : i + n])
        i += n
    return blocks


@pytest.mark.parametrize("seed", range(20))
def test_records_match_the_csv_module_whatever_the_block_boundaries(seed):
    spans = list(record_spans(split_into_blocks(TRICKY, seed)))
    assert spans[0][0] == 0 and spans[-1][1] == len(TRICKY)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    records = [list(csv.reader(io.StringIO(TRICKY[b:e].decode(), newline=""))) for b, e in spans]
    expected = list(csv.reader(io.StringIO(TRICKY.decode(), newline="")))
    assert [r[0] if r else [] for r in records] == expected


def test_record_spans_carry_absolute_offsets():
    assert list(record_spans([b"a\nb\n"], start=100)) == [(100, 102), (102, 104)]


def test_header_with_bom_crlf_and_spaces():
    assert parse_header(b"\xef\xbb\xbf user_id ,price\r\n") == ["user_id", "price"]


def test_header_problems_lists_everything():
    problems = header_problems(SPEC, ["user_id", "colour", "", "colour"])
    assert "unknown column 'colour'" in problems and "a column has an empty name" in problems
    assert "column 'colour' appears more than once" in problems
    assert "missing required column 'price' (float)" in problems
    assert not any("email" in p for p in problems), "email is optional"


def test_coerce_row_types_and_missing():
    row = {"price": " 1e2 ", "session_pages": "3", "hour_of_day": "4.0", "user_id": "007", "email": ""}
    assert coerce_row(SPEC, row) == {"price": 100.0, "session_pages": 3, "hour_of_day": 4.0, "user_id": "007"}
    assert coerce_row(SPEC, {"price": "ten"}) == {"price": "ten"}


def test_a_missing_header_is_named_without_repeating_the_data_row():
    """A file without a header: its first row is read as one. Its cells (an email address,
    here) must not reach the failure reason, which is stored, emailed and logged."""
    row = ["u00001", "10.5", "books", "mobile", "US", "3", "12", "0", "jane.doe@example.com"]
    (problem,) = header_problems(SPEC, row)
    assert "header row" in problem and "9 values" in problem
    assert not any(cell in problem for cell in row)


def test_header_problems_stay_short_whatever_the_header():
    columns = ["user_id", *(f"column_{i}_" + "x" * 500 for i in range(5_000))]
    problems = header_problems(SPEC, columns)
    assert len(problems) == MAX_HEADER_PROBLEMS and problems[-1].startswith("and ")
    assert sum(map(len, problems)) < 2_000
    assert problems[0] == f"unknown column '{columns[1][:MAX_SHOWN_NAME - 3]}...'"
