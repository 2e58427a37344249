"""The model server's CSV fast path gives exactly what the csv.reader path gives, or declines.

`InputSchema._csv_rows_fast` splits a plain body with str.split; `_csv_rows_slow` reads any
body with csv.reader and names every problem. For each body here, the fast path either
returns None or the very Rows the slow path returns (same dtypes, floats bit for bit), and
`from_csv` as a whole returns the slow path's Rows or raises its Refusal.
"""

from __future__ import annotations

import csv
import random
from typing import Any

import numpy as np
import pytest

from inferline.spec import ModelSpec, load_spec
from model_artifacts.serving.payload import NUMBER, InputSchema, Refusal, Rows

MAX_INSTANCES = 25
BOM = "\ufeff"

# Numbers as clients write them; each one is a float() the two paths must agree on.
NUMBER_CELLS = ["0", "-0.0", "-0", "12", "3.25", "1e3", "1E-5", "+7", ".5", "5.", "59.999", "0.1"]
# Cells that are odd, wrong or both, for any column.
DIRTY_CELLS = [
    "", " ", " 1", "1 ", "\t2", "1_0", "_1", "True", "true", "FALSE", "0", "1", "nan", "NaN", "inf",
    "-inf", "Infinity", "1e400", "-1e400", "1e-400", "0x10", "١", "١٢.٥", "１２", "abc", " books",
    "books ", "é", "-", "\x0b", "\x0c", "\x1c", "\u2028", "\x85", '"books"', 'a"b', '""', "a\rb",
    "\x00", "1\x00",
]  # fmt: skip
BOOL_CELLS = ["true", "false", "TRUE", "False", "1", "0", " true", "false ", "yes", "", "2"]
EXTRA_COLUMNS = ["user_id", "note", "email"]


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return load_spec("purchase-propensity")


@pytest.fixture(scope="module")
def schema(spec) -> InputSchema:
    return InputSchema(spec, max_instances=MAX_INSTANCES)


@pytest.fixture(scope="module")
def bool_schema(spec) -> InputSchema:
    data = spec.model_dump(mode="json")
    data["stored_features"]["is_member"] = {"type": "bool", "default": False}
    return InputSchema(ModelSpec.model_validate(data), max_instances=MAX_INSTANCES)


# -- comparing the two paths ------------------------------------------------------------------


def outcome(call, *args) -> Rows | tuple:
    """The Rows a path returns, or its Refusal as (status, error, message, details)."""
    try:
        return call(*args)
    except Refusal as refused:
        return (refused.status, refused.error, refused.message, refused.details)


def assert_same_rows(got: Rows, want: Rows) -> None:
    assert got.count == want.count
    assert list(got.columns) == list(want.columns)
    for name, column in got.columns.items():
        expected = want.columns[name]
        assert column.dtype == expected.dtype, name
        assert column.shape == expected.shape == (want.count,), name
        if column.dtype == np.float64:
            assert column.tobytes() == expected.tobytes(), name  # bit for bit: -0.0 is not 0.0
        else:
            assert [(type(v), v) for v in column] == [(type(v), v) for v in expected], name


def check(schema: InputSchema, body: bytes) -> tuple[bool, bool]:
    """Assert the fast path agrees with the slow path on `body`; return (fast path took it,
    the slow path accepted it)."""
    text = body.decode("utf-8-sig")
    slow = outcome(schema._csv_rows_slow, text)
    fast = schema._csv_rows_fast(text)
    if fast is not None:
        assert isinstance(slow, Rows), f"the fast path accepted what the slow path refuses: {slow}"
        assert_same_rows(fast, slow)
    whole = outcome(schema.from_csv, body)
    if isinstance(slow, Rows):
        assert isinstance(whole, Rows), whole
        assert_same_rows(whole, slow)
    else:
        assert whole == slow
    return fast is not None, isinstance(slow, Rows)


# -- bodies -----------------------------------------------------------------------------------


def clean_cell(rnd: random.Random, spec: ModelSpec, schema: InputSchema, name: str) -> str:
    kind = schema.kinds.get(name)
    if kind == NUMBER:
        roll = rnd.random()
        if roll < 0.3:
            return str(rnd.randint(0, 60))
        if roll < 0.6:
            return repr(rnd.uniform(0, 60))
        if roll < 0.8:
            return f"{rnd.uniform(-5, 60):.3f}"
        return rnd.choice(NUMBER_CELLS)
    if kind == "bool":
        return rnd.choice(["true", "false", "TRUE", "False", "1", "0"])
    field = spec.request.fields.get(name)
    if field is not None and field.allowed:
        return str(rnd.choice(field.allowed))
    return rnd.choice(["u-1", "x", "someone@example.com", "a b", "ü"])


