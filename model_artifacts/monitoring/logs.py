"""Read one model's window of production data from the data bucket into compact columns.

    predictions   predictions/model=<m>/dt=<d>/*.jsonl  (online: one object per request;
                  batch: one per chunk), the lines whose created_at is in [since, until)
    ground truth  ground-truth/model=<m>/dt=<d>/*.jsonl  (by the date it arrived: from the
                  window's first day until now), the newest line per prediction id
    refusals      refusals/model=<m>/dt=<d>/*.jsonl      (refused requests and batch rows)

Objects are fetched in parallel, a bounded number of bytes ahead of the parser, and parsed as
they arrive, in key order. Lines are parsed one at a time from the object's text; each line's
values are kept as they are and become numpy columns a block at a time (categories as integer
codes), converted column by column, so memory grows with the rows kept, not the JSON read: a
million predictions take a few hundred MB.
"""

from __future__ import annotations

import json
import math
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter

import numpy as np

from inferline.ground_truth import line_order
from inferline.spec import ModelSpec

# Parallel GETs (boto3 clients are thread-safe). Against the embedded AWS, 4 read a day's logs
# faster than 8 or 16, with less CPU on both sides: more threads contend for the interpreter
# with the parser here and with each other in the server (bench/RESULTS_MONITORING.md).
READERS = 4
AHEAD_BYTES = 96 * 1024 * 1024  # fetched ahead of the parser (a batch chunk's log is 30-40 MB)
LOOKAHEAD = 4096  # objects listed ahead of the parser
QUEUED = 256  # GETs queued for the readers: enough to keep them busy while a large object is parsed
BLOCK = 50_000  # rows kept as Python values before they become numpy columns
ONLINE, BATCH = 0, 1
_DECODER = json.JSONDecoder()
_NOT_FOUND = object()


@dataclass
class Categorical:
    """A categorical column as codes into `values` (-1: missing)."""

    codes: np.ndarray
    values: list[str]

    def strings(self) -> np.ndarray:
        lookup = np.array([*self.values, None], dtype=object)
        return lookup[self.codes]  # -1 picks the None at the end


@dataclass
class Window:
    """The window's predictions, one row each, column by column."""

    since: datetime
    until: datetime
    n: int = 0
    versions: list[str] = field(default_factory=list)
    version: np.ndarray = field(default_factory=lambda: np.zeros(0, "int16"))
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, "int8"))
    created: np.ndarray = field(default_factory=lambda: np.zeros(0, "float64"))  # epoch seconds
    latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, "float32"))
    entity_known: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    score: np.ndarray = field(default_factory=lambda: np.zeros(0, "float64"))
    label: Categorical = field(default_factory=lambda: Categorical(np.zeros(0, "int32"), []))
    actual: np.ndarray = field(default_factory=lambda: np.zeros(0, "int16"))  # class index, -1 none
    label_delay_s: np.ndarray = field(default_factory=lambda: np.zeros(0, "float32"))  # NaN: none
    numeric: dict[str, np.ndarray] = field(default_factory=dict)  # NaN: missing
    categorical: dict[str, Categorical] = field(default_factory=dict)
    online_requests: Counter = field(default_factory=Counter)  # version -> online requests
    batch_jobs: set = field(default_factory=set)  # batch job ids
    objects: int = 0
    bytes: int = 0
    ground_truth_lines: int = 0
    ground_truth_unmatched: int = 0  # actuals whose prediction is not in the window
    skipped_lines: int = 0  # lines that are not predictions of this model (never expected)

    def mask(self, version: str | None) -> np.ndarray:
        if version is None or version not in self.versions:
            return np.zeros(self.n, bool)
        return self.version == self.versions.index(version)


@dataclass
class Refusals:
    """Refused requests and batch rows in the window."""

    online_requests: int = 0
    batch_rows: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_field: Counter = field(default_factory=Counter)  # (field, problem) -> count
    by_day: Counter = field(default_factory=Counter)


def partition_objects(
    s3, bucket: str, prefix: str, first: datetime, last: datetime
) -> Iterator[tuple[str, int]]:
    """(key, size) of the objects in the dt= partitions from `first`'s date to `last`'s (one
    listing per day)."""
    day = first.date()
    while day <= last.date():
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}dt={day}/")
        for page in pages:
            yield from ((obj["Key"], int(obj.get("Size") or 0)) for obj in page.get("Contents", []))
        day += timedelta(days=1)


