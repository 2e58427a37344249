"""The splitter's chunk plan: planning a block's records at once (batch.split._Planner.records)
gives exactly the chunks, row numbers and errors of planning them one by one, the way the
splitter did before (kept here as the reference), however the file is cut into blocks."""

from __future__ import annotations

import io
import random

import pytest

from batch import split
from batch.split import BadFile, Chunk, plan_chunks
from inferline.csv_rows import RowScanner, header_problems, parse_header
from inferline.spec import load_spec

SPEC = load_spec("purchase-propensity")
HEADER = b"user_id,price,category,device,country,session_pages,hour_of_day,discount_pct,email"


def reference_plan(body, spec, max_rows: int, max_bytes: int) -> tuple[list[str], list[Chunk]]:
    """plan_chunks as it was: one Python step per record."""
    records = _reference_records(body)
    try:
        _, header_end, header_raw = next(records)
    except StopIteration:
        raise BadFile("the file is empty") from None
    try:
        columns = parse_header(header_raw)
    except ValueError as exc:
        raise BadFile(str(exc)) from None
    if not columns:
        if all(not raw.strip() for _, _, raw in records):
            raise BadFile("the file is empty")
        raise BadFile("the first line is empty: the file needs a header row naming the columns")
    if header_problems(spec, columns):
        raise BadFile("header")
    chunks: list[Chunk] = []
    row, data_rows = 1, 0
    start = end = header_end
    first_row, rows = 2, 0
    for begin, stop, raw in records:
        row += 1
        if stop - begin > split.MAX_RECORD_BYTES:
            raise BadFile(f"row {row} is longer than {split.MAX_RECORD_BYTES} bytes: is a quote left open?")
        if raw.strip():
            data_rows += 1
        if rows and (rows >= max_rows or stop - start > max_bytes):
            chunks.append(Chunk(len(chunks), start, end, first_row, rows))
            start, first_row, rows = begin, row, 0
        rows += 1
        end = stop
    if rows:
        chunks.append(Chunk(len(chunks), start, end, first_row, rows))
    if data_rows == 0:
        raise BadFile("the file has a header but no rows")
    return columns, chunks


def _reference_records(body):
    scanner = RowScanner()
    pending, keep, begin, first = bytearray(), True, 0, True
    while block := body.read(split.READ_BLOCK):
        ends = scanner.feed(block)
        base = scanner.offset - len(block)
        cursor = 0
        for end in ends:
            if keep:
                pending += block[cursor : end - base]
            yield begin, end, bytes(pending) if keep else b"x"
            first = False
            begin, cursor = end, end - base
            pending.clear()
            keep = True
        if keep:
            pending += block[cursor:]
            if not first and len(pending) > 256:
                keep = False
                pending.clear()
            elif first and len(pending) > split.MAX_RECORD_BYTES:
                raise BadFile(f"the header is longer than {split.MAX_RECORD_BYTES} bytes")
    if scanner.offset > begin:
        yield begin, scanner.offset, bytes(pending) if keep else b"x"


def outcome(plan, data: bytes, max_rows: int, max_bytes: int):
    try:
        columns, chunks = plan(io.BytesIO(data), SPEC, max_rows, max_bytes)
    except BadFile as exc:
        return ("BadFile", str(exc).split(":\n")[0])  # header problems are listed the same way
    return columns, chunks


