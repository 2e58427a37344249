"""CSV files as the batch path reads them: record boundaries in raw bytes, the header checked
against the spec, and cells coerced to the spec's types before the online validation runs.

The splitter and the chunk workers find record boundaries with the same scanner, so a chunk
cut by one is read back by the other row for row, even when quoted fields hold commas and
newlines. The scanner follows the csv module's default dialect: a quote opens a quoted field
only at the start of a field, `""` inside one is a literal quote, and a record ends at a
newline outside quotes (CRLF ends with its LF; the CR is stripped with the record).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import Any

from inferline.spec import ModelSpec

_QUOTE = ord('"')
_COMMA = ord(",")
_NEWLINE = ord("\n")
_PLUS_ONE = (1).__add__
BOM = b"\xef\xbb\xbf"


class RowScanner:
    """Offsets where CSV records end, fed the bytes of a file (or a chunk) block by block.

    Constant memory: only the quote state and the last byte of the previous block are kept.
    """

    def __init__(self, offset: int = 0):
        self.offset = offset  # absolute offset of the next byte fed
        self.in_quotes = False
        self.quote_pending = False  # in quotes, the last byte was a quote: `""` or the close?
        self.last_byte = _NEWLINE  # the start of a file is the start of a field

    def feed(self, block: bytes) -> list[int]:
        """Absolute offsets just past each newline that ends a record in this block."""
        ends: list[int] = []
        n, i = len(block), 0
        next_quote = -2  # cached position of the next quote at or after i (-1: none left)
        while i < n:
            if self.quote_pending:
                self.quote_pending = False
                if block[i] == _QUOTE:  # an escaped quote: still inside the field
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
            stop = n if next_quote < 0 else next_quote
            if block.find(b"\n", i, stop) >= 0:
                # Outside quotes every newline up to the next quote ends a record: their
                # offsets at once, from the lengths of the lines between them.
                lines = block[i:stop].split(b"\n")
                ends += accumulate(map(_PLUS_ONE, map(len, lines[:-1])), initial=self.offset + i)
                del ends[-len(lines)]  # the initial value
            if next_quote < 0:
                i = n
                break
            before = block[next_quote - 1] if next_quote > 0 else self.last_byte
            if before in (_COMMA, _NEWLINE):
                self.in_quotes = True
            i = next_quote + 1
        if n:
            self.last_byte = block[-1]
        self.offset += n
        return ends


def record_spans(blocks: Iterable[bytes], start: int = 0) -> Iterator[tuple[int, int]]:
    """(start, end) byte offsets of every record in a stream of blocks, the last record
    included when it has no final newline."""
    scanner = RowScanner(start)
    begin = start
    for block in blocks:
        for end in scanner.feed(block):
            yield begin, end
            begin = end
    if scanner.offset > begin:
        yield begin, scanner.offset


def record_text(raw: bytes) -> str:
    """A record's bytes as text, line ending stripped; UnicodeDecodeError when not UTF-8."""
    return raw.decode("utf-8").rstrip("\r\n")


def shown(raw: bytes) -> str:
    """A record as it can be shown back to a person, bad bytes as \\x escapes."""
    return raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")


def parse_record(text: str) -> list[str]:
    """The fields of one record (csv.Error when it cannot be parsed)."""
    rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    if len(rows) != 1:
        raise csv.Error(f"expected one record, found {len(rows)}")
    return rows[0]


def parse_header(raw: bytes) -> list[str]:
    """The column names of a header record (BOM and CRLF handled); ValueError when unreadable."""
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    try:
        text = record_text(raw)
    except UnicodeDecodeError as exc:
        raise ValueError(f"the header is not UTF-8 text (byte {exc.start})") from None
    try:
        return [name.strip() for name in parse_record(text)] if text.strip() else []
    except csv.Error as exc:
        raise ValueError(f"the header is not a CSV record: {exc}") from None


# A header's problems name its columns; past these limits the list is cut short. The reason
# travels in an email, the job item (DynamoDB's 400 KB item limit) and the logs.
MAX_HEADER_PROBLEMS = 20
MAX_SHOWN_NAME = 40


def header_problems(spec: ModelSpec, columns: list[str]) -> list[str]:
    """Every problem with a header, checked against the spec's request fields (empty: fine).

    A first line that names none of the fields is most likely a data row (the header is
    missing): it is said so without repeating its cells, which may hold personal data."""
    fields = spec.request.fields
    if not columns:
        return ["the file has no header row"]
    if not any(name in fields for name in columns):
        return [
            f"the first line names none of the model's fields ({len(columns)} values): the file "
            "needs a header row naming its columns"
        ]
    problems = []
    seen: set[str] = set()
    for name in columns:
        if name == "":
            problems.append("a column has an empty name")
        elif name in seen:
            problems.append(f"column '{_shown_name(name)}' appears more than once")
        elif name not in fields:
            problems.append(f"unknown column '{_shown_name(name)}'")
        seen.add(name)
    for name, field in fields.items():
        if field.required and name not in seen:
            problems.append(f"missing required column '{name}' ({field.type})")
    if len(problems) > MAX_HEADER_PROBLEMS:
        more = len(problems) - MAX_HEADER_PROBLEMS + 1
        problems = problems[: MAX_HEADER_PROBLEMS - 1] + [f"and {more} more problems"]
    return problems


def _shown_name(name: str) -> str:
    return name if len(name) <= MAX_SHOWN_NAME else name[: MAX_SHOWN_NAME - 3] + "..."