def fetch(s3, bucket: str, objects: Iterable[tuple[str, int]]) -> Iterator[bytes]:
    """The bodies of the objects (key, size), in order, fetched READERS at a time ahead of the
    consumer: up to QUEUED GETs, AHEAD_BYTES of objects by their listed sizes (and the next one
    whatever its size) and LOOKAHEAD objects. An object that does not fit waits for room, in
    order, while the objects listed after it are fetched if they fit: the many small online
    objects of a day arrive while its large batch ones are parsed. The next object is never
    left queued behind others: not started yet, it is fetched on a thread of its own. The
    listing is read as the GETs need it."""

    def get(key: str) -> bytes:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    listing = iter(objects)
    window: deque[list] = deque()  # [key, size, future or None] of each object not yet yielded
    waiting: deque[list] = deque()  # the window's entries not fetched yet, in order
    running: deque = deque()  # GETs started, but the first ones done
    held = 0  # listed bytes of the window's entries fetched or being fetched

    def fits(entry: list) -> bool:
        return entry is window[0] or held + entry[1] <= AHEAD_BYTES

    def start(entry: list) -> None:
        nonlocal held
        entry[2] = pool.submit(get, entry[0])
        running.append(entry[2])
        held += entry[1]

    pool, next_one = ThreadPoolExecutor(READERS), ThreadPoolExecutor(1)
    try:
        while True:
            while running and running[0].done():
                running.popleft()
            while waiting and len(running) < QUEUED and fits(waiting[0]):
                start(waiting.popleft())
            while len(window) < LOOKAHEAD and len(running) < QUEUED:
                following = next(listing, None)
                if following is None:
                    break
                window.append(entry := [*following, None])
                if fits(entry):
                    start(entry)
                else:
                    waiting.append(entry)
            if not window:
                return
            if window[0][2] is None:  # the queue was full
                start(waiting.popleft())
            key, size, future = window.popleft()
            if future.cancel():  # still queued behind others
                future = next_one.submit(get, key)
            body = future.result()
            held -= size
            yield body
    finally:  # also when the consumer stops early: the GETs not started are dropped
        pool.shutdown(cancel_futures=True)
        next_one.shutdown(cancel_futures=True)


def read_ground_truth(
    s3, bucket: str, spec: ModelSpec, since: datetime, now: datetime
) -> dict[str, tuple[int, float]]:
    """prediction_id -> (class index, seconds from prediction to label) for every actual
    that arrived from `since`'s day until `now`: each id's newest line (its sequence), a tie
    keeping the later line (inferline.ground_truth.latest_actuals's rule, applied as the lines
    arrive, so that one small tuple per id is held rather than every line)."""
    objects = partition_objects(s3, bucket, f"ground-truth/model={spec.name}/", since, now)
    classes = {str(c): i for i, c in enumerate(spec.target.classes)}
    newest: dict[str, tuple[int | None, float]] = {}
    recorded_of: dict[str, str] = {}
    texts: dict[str, str] = {}  # one copy of each order text (lines without a sequence share one)
    times: dict[str, datetime] = {}

    def when(text) -> datetime:
        found = times.get(text)
        if found is None:
            found = times[text] = datetime.fromisoformat(text)
        return found

    for body in fetch(s3, bucket, objects):
        for raw in body.splitlines():
            if not raw:
                continue
            line = json.loads(raw)
            pid = line.get("prediction_id")
            recorded = line_order(line)
            seen = recorded_of.get(pid)
            if seen is not None and recorded < seen:
                continue
            recorded_of[pid] = texts.setdefault(recorded, recorded)
            index = classes.get(str(line.get("actual")))
            delay = math.nan
            if index is not None:
                try:
                    delay = (when(line["recorded_at"]) - when(line["predicted_at"])).total_seconds()
                except (KeyError, TypeError, ValueError):
                    delay = math.nan
            newest[pid] = (index, delay)
    recorded_of.clear()
    return {pid: value for pid, value in newest.items() if value[0] is not None}


