"""Read one model's window of production data from the data bucket into compact columns.

    predictions   predictions/model=<m>/dt=<d>/*.jsonl  (online: one object per request;
                  batch: one per chunk), the lines whose created_at is in [since, until)
    ground truth  ground-truth/model=<m>/dt=<d>/*.jsonl  (by the date it arrived: from the
                  window's first day until now), the newest line per prediction id
    refusals      refusals/model=<m>/dt=<d>/*.jsonl      (refused requests and batch rows)

Objects are fetched in parallel and parsed as they arrive; rows become numpy columns a block
at a time (categories as integer codes), so memory grows with the rows kept, not the JSON
read: a million predictions take a few hundred MB.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from inferline.ground_truth import latest_actuals
from inferline.spec import ModelSpec

READERS = 16  # parallel GETs (boto3 clients are thread-safe)
BLOCK = 50_000  # rows parsed into Python lists before they become numpy columns
ONLINE, BATCH = 0, 1


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


def partition_keys(s3, bucket: str, prefix: str, first: datetime, last: datetime) -> Iterator[str]:
    """Keys of the dt= partitions from `first`'s date to `last`'s (one listing per day)."""
    day = first.date()
    while day <= last.date():
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}dt={day}/")
        for page in pages:
            yield from (obj["Key"] for obj in page.get("Contents", []))
        day += timedelta(days=1)


def fetch(s3, bucket: str, keys: list[str]) -> Iterator[bytes]:
    """The objects' bodies, in key order, READERS at a time (a bounded number ahead)."""
    with ThreadPoolExecutor(READERS) as pool:
        pending = []
        for key in keys:
            pending.append(pool.submit(lambda k: s3.get_object(Bucket=bucket, Key=k)["Body"].read(), key))
            if len(pending) >= READERS * 2:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def read_ground_truth(
    s3, bucket: str, spec: ModelSpec, since: datetime, now: datetime
) -> dict[str, tuple[int, float]]:
    """prediction_id -> (class index, seconds from prediction to label) for every actual
    that arrived from `since`'s day until `now` (newest line per id)."""
    keys = list(partition_keys(s3, bucket, f"ground-truth/model={spec.name}/", since, now))
    lines = (json.loads(line) for body in fetch(s3, bucket, keys) for line in body.splitlines() if line)
    classes = {str(c): i for i, c in enumerate(spec.target.classes)}
    out: dict[str, tuple[int, float]] = {}
    for pid, line in latest_actuals(lines).items():
        index = classes.get(str(line.get("actual")))
        if index is None:
            continue
        try:
            delay = (
                datetime.fromisoformat(line["recorded_at"]) - datetime.fromisoformat(line["predicted_at"])
            ).total_seconds()
        except (KeyError, TypeError, ValueError):
            delay = math.nan
        out[pid] = (index, delay)
    return out


def read_window(
    s3, bucket: str, spec: ModelSpec, since: datetime, until: datetime, now: datetime | None = None
) -> Window:
    """Every logged prediction of `spec`'s model created in [since, until), with its actual."""
    actuals = read_ground_truth(s3, bucket, spec, since, now or until)
    window = Window(since=since, until=until)
    reader = _Reader(spec, window, actuals, since.isoformat(), until.isoformat())
    keys = list(partition_keys(s3, bucket, f"predictions/model={spec.name}/", since, until))
    for body in fetch(s3, bucket, keys):
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
    keys = list(partition_keys(s3, bucket, f"refusals/model={spec.name}/", since, until))
    for body in fetch(s3, bucket, keys):
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