def coerce_row(spec: ModelSpec, row: dict[str, str]) -> dict[str, Any]:
    """CSV text cells as the values validate_instance checks: numbers parsed, empty is missing.

    Text that does not parse stays text, so validation reports it in the online path's words
    ("must be a number, got a string").
    """
    fields = spec.request.fields
    values: dict[str, Any] = {}
    for name, text in row.items():
        if text == "":
            continue
        field = fields.get(name)
        values[name] = parse_cell(text, field.type) if field else text
    return values


def parse_cell(text: str, kind: str) -> Any:
    """A CSV cell as the value it stands for; unparseable text stays text and fails validation
    (batch rows and the feature store's bulk load both read cells through here)."""
    stripped = text.strip()
    try:
        if kind == "int":
            return int(stripped) if stripped.lstrip("+-").isdigit() else float(stripped)
        if kind == "float":
            return float(stripped)
    except ValueError:
        return text
    if kind == "bool":
        return {"true": True, "false": False, "1": True, "0": False}.get(stripped.lower(), text)
    return text


# -- whole columns at once: the batch worker's fast path ------------------------------------

# The csv module refuses a field longer than this (csv.field_size_limit's default).
FIELD_SIZE_LIMIT = 131072
_INT64 = 2**63


def check_columns(
    spec: ModelSpec, columns: list[str], records: list[list[str]]
) -> tuple[dict[str, list[Any]], list[bool]]:
    """coerce_row + validate_instance for many records of the header's width, column by column.

    Returns each column's values (the values validate_instance would clean them to; None where
    the cell is empty) and, per record, whether it passed. The fast path only ever accepts a
    value that the row-by-row path accepts as the same value; anything it is unsure of (an empty
    required cell, text that is not a plain number, a value out of range...) fails the record,
    which the caller then validates row by row for the reasons, in the online path's words.
    """
    ok = [True] * len(records)
    by_column = list(zip(*records, strict=True)) if records else [() for _ in columns]
    values: dict[str, list[Any]] = {}
    for name, cells in zip(columns, by_column, strict=True):
        values[name], bad = _check_column(spec.request.fields[name], list(cells))
        for i in bad:
            ok[i] = False
    return values, ok


def _check_column(field, cells: list[str]) -> tuple[list[Any], list[int]]:
    """(values, indexes of cells the fast path does not accept) for one column."""
    kind = field.type
    bad: list[int] = []
    values: list[Any]
    if "" in cells:  # missing values: an error when required, left out when optional
        present = [i for i, c in enumerate(cells) if c != ""]
        if field.required:
            bad = [i for i, c in enumerate(cells) if c == ""]
        sub_values, sub_bad = _check_column(field, [cells[i] for i in present]) if present else ([], [])
        values = [None] * len(cells)
        for i, v in zip(present, sub_values, strict=True):
            values[i] = v
        return values, sorted(bad + [present[i] for i in sub_bad])
    if kind == "string":
        values = cells
        limit = field.max_length
        if limit is not None and max(map(len, cells), default=0) > limit:
            bad = [i for i, c in enumerate(cells) if len(c) > limit]
        if field.allowed is not None:
            allowed = set(field.allowed)
            if not allowed.issuperset(cells):
                bad = sorted(set(bad) | {i for i, c in enumerate(cells) if c not in allowed})
        return values, bad
    if kind == "bool":
        values = [_BOOLS.get(c.strip().lower()) for c in cells]
        return values, [i for i, v in enumerate(values) if v is None]
    if kind == "float":
        try:
            values = list(map(float, cells))
        except ValueError:
            values, bad = _each(float, cells)
    else:  # int: exactly the text int() and parse_cell both read as that integer
        try:
            if "_" in "\x00".join(cells):
                raise ValueError  # int() reads "1_000"; parse_cell reads it through float
            values = list(map(int, cells))
        except ValueError:
            values, bad = _each(_plain_int, cells)
    lo, hi = field.min, field.max
    if kind == "int":  # check_value cannot tell whether a huge integer is finite
        lo = -_INT64 if lo is None else max(lo, -_INT64)
        hi = _INT64 if hi is None else min(hi, _INT64)
    present = [v for v in values if v is not None] if bad else values
    if present:
        finite = kind == "int" or math.isfinite(sum(present))  # inf or nan anywhere: not finite
        in_range = finite and (lo is None or min(present) >= lo) and (hi is None or max(present) <= hi)
        if not in_range:
            bad = sorted(
                set(bad) | {i for i, v in enumerate(values) if v is not None and not _fits(v, lo, hi)}
            )
    if field.allowed is not None:
        allowed = set(field.allowed)
        bad = sorted(set(bad) | {i for i, v in enumerate(values) if v is not None and v not in allowed})
    return values, bad


_BOOLS = {"true": True, "false": False, "1": True, "0": False}


def _each(parse, cells: list[str]) -> tuple[list[Any], list[int]]:
    values: list[Any] = []
    bad: list[int] = []
    for i, cell in enumerate(cells):
        try:
            values.append(parse(cell))
        except ValueError:
            values.append(None)
            bad.append(i)
    return values, bad


def _plain_int(cell: str) -> int:
    if "_" in cell:
        raise ValueError(cell)
    return int(cell)


def _fits(value: float, lo: float | None, hi: float | None) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return (lo is None or value >= lo) and (hi is None or value <= hi)