def read_window(
    s3, bucket: str, spec: ModelSpec, since: datetime, until: datetime, now: datetime | None = None
) -> Window:
    """Every logged prediction of `spec`'s model created in [since, until), with its actual."""
    actuals = read_ground_truth(s3, bucket, spec, since, now or until)
    window = Window(since=since, until=until)
    reader = _Reader(spec, window, actuals, since.isoformat(), until.isoformat())
    objects = partition_objects(s3, bucket, f"predictions/model={spec.name}/", since, until)
    for body in fetch(s3, bucket, objects):
        window.objects += 1
        window.bytes += len(body)
        reader.read(body)
    reader.finish()
    window.ground_truth_lines = len(actuals)
    window.ground_truth_unmatched = len(actuals) - reader.matched
    return window


def read_refusals(s3, bucket: str, spec: ModelSpec, since: datetime, until: datetime) -> Refusals:
    out = Refusals()
    low, high = since.isoformat(), until.isoformat()
    objects = partition_objects(s3, bucket, f"refusals/model={spec.name}/", since, until)
    for body in fetch(s3, bucket, objects):
        for line in body.splitlines():
            if not line:
                continue
            record = json.loads(line)
            if not low <= record.get("created_at", "") < high:
                continue
            refused = int(record.get("refused", 1))
            if record.get("source") == "batch":
                out.batch_rows += refused
            else:
                out.online_requests += refused
            out.by_status[int(record.get("status", 400))] += refused
            out.by_day[record["created_at"][:10]] += refused
            for p in record.get("problems", []):
                out.by_field[(p.get("field"), p.get("problem"))] += int(p.get("count", 1))
    return out


def _lines(body: bytes) -> Iterator[dict]:
    """The JSON value of each non-empty line of `body`, as json.loads reads the line's bytes
    (the same values, or the same error), parsed in place from the decoded text."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        text = None
    if text is None:
        yield from (json.loads(line) for line in body.split(b"\n") if line)
        return
    decode = _DECODER.raw_decode
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", start)
        if end < 0:
            end = size
        if end > start:
            try:
                value, stop = decode(text, start)
            except ValueError:
                stop = -1
            if stop != end:  # leading or trailing whitespace, or not one JSON value
                value = json.loads(text[start:end].encode())
            yield value
        start = end + 1


class _Reader:
    """Parses log lines into a Window: each kept line's values as they are, one tuple per row;
    every BLOCK rows, the block's columns converted to numpy (categories coded) at once."""

    def __init__(self, spec: ModelSpec, window: Window, actuals: dict, low: str, high: str):
        self.spec, self.window, self.actuals, self.low, self.high = spec, window, actuals, low, high
        self.numeric = list(spec.numeric_inputs)
        # categorical model inputs, then slice fields that are not model inputs (from the request)
        self.categorical = list(spec.categorical_inputs)
        self.request_only = [s for s in spec.evaluation.slices if s not in spec.model_inputs]
        self.features = [*self.numeric, *self.categorical]
        self.codes: dict[str, dict] = {name: {} for name in [*self.categorical, *self.request_only]}
        self.versions: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.matched = 0
        self.rows: list[tuple] = []
        self.blocks: list[dict[str, np.ndarray]] = []
        self.created_text, self.created = None, 0.0  # the last created_at seen, and its time
        self.request_id = _NOT_FOUND  # the last batch request id seen

    def read(self, body: bytes) -> None:
        w = self.window
        keep = self.rows.append
        low, high, name = self.low, self.high, self.spec.name
        isoparse = datetime.fromisoformat
        features_of = _getter(self.features)
        request_only = self.request_only
        counted = False  # an online request is one object: counted at its first line
        for r in _lines(body):
            created = r.get("created_at", "")
            if not low <= created < high:
                continue
            if r.get("model") != name:
                w.skipped_lines += 1
                continue
            if created != self.created_text:
                self.created = isoparse(created).timestamp()
                self.created_text = created
            version, batch = r.get("model_version"), r.get("source") == "batch"
            if batch:
                request_id = r.get("request_id")
                if request_id != self.request_id:
                    w.batch_jobs.add(str(request_id).rsplit("-", 1)[0])
                    self.request_id = request_id
            elif not counted:
                w.online_requests[str(version)] += 1
                counted = True
            output = r.get("output") or {}
            features = r.get("features") or {}
            try:
                values = features_of(features)
            except KeyError:
                values = tuple(features.get(f) for f in self.features)
            if request_only:
                request = r.get("request") or {}
                values += tuple(request.get(f) for f in request_only)
            keep((version, batch, self.created, r.get("latency_ms"), r.get("entity_known"),
                  output.get("score"), output.get("label"), r.get("prediction_id"), *values))  # fmt: skip
            if len(self.rows) >= BLOCK:  # a batch chunk's log holds up to 50,000 lines
                self._flush()
                keep = self.rows.append

    def _flush(self) -> None:
        if not self.rows:
            return
        columns = list(zip(*self.rows, strict=True))
        self.rows = []
        version, batch, created, latency, known, score, label, pid, *values = columns
        found = list(map(self.actuals.get, pid))
        self.matched += len(found) - found.count(None)
        block = {
            "version": np.array(_coded(self.versions, version, missing=False), "int16"),
            "source": np.array(batch, "int8"),  # BATCH is 1, ONLINE 0
            "created": np.array(created, "float64"),
            "latency": np.array(latency, "float32"),  # None -> NaN
            "known": np.array(list(map(bool, known)), bool),
            "score": _floats(score, strict=True),
            "label": np.array(_coded(self.labels, label, missing=False), "int32"),
            "actual": np.array([-1 if a is None else a[0] for a in found], "int16"),
            "delay": np.array([math.nan if a is None else a[1] for a in found], "float32"),
        }
        names = [*self.features, *self.request_only]
        for name, column in zip(names, values, strict=True):
            if name in self.codes:
                block[name] = np.array(_coded(self.codes[name], column), "int32")
            else:
                block[name] = _floats(column)
        self.blocks.append(block)

    def finish(self) -> None:
        self._flush()
        w, blocks = self.window, self.blocks

        def column(name: str, dtype: str) -> np.ndarray:
            """One column of every block, dropped from the blocks as it is joined."""
            if not blocks:
                return np.zeros(0, dtype)
            joined = np.concatenate([b[name] for b in blocks])
            for b in blocks:
                del b[name]
            return joined

        w.version = column("version", "int16")
        w.n = len(w.version)
        w.versions = list(self.versions)
        w.source = column("source", "int8")
        w.created = column("created", "float64")
        w.latency_ms = column("latency", "float32")
        w.entity_known = column("known", "bool")
        w.score = column("score", "float64")
        w.label = Categorical(column("label", "int32"), list(self.labels))
        w.actual = column("actual", "int16")
        w.label_delay_s = column("delay", "float32")
        for name in self.numeric:
            w.numeric[name] = column(name, "float64")
        for name in [*self.categorical, *self.request_only]:
            w.categorical[name] = Categorical(column(name, "int32"), list(self.codes[name]))
        self.blocks = []