class _Reader:
    """Parses log lines into a Window, BLOCK rows at a time."""

    def __init__(self, spec: ModelSpec, window: Window, actuals: dict, low: str, high: str):
        self.spec, self.window, self.actuals, self.low, self.high = spec, window, actuals, low, high
        self.numeric = list(spec.numeric_inputs)
        # categorical model inputs, then slice fields that are not model inputs (from the request)
        self.categorical = list(spec.categorical_inputs)
        self.request_only = [s for s in spec.evaluation.slices if s not in spec.model_inputs]
        self.codes: dict[str, dict] = {name: {} for name in [*self.categorical, *self.request_only]}
        self.versions: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.matched = 0
        self._reset()
        self.blocks: list[dict[str, np.ndarray]] = []

    def _reset(self) -> None:
        self.rows: dict[str, list] = {
            name: []
            for name in (
                "version", "source", "created", "latency", "known", "score", "label", "actual", "delay",
                *self.numeric, *self.categorical, *self.request_only,
            )
        }  # fmt: skip

    def read(self, body: bytes) -> None:
        rows, w = self.rows, self.window
        codes = self.codes
        loads, isoparse = json.loads, datetime.fromisoformat
        numeric, categorical, request_only = self.numeric, self.categorical, self.request_only
        counted = False  # an online request is one object: counted at its first line
        for line in body.split(b"\n"):
            if not line:
                continue
            r = loads(line)
            created = r.get("created_at", "")
            if not self.low <= created < self.high:
                continue
            if r.get("model") != self.spec.name:
                w.skipped_lines += 1
                continue
            version = str(r.get("model_version"))
            if version not in self.versions:
                self.versions[version] = len(self.versions)
            rows["version"].append(self.versions[version])
            batch = r.get("source") == "batch"
            rows["source"].append(BATCH if batch else ONLINE)
            if batch:
                w.batch_jobs.add(str(r.get("request_id")).rsplit("-", 1)[0])
            elif not counted:
                w.online_requests[version] += 1
                counted = True
            rows["created"].append(isoparse(created).timestamp())
            latency = r.get("latency_ms")
            rows["latency"].append(math.nan if latency is None else latency)
            rows["known"].append(bool(r.get("entity_known")))
            output = r.get("output") or {}
            score = output.get("score")
            rows["score"].append(math.nan if score is None else float(score))
            label = str(output.get("label"))
            if label not in self.labels:
                self.labels[label] = len(self.labels)
            rows["label"].append(self.labels[label])
            actual = self.actuals.get(r.get("prediction_id"))
            if actual is None:
                rows["actual"].append(-1)
                rows["delay"].append(math.nan)
            else:
                self.matched += 1
                rows["actual"].append(actual[0])
                rows["delay"].append(actual[1])
            features = r.get("features") or {}
            for name in numeric:
                value = features.get(name)
                try:
                    rows[name].append(math.nan if value is None else float(value))
                except (TypeError, ValueError):
                    rows[name].append(math.nan)
            for name in categorical:
                rows[name].append(_code(codes[name], features.get(name)))
            if request_only:
                request = r.get("request") or {}
                for name in request_only:
                    rows[name].append(_code(codes[name], request.get(name)))
        if len(rows["version"]) >= BLOCK:
            self._flush()

    def _flush(self) -> None:
        rows = self.rows
        if not rows["version"]:
            return
        block = {
            "version": np.array(rows["version"], "int16"),
            "source": np.array(rows["source"], "int8"),
            "created": np.array(rows["created"], "float64"),
            "latency": np.array(rows["latency"], "float32"),
            "known": np.array(rows["known"], bool),
            "score": np.array(rows["score"], "float64"),
            "label": np.array(rows["label"], "int32"),
            "actual": np.array(rows["actual"], "int16"),
            "delay": np.array(rows["delay"], "float32"),
        }
        for name in self.numeric:
            block[name] = np.array(rows[name], "float64")
        for name in [*self.categorical, *self.request_only]:
            block[name] = np.array(rows[name], "int32")
        self.blocks.append(block)
        self._reset()

    def finish(self) -> None:
        self._flush()
        w, blocks = self.window, self.blocks

        def column(name: str, dtype: str) -> np.ndarray:
            return np.concatenate([b[name] for b in blocks]) if blocks else np.zeros(0, dtype)

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


def _code(table: dict, value) -> int:
    if value is None:
        return -1
    key = value if isinstance(value, str) else str(value)  # as the baseline's astype(str) writes it
    code = table.get(key)
    if code is None:
        code = table[key] = len(table)
    return code