def table(rnd: random.Random, spec: ModelSpec, schema: InputSchema) -> tuple[list[str], list[list[str]]]:
    """A valid header (model inputs in any order, maybe extra columns) and valid rows."""
    header = list(schema.names) + rnd.sample(EXTRA_COLUMNS, rnd.randint(0, 2))
    rnd.shuffle(header)
    rows = [
        [clean_cell(rnd, spec, schema, name) for name in header] for _ in range(rnd.randint(1, MAX_INSTANCES))
    ]
    return header, rows


def csv_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    return ([",".join(header)] if header else []) + [",".join(row) for row in rows]


def render(rnd: random.Random, lines: list[str]) -> bytes:
    end = "\r\n" if rnd.random() < 0.3 else "\n"  # csv.writer's default, or LF
    text = end.join(lines) + (end if rnd.random() < 0.7 else "")
    if rnd.random() < 0.2:
        text = BOM + text
    return text.encode()


def dirty_cell(rnd: random.Random, bools: bool) -> str:
    return rnd.choice(BOOL_CELLS if bools and rnd.random() < 0.3 else DIRTY_CELLS)


def mutate(rnd: random.Random, schema: InputSchema, header: list[str], rows: list[list[str]]) -> list[str]:
    """The body's lines after one to three changes that may or may not make it invalid."""
    header, rows = list(header), [list(row) for row in rows]
    line_edits: list[str] = []
    for _ in range(rnd.randint(1, 3)):
        change = rnd.randrange(14)
        row = rnd.choice(rows)
        if change <= 3:  # an odd cell anywhere
            if row:
                row[rnd.randrange(len(row))] = dirty_cell(rnd, "bool" in schema.kinds.values())
        elif change == 4:  # a cell too many
            row.insert(rnd.randrange(len(row) + 1), rnd.choice(["1", "", "books"]))
        elif change == 5:  # a cell too few
            if row:
                del row[rnd.randrange(len(row))]
        elif change == 6:  # no header: the columns in spec order, or just the rows as they are
            if rnd.random() < 0.5 and set(schema.names) <= set(header):
                at = [header.index(n) for n in schema.names]
                rows = [[r[i] for i in at if i < len(r)] for r in rows]
            header = []
        elif change == 7:  # a model input missing from the header (and its cells)
            present = [name for name in schema.names if name in header]
            drop = header.index(rnd.choice(present)) if present else 0
            header, rows = header[:drop] + header[drop + 1 :], [r[:drop] + r[drop + 1 :] for r in rows]
        elif change == 8:  # a model input named twice
            if header:
                header.append(rnd.choice(schema.names))
                rows = [[*r, rnd.choice(r or ["1"])] for r in rows]
        elif change == 9:  # a header cell renamed
            if header:
                header[rnd.randrange(len(header))] = rnd.choice(["Price", " price", "x", ""])
        elif change == 10:
            line_edits.append(rnd.choice(["blank", "spaces", "leading blank", "trailing blanks"]))
        elif change == 11:
            line_edits.append("crlf")
        elif change == 12:  # more rows than the limit
            rows = rows * (MAX_INSTANCES // len(rows) + 1)
        else:
            line_edits.append("header only")
    if "header only" in line_edits:
        rows = []
    lines = csv_lines(header, rows)
    for edit in line_edits:
        if edit == "blank":
            lines.insert(rnd.randrange(len(lines) + 1), "")
        elif edit == "spaces":
            lines.insert(rnd.randrange(len(lines) + 1), rnd.choice([" ", "\t", " , "]))
        elif edit == "leading blank":
            lines.insert(0, "")
        elif edit == "trailing blanks":
            lines += ["", ""]
        elif edit == "crlf":
            lines = [line + "\r" for line in lines]
    return lines


# -- tests ------------------------------------------------------------------------------------


def test_plain_bodies_take_the_fast_path_and_get_the_slow_paths_rows(spec, schema, bool_schema):
    rnd = random.Random(20240601)
    for target in (schema, bool_schema):
        for _ in range(150):
            header, rows = table(rnd, spec, target)
            assert check(target, render(rnd, csv_lines(header, rows))) == (True, True)


def test_odd_bodies_get_the_slow_paths_rows_or_refusal(spec, schema, bool_schema):
    rnd = random.Random(7)
    seen = {(fast, valid): 0 for fast in (True, False) for valid in (True, False)}
    for target in (schema, bool_schema):
        for _ in range(1500):
            header, rows = table(rnd, spec, target)
            seen[check(target, render(rnd, mutate(rnd, target, header, rows)))] += 1
    assert seen[True, False] == 0
    # Both paths had work: odd bodies the fast path took, and ones it left to csv.reader.
    assert min(seen[True, True], seen[False, True], seen[False, False]) > 100, seen


@pytest.mark.parametrize("cell", sorted(set(NUMBER_CELLS + DIRTY_CELLS)), ids=ascii)
def test_any_one_number_cell_reads_as_the_slow_path_reads_it(spec, schema, cell):
    header, rows = table(random.Random(3), spec, schema)
    rows[-1][header.index("price")] = cell
    body = "\n".join(csv_lines(header, rows)).encode()
    check(schema, body)
    if '"' not in cell and "\r" not in cell and "\x00" not in cell:
        try:
            number = float(cell)
        except ValueError:
            number = float("nan")
        fast = schema._csv_rows_fast(body.decode())
        assert (fast is not None) == np.isfinite(number)  # float() decides, as on the slow path
        if fast is not None:
            assert fast.columns["price"][-1:].tobytes() == np.float64(number).tobytes()


BODIES = {
    "header only": "{header}\n",
    "header and blank lines": "{header}\n\n\n",
    "no rows": "\n\n",
    "nothing": "",
    "blank line between rows": "{header}\n{row}\n\n{row}\n",
    "spaces line between rows": "{header}\n{row}\n  \n{row}\n",
    "blank line before the header": "\n{header}\n{row}\n",
    "no header": "{row}\n{row}\n",
    "CRLF": "{header}\r\n{row}\r\n",
    "a quoted row": '{header}\n"{row}"\n',
    "the header in quotes": '"{header}"\n{row}\n',
    "a BOM": "\ufeff{header}\n{row}\n",
    "two BOMs": "\ufeff\ufeff{header}\n{row}\n",
    "no final newline": "{header}\n{row}",
    "a trailing comma": "{header}\n{row},\n",
    "a header with a trailing comma": "{header},\n{row},\n",
}


@pytest.mark.parametrize("shape", BODIES.values(), ids=BODIES.keys())
def test_bodies_of_every_shape_agree(spec, schema, shape):
    header, rows = table(random.Random(5), spec, schema)
    check(schema, shape.format(header=",".join(header), row=",".join(rows[0])).encode())


def test_crlf_and_mixed_line_ends_take_the_fast_path(spec, schema):
    header, rows = table(random.Random(9), spec, schema)
    head, row = ",".join(header), ",".join(rows[0])
    for body in (f"{head}\r\n{row}\r\n", f"{head}\r\n{row}\n{row}", f"{head}\n{row}\r\n{row}\r\n"):
        assert check(schema, body.encode()) == (True, True), repr(body)
    for body in (f"{head}\r{row}\r", f"{head}\r\n{row}\r", f"{head}\n{row}\r\r\n"):  # a lone CR
        assert check(schema, body.encode())[0] is False, repr(body)


def test_a_blank_line_is_skipped_even_where_it_has_the_right_comma_count(spec):
    """One model input: a blank line has the header's (zero) commas, and csv.reader skips it."""
    schema = InputSchema(spec, max_instances=MAX_INSTANCES)
    schema.names, schema.kinds = ["price"], {"price": NUMBER}
    for body in ["price\n1\n\n2\n", "price\n\n1\n", "price\n1\n\n", "price\n1\n \n", "price\n1\n2"]:
        check(schema, body.encode())
    assert schema._csv_rows_fast("price\n1\n\n2\n") is None
    assert schema.from_csv(b"price\n1\n\n2\n").columns["price"].tolist() == [1.0, 2.0]


@pytest.fixture
def small_field_limit() -> Any:
    limit = csv.field_size_limit()
    csv.field_size_limit(60)
    try:
        yield 60
    finally:
        csv.field_size_limit(limit)


def test_a_cell_over_csvs_field_limit_is_the_slow_paths_error(spec, schema, small_field_limit):
    header, rows = table(random.Random(9), spec, schema)
    rows = [list(rows[0]) for _ in range(4)]
    check(schema, "\n".join(csv_lines(header, rows)).encode())  # lines over 60 characters, cells not
    rows[2][header.index("category")] = "b" * (small_field_limit + 1)
    body = "\n".join(csv_lines(header, rows)).encode()
    check(schema, body)
    with pytest.raises(Refusal, match="field larger than field limit"):
        schema.from_csv(body)