def _getter(names: list[str]):
    """A function of a dict: its values at `names`, as a tuple (KeyError when one is absent)."""
    if len(names) == 1:
        return lambda d: (d[names[0]],)
    return itemgetter(*names) if names else lambda d: ()


_NUMBERS = {float, int, type(None)}


def _floats(values: tuple, strict: bool = False) -> np.ndarray:
    """float64 of each value: None is NaN; a value float() refuses is NaN too, unless `strict`
    (then float() raises)."""
    if set(map(type, values)) <= _NUMBERS:
        return np.array(values, "float64")  # None -> NaN
    if strict:
        return np.array([math.nan if v is None else float(v) for v in values], "float64")
    out = np.empty(len(values), "float64")
    for i, v in enumerate(values):
        try:
            out[i] = math.nan if v is None else float(v)
        except (TypeError, ValueError):
            out[i] = math.nan
    return out


def _coded(table: dict, values: tuple, missing: bool = True) -> list[int]:
    """Each value's code in `table` (new values get the next code, in order of appearance),
    keyed by the value's text; None is -1 when `missing`, else the text "None"."""
    try:
        codes = list(map(table.get, values))
    except TypeError:  # an unhashable value: every value looked up by its text
        codes = [None] * len(values)
    if None in codes:
        for i, code in enumerate(codes):
            if code is None:
                codes[i] = _code(table, values[i], missing)
    return codes


def _code(table: dict, value, missing: bool = True) -> int:
    if value is None and missing:
        return -1
    key = value if isinstance(value, str) else str(value)  # as the baseline's astype(str) writes it
    code = table.get(key)
    if code is None:
        code = table[key] = len(table)
    return code
