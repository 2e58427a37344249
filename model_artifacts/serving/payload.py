"""Request bodies to model inputs: JSON instances or CSV rows, checked field by field.

A body the model cannot score is a Refusal (a 4xx) naming the instance or CSV row and
the field, never an exception from inside pandas or scikit-learn. Valid bodies take a fast
path that checks whole columns at once; only a body with problems is walked value by value,
to list every problem.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np

from inferline.spec import ModelSpec

# How many problems an error lists; the message says how many more there were.
MAX_DETAILS = 50

NUMBER, STRING, BOOL = "number", "string", "bool"
_KIND_OF_TYPE = {"int": NUMBER, "float": NUMBER, "string": STRING, "bool": BOOL}
_NUMBER_TYPES = {int, float}
_CSV_BOOLS = {"true": True, "false": False, "1": True, "0": False}


class Refusal(Exception):
    """A request the server refuses, as the JSON error body the client gets."""

    def __init__(self, status: int, error: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, "details": self.details}


@dataclass(frozen=True)
class Rows:
    """Checked model inputs, column-wise: one numpy array per spec.model_inputs name, numbers
    as float64 and the rest as Python objects, exactly the values `to_frame` would hold."""

    columns: dict[str, np.ndarray]
    count: int


class InputSchema:
    """What the server accepts for one model: each model input and the kind of value it takes."""

    def __init__(self, spec: ModelSpec, max_instances: int):
        types = {n: f.type for n, f in spec.request.fields.items()}
        types |= {n: f.type for n, f in spec.stored_features.items()}
        self.names: list[str] = list(spec.model_inputs)
        self.kinds: dict[str, str] = {n: _KIND_OF_TYPE[types[n]] for n in self.names}
        self.max_instances = max_instances

    # -- JSON: {"instances": [{field: value, ...}, ...]} -----------------------------------

    def from_json(self, body: bytes) -> Rows:
        try:
            payload = json.loads(body)
        except UnicodeDecodeError as exc:
            raise Refusal(400, "invalid_json", f"the body is not UTF-8 text: {exc}") from None
        except json.JSONDecodeError as exc:
            raise Refusal(
                400,
                "invalid_json",
                f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            ) from None
        except (ValueError, RecursionError) as exc:
            raise Refusal(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise Refusal(
                400,
                "invalid_payload",
                f'the body must be a JSON object {{"instances": [...]}}, got {_json_type(payload)}',
            )
        if "instances" not in payload:
            raise Refusal(400, "invalid_payload", 'the body has no "instances": send {"instances": [...]}')
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise Refusal(
                400,
                "invalid_payload",
                f'"instances" must be a list of objects, got {_json_type(instances)}',
            )
        self._check_count(len(instances), "instances")
        try:
            return self._json_columns(instances)
        except (KeyError, TypeError, ValueError, OverflowError):
            pass  # some instance is wrong: find and name every problem
        raise self._invalid("instance", self._json_problems(instances))

    def _json_columns(self, instances: list) -> Rows:
        """Whole columns at once; any exception means: look at the instances one by one."""
        if set(map(type, instances)) != {dict}:
            raise TypeError
        columns = {}
        for name in self.names:
            values = list(map(itemgetter(name), instances))
            columns[name] = _column(values, self.kinds[name])
        return Rows(columns, len(instances))

    def _json_problems(self, instances: list) -> list[dict[str, Any]]:
        problems: list[dict[str, Any]] = []
        for index, instance in enumerate(instances):
            if not isinstance(instance, dict):
                problems.append(
                    {"instance": index, "problem": f"expected an object, got {_json_type(instance)}"}
                )
                continue
            for name in self.names:
                if name not in instance:
                    problem = "missing"
                else:
                    problem = _json_value_problem(instance[name], self.kinds[name])
                if problem:
                    problems.append({"instance": index, "field": name, "problem": problem})
        return problems

    # -- CSV: a header row naming the model inputs, or none and columns in spec order ------

    def from_csv(self, body: bytes) -> Rows:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise Refusal(400, "invalid_csv", f"the body is not UTF-8 text: {exc}") from None
        rows = self._csv_rows_fast(text)
        return rows if rows is not None else self._csv_rows_slow(text)

    def _csv_rows_fast(self, text: str) -> Rows | None:
        """The common body at C speed: a header naming every model input once, then rows of
        plain unquoted cells, lines ending in LF or CRLF. None for anything else (quotes, a lone
        CR, blank lines, no header, a wrong field count, a bad value, ...): `_csv_rows_slow` then
        takes the body and gives the same Rows or names its problems. Where it returns Rows,
        they are the ones `_csv_rows_slow` returns: without quotes, CR or NUL, csv.reader splits
        lines at LF and cells at commas, exactly as str.split does."""
        if "\r" in text:
            # CRLF line ends (csv.writer's default): without quotes csv.reader ends a record at
            # "\r\n" as at "\n". A lone CR (a line end to csv.reader, not to str.split) declines.
            if text.count("\r") != text.count("\r\n"):
                return None
            text = text.replace("\r\n", "\n")
        if '"' in text or "\x00" in text:
            return None
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the final line's end
        if len(lines) < 2 or "" in lines:  # csv.reader skips blank lines: leave them to it
            return None
        if len(text) > csv.field_size_limit() and max(map(len, lines)) > csv.field_size_limit():
            return None  # a cell may be over csv's limit: let csv.reader say so
        header = lines[0].split(",")
        positions = {}
        for name in self.names:
            if header.count(name) != 1:  # missing, repeated, or no header at all
                return None
            positions[name] = header.index(name)
        data = lines[1:]
        width = len(header)
        if len(data) > self.max_instances:
            return None
        if set(map(str.count, data, repeat(","))) != {width - 1}:
            return None
        cells = ",".join(data).split(",")  # row after row, `width` cells each
        columns = {}
        try:
            for name, position in positions.items():
                kind = self.kinds[name]
                if kind == NUMBER:
                    # What _csv_values then _column do, without a list between them or a
                    # type check: float() gives floats only.
                    column = np.fromiter(map(float, cells[position::width]), np.float64, len(data))
                    if not np.isfinite(column).all():
                        return None
                else:
                    column = _column(_csv_values(cells[position::width], kind), kind)
                columns[name] = column
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        return Rows(columns, len(data))

    def _csv_rows_slow(self, text: str) -> Rows:
        """Any body, through csv.reader: its Rows, or a Refusal naming every problem."""
        try:
            rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
        except csv.Error as exc:
            raise Refusal(400, "invalid_csv", f"the body is not valid CSV: {exc}") from None
        if not rows:
            raise Refusal(400, "empty_body", "the CSV body has no rows")
        header = rows[0]
        if set(header) & set(self.names):
            positions = self._header_positions(header)
            rows = rows[1:]
            width = len(header)
        else:
            positions = {name: i for i, name in enumerate(self.names)}
            width = len(self.names)
        if not rows:
            raise Refusal(400, "empty_body", "the CSV body has a header but no data rows")
        self._check_count(len(rows), "rows")
        try:
            return self._csv_columns(rows, positions, width)
        except (KeyError, TypeError, ValueError, OverflowError):
            pass
        raise self._invalid("row", self._csv_problems(rows, positions, width))

    def _header_positions(self, header: list[str]) -> dict[str, int]:
        missing = [name for name in self.names if name not in header]
        if missing:
            raise Refusal(
                400,
                "invalid_csv",
                f"the CSV header lacks model inputs: {', '.join(missing)}",
                [{"row": "header", "field": name, "problem": "missing"} for name in missing],
            )
        repeated = sorted({name for name in self.names if header.count(name) > 1})
        if repeated:
            raise Refusal(
                400,
                "invalid_csv",
                f"the CSV header names a model input more than once: {', '.join(repeated)}",
            )
        return {name: header.index(name) for name in self.names}

    def _csv_columns(self, rows: list[list[str]], positions: dict[str, int], width: int) -> Rows:
        if set(map(len, rows)) != {width}:
            raise ValueError
        by_position = list(zip(*rows, strict=True))
        columns = {}
        for name in self.names:
            cells = by_position[positions[name]]
            columns[name] = _column(_csv_values(cells, self.kinds[name]), self.kinds[name])
        return Rows(columns, len(rows))

    def _csv_problems(
        self, rows: list[list[str]], positions: dict[str, int], width: int
    ) -> list[dict[str, Any]]:
        problems: list[dict[str, Any]] = []
        for index, row in enumerate(rows):
            if len(row) != width:
                problems.append({"row": index, "problem": f"expected {width} values, got {len(row)}"})
                continue
            for name in self.names:
                problem = _csv_cell_problem(row[positions[name]], self.kinds[name])
                if problem:
                    problems.append({"row": index, "field": name, "problem": problem})
        return problems

    # -- shared -----------------------------------------------------------------------------

    def _check_count(self, count: int, what: str) -> None:
        if count == 0:
            raise Refusal(400, "invalid_payload", f"the body has no {what} to score")
        if count > self.max_instances:
            raise Refusal(
                413,
                "too_many_instances",
                f"{count} {what} is more than the limit of {self.max_instances} per request",
            )

    def _invalid(self, unit: str, problems: list[dict[str, Any]]) -> Refusal:
        if not problems:  # the fast path refused something the slow path accepts: a bug
            raise AssertionError("fast and slow input checks disagree")
        shown = "; ".join(_describe(unit, p) for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        details = problems[:MAX_DETAILS]
        if len(problems) > MAX_DETAILS:
            more += f"; details lists the first {MAX_DETAILS}"
        plural = "s" if len(problems) > 1 else ""
        message = f"{len(problems)} problem{plural} in the {unit}s: {shown}{more}"
        return Refusal(400, "invalid_instances", message, details)


def _column(values: list, kind: str) -> np.ndarray:
    """One checked column; raises (TypeError, ValueError, OverflowError) on any bad value."""
    if kind == NUMBER:
        if not set(map(type, values)) <= _NUMBER_TYPES:  # bool is not a number here
            raise TypeError
        column = np.array(values, dtype=np.float64)
        if not np.isfinite(column).all():
            raise ValueError
        return column
    expected = str if kind == STRING else bool
    if set(map(type, values)) != {expected}:
        raise TypeError
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def _csv_values(cells: tuple[str, ...] | list[str], kind: str) -> list:
    if kind == NUMBER:
        return list(map(float, cells))
    if kind == BOOL:
        return [_CSV_BOOLS[cell.strip().lower()] for cell in cells]
    if "" in cells:
        raise ValueError
    return list(cells)


def _json_value_problem(value: Any, kind: str) -> str | None:
    if kind == NUMBER:
        if type(value) not in _NUMBER_TYPES:
            return f"expected a number, got {_json_type(value)}{_shown(value)}"
        try:
            finite = math.isfinite(float(value))
        except OverflowError:
            return f"the number {value} is out of range"
        return None if finite else f"expected a finite number, got {value}"
    if kind == STRING:
        if type(value) is not str:
            return f"expected a string, got {_json_type(value)}{_shown(value)}"
        return None
    if type(value) is not bool:
        return f"expected true or false, got {_json_type(value)}{_shown(value)}"
    return None


def _csv_cell_problem(cell: str, kind: str) -> str | None:
    if cell == "":
        return "missing"
    if kind == NUMBER:
        try:
            finite = math.isfinite(float(cell))
        except ValueError:
            return f"expected a number, got {_shown(cell).strip()}"
        return None if finite else f"expected a finite number, got {cell}"
    if kind == BOOL and cell.strip().lower() not in _CSV_BOOLS:
        return f"expected true or false, got {_shown(cell).strip()}"
    return None


def _describe(unit: str, problem: dict[str, Any]) -> str:
    where = f"{unit} {problem[unit]}"
    if "field" in problem:
        where += f" field '{problem['field']}'"
    return f"{where}: {problem['problem']}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _shown(value: Any) -> str:
    """A short rendering of a scalar the client sent, for an error message."""
    if value is None or isinstance(value, dict | list):
        return ""
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return " " + (text if len(text) <= 40 else text[:37] + "...")