def random_row(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.08:
        return b""  # a blank line
    if roll < 0.12:
        return rng.choice([b"  ", b"\t", b" \r"])
    if roll < 0.2:
        return b'u1,2.5,books,mobile,US,3,4,5,"a,b\nc ""quoted"" ' + b"x" * rng.randint(0, 40) + b'"'
    if roll < 0.23:
        return b"u2," + b"9" * rng.randint(200, 700)  # long enough to pass MAX_RECORD_BYTES at times
    return b"u%d,%d.5,toys,desktop,DE,%d,%d,0,a%d@example.com" % (
        rng.randint(0, 99), rng.randint(0, 999), rng.randint(1, 9), rng.randint(0, 23), rng.randint(0, 9)
    )


def random_file(rng: random.Random) -> bytes:
    first = rng.choice([HEADER, HEADER, HEADER, HEADER, b"", b"  ", HEADER + b"\r"])
    end = rng.choice([b"\n", b"\r\n"])
    rows = [random_row(rng) for _ in range(rng.randint(0, 120))]
    if rng.random() < 0.1:
        rows = [b""] * rng.randint(0, 5) + rows  # blank lines before the first row
    data = end.join([first, *rows])
    return data + end if rng.random() < 0.7 else data


@pytest.mark.parametrize("seed", range(40))
def test_the_plan_is_the_one_record_by_record_planning_gives(seed, monkeypatch):
    rng = random.Random(seed)
    monkeypatch.setattr(split, "READ_BLOCK", rng.choice([1, 7, 64, 300, 4096]))
    monkeypatch.setattr(split, "MAX_RECORD_BYTES", rng.choice([500, 5000]))
    for _ in range(25):
        data = random_file(rng)
        max_rows, max_bytes = rng.randint(1, 40), rng.randint(1, 3000)
        assert outcome(plan_chunks, data, max_rows, max_bytes) == outcome(
            reference_plan, data, max_rows, max_bytes
        ), data


def test_chunks_cover_the_file_after_the_header_and_count_every_record():
    rows = [b"u%d,1.5,toys,desktop,DE,3,4,0,a@example.com" % i for i in range(10_000)]
    data = b"\n".join([HEADER, *rows]) + b"\n"
    columns, chunks = plan_chunks(io.BytesIO(data), SPEC, 1_000, 30_000)
    assert columns[0] == "user_id"
    assert chunks[0].start == len(HEADER) + 1 and chunks[-1].end == len(data)
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:], strict=False))
    assert sum(c.rows for c in chunks) == 10_000
    assert [c.first_row for c in chunks] == [2 + sum(c.rows for c in chunks[:i]) for i in range(len(chunks))]
    assert all(c.rows <= 1_000 and c.end - c.start <= 30_000 for c in chunks)


class ReferenceScanner(RowScanner):
    """RowScanner.feed as it was: one find() per newline."""

    def feed(self, block: bytes) -> list[int]:
        ends: list[int] = []
        n, i = len(block), 0
        next_quote = -2
        while i < n:
            if self.quote_pending:
                self.quote_pending = False
                if block[i] == ord('"'):
                    i += 1
                    continue
                self.in_quotes = False
            if self.in_quotes:
                j = block.find(b'"', i)
                if j < 0:
                    i = n
                    break
                i = j + 1
                self.quote_pending = True
                continue
            if next_quote != -1 and next_quote < i:
                next_quote = block.find(b'"', i)
            newline = block.find(b"\n", i)
            if newline >= 0 and (next_quote < 0 or newline < next_quote):
                ends.append(self.offset + newline + 1)
                i = newline + 1
                continue
            if next_quote < 0:
                i = n
                break
            before = block[next_quote - 1] if next_quote > 0 else self.last_byte
            if before in (ord(","), ord("\n")):
                self.in_quotes = True
            i = next_quote + 1
        if n:
            self.last_byte = block[-1]
        self.offset += n
        return ends


def quote_soup(rng: random.Random) -> bytes:
    pieces = [b"a", b",", b"\n", b"\r\n", b'"', b'""', b'"x,y"', b'b"c', b" ", b"\n\n", b"123"]
    return b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 400)))


@pytest.mark.parametrize("seed", range(30))
def test_the_scanner_finds_the_record_ends_it_found_one_newline_at_a_time(seed):
    rng = random.Random(seed)
    for _ in range(20):
        data = random_file(rng) if rng.random() < 0.5 else quote_soup(rng)
        size = rng.choice([1, 2, 5, 64, 1000])
        blocks = [data[i : i + size] for i in range(0, len(data), size)]
        new, old = RowScanner(17), ReferenceScanner(17)
        assert [new.feed(b) for b in blocks] == [old.feed(b) for b in blocks], data
        state = ("in_quotes", "quote_pending", "offset", "last_byte")
        assert [getattr(new, a) for a in state] == [getattr(old, a) for a in state]
