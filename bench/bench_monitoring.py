"""Benchmark one model-monitoring run over a day of logged predictions on the embedded AWS.

    .venv/bin/python bench/bench_monitoring.py                # 1,000,000 predictions, 3 rounds
    .venv/bin/python bench/bench_monitoring.py --rows 20000   # a smoke run (1 round), same measurements

In one run:

  model        the demo model (model_artifacts.train.train on generate_training_frame(20000, 7)
               with the 2,000 users `inferline up` seeds), its model.tar.gz as
               local_runtime.bootstrap.model_archive makes it
  data         one day of logs in the platform's formats (see Composition): online predictions,
               one object per request (prediction_record, as write_prediction_log writes them);
               batch predictions, one object per chunk (the same line fields, "source": "batch",
               batch prediction ids, the job's start as created_at); ground truth for a share of
               them in feedback requests of 1,000 lines (ground_truth_line); refusals, one object
               per refused online request and per batch chunk with refused rows (refusal_record).
               Traffic from model_artifacts.demo_data (the first half of the day at drift 0, the
               second at --drift-late), scores from the model. Generated once and kept in
               bench/.cache/monitoring-<hash>/ (a pack file: not part of the measurement)
  embedded AWS local_runtime.aws_server (moto's server) on a free port, as `inferline up`
               starts it; the tables and buckets from local_runtime.bootstrap; the objects PUT
               into it
  GET rates    the embedded AWS's GETs/s for the online-request objects (one client, one at a
               time; and logs.fetch's parallel GETs) and MB/s for the batch chunk objects
  rounds       each round runs, in turn, two fresh `python bench/bench_monitoring.py --child`
               processes that call model_artifacts.monitoring.run.monitor once, as the
               monitoring job does (write=True; `inferline monitor` runs that job between its
               Prepare and Publish steps): one against the moto server (boto3 S3 client as
               local_runtime.up.local_client makes it), one against the same objects read
               from the pack file by a small S3 stand-in (the data already fetched: what is
               left when the embedded AWS costs nothing). Wall time from spawn to exit; the
               child's peak RSS (its VmHWM) and CPU (os.wait4); moto's CPU from /proc/<pid>/stat
  breakdown    inside the child the module functions monitor() calls are wrapped with timers
               (run.py itself is untouched): load the version, baseline, read ground truth,
               read predictions, read refusals, compute (drift, data and live quality, CBPE,
               service), history, render the report, write; logs.fetch is wrapped to tell the
               time spent waiting for objects from the time spent parsing them

It prints a table and writes bench/results/monitoring.json and bench/RESULTS_MONITORING.md.
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import hashlib
import io
import json
import os
import platform
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
CACHE = BENCH / ".cache"
HOST = "127.0.0.1"
REGION = "us-east-1"
PREFIX = "inferline"  # local_runtime.config's default resource prefix
MODEL = "purchase-propensity"
VERSION = "1"
DEMO_SEED, DEMO_USERS, TRAINING_ROWS = 7, 2_000, 20_000  # as `inferline up` trains the demo model
DAY = datetime(2026, 3, 2, tzinfo=UTC)  # the monitored day: the window is [DAY, DAY + 1 day)
NOW = DAY + timedelta(days=2)  # the run happens a day later: the day's ground truth has arrived
TARGETS = {"wall_s": 60.0, "peak_rss_mb": 1024.0}
GENERATOR_FORMAT = 1  # bump when the generated data changes: a new cache key
FACTS = (  # what generate_day counts
    "online_predictions", "online_requests", "online_objects", "batch_predictions", "batch_jobs",
    "batch_objects", "batch_chunk_rows_max", "ground_truth_lines", "ground_truth_objects",
    "refused_online_requests", "refused_batch_rows", "refusal_objects",
)  # fmt: skip
HAND_WRITTEN = "<!-- bench_monitoring.py rewrites the summary above this line and keeps what follows -->"
# Invalid input, as validation words it (the refusal log keeps field and problem, never a value)
REFUSAL_PROBLEMS = [
    [("price", "must be >= 0")],
    [("category", "must be one of books, electronics, fashion, home, sports, toys, grocery, beauty; "
                  "got 'toasters'")],
    [("device", "is required")],
    [("session_pages", "must be an integer, got a string")],
    [("extra", "unknown field"), ("device", "is required")],
]  # fmt: skip


@dataclass(frozen=True)
class Composition:
    """What the day's logs hold: every figure the generated data follows."""

    rows: int = 1_000_000  # logged predictions in the day (online + batch)
    online_share: float = 0.10  # of the predictions, made online
    request_size: int = 10  # instances per online request: one S3 object per request
    batch_jobs: int = 6  # batch jobs in the day, evenly spaced, sharing the batch rows
    chunk_rows: int = 50_000  # rows of a chunk's input (the split's CHUNK_MAX_ROWS default)
    endpoint_rows: int = 5_000  # rows per endpoint request (ENDPOINT_MAX_ROWS default): one latency
    batch_refused_share: float = 0.002  # batch rows refused for invalid input (in the refusal log)
    online_refused_share: float = 0.05  # online requests refused for invalid input (one object each)
    labeled_share: float = 0.30  # predictions given ground truth, in feedback requests of:
    feedback_size: int = 1_000  # lines per ground-truth object (the feedback API's maximum)
    drift_late: float = 0.5  # demo_data drift of the second half of the day (the first is 0)
    seed: int = 11

    @property
    def online_rows(self) -> int:
        return round(self.rows * self.online_share)

    @property
    def batch_rows(self) -> int:
        return self.rows - self.online_rows

    def key(self) -> str:
        fields = dataclasses.asdict(self) | {"format": GENERATOR_FORMAT, "day": DAY.isoformat()}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


# -- the model ---------------------------------------------------------------------------------


def train_demo_model(model_dir: Path, rows: int = TRAINING_ROWS):
    """The demo model as `inferline up` trains it, saved to model_dir; returns the bundle."""
    from inferline.spec import load_spec
    from model_artifacts.demo_data import generate_training_frame, generate_users
    from model_artifacts.train import train

    users = generate_users(DEMO_USERS, DEMO_SEED)
    bundle = train(load_spec(MODEL), generate_training_frame(rows, DEMO_SEED, users=users), version=VERSION)
    bundle.save(model_dir)
    return bundle


# -- the day's logs ----------------------------------------------------------------------------------


class _World:
    """The demo users (the feature store), the spec and the model: request instances in; their
    features, outputs and drawn labels out."""

    def __init__(self, bundle) -> None:
        from model_artifacts.demo_data import generate_users

        self.spec, self.bundle = bundle.spec, bundle
        self.users = generate_users(DEMO_USERS, DEMO_SEED)
        types = {name: f.type for name, f in self.spec.stored_features.items()}
        cast = {"int": int, "float": float}
        self.stored = {
            u["user_id"]: {n: cast.get(t, str)(u[n]) for n, t in types.items()} for u in self.users
        }
        self.defaults = {n: f.default for n, f in self.spec.stored_features.items()}

    def score(self, requests: list[dict], seed: int, drift: float) -> tuple[list, list, list, Any]:
        """(features, entity known, outputs, actual class) per request, as preprocess and
        postprocess make them; the actual drawn from the demo world at this drift."""
        import numpy as np
        import pandas as pd

        from inferline.outputs import map_scores
        from model_artifacts.bundle import to_frame
        from model_artifacts.demo_data import draw_labels

        spec = self.spec
        features, known = [], []
        for request in requests:
            entity = self.stored.get(request[spec.entity.key])
            merged = request | (entity if entity is not None else self.defaults)
            features.append({name: merged.get(name) for name in spec.model_inputs})
            known.append(entity is not None)
        positive = self.bundle.classes.index(spec.target.classes[-1])
        scores = self.bundle.pipeline.predict_proba(to_frame(spec, features))[:, positive]
        outputs = map_scores(spec, list(spec.target.classes), scores.tolist(), expected=len(requests))
        actual = draw_labels(pd.DataFrame.from_records(features), seed, drift)
        return features, known, outputs, np.asarray(actual)


def _uuid(rng) -> str:
    return str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 65 | int(rng.integers(0, 2**63)), version=4))


def generate_day(comp: Composition, bundle) -> Iterator[tuple[str, bytes]]:
    """(key, body) of every object of the day's logs, in the platform's layouts and formats:
    online predictions and refusals, batch chunks and their refusals, then the ground truth
    (grouped by arrival). The generator's return value (StopIteration.value) counts FACTS."""
    import numpy as np

    from inferline.ground_truth import ground_truth_line
    from inferline.prediction_log import batch_prediction_id, prediction_record
    from inferline.redaction import redact
    from inferline.refusals import count_problems, refusal_record
    from inferline.resources import ground_truth_key, prediction_log_key, refusal_log_key
    from model_artifacts.demo_data import generate_requests

    world = _World(bundle)
    spec = world.spec
    ttl = spec.logging.prediction_ttl_days
    rng = np.random.default_rng([comp.seed, 1])
    labeled: list[tuple[datetime, str, str, int]] = []  # (arrives, prediction id, created_at, actual)
    facts: Counter = Counter(dict.fromkeys(FACTS, 0))

    def dumps(record: dict) -> str:
        return json.dumps(record, separators=(",", ":")) + "\n"

    def drift_at(at: datetime) -> float:
        return 0.0 if at < DAY + timedelta(hours=12) else comp.drift_late

    def label_some(ids: list[str], created: datetime, actual) -> None:
        chosen = np.flatnonzero(rng.random(len(ids)) < comp.labeled_share)
        delays = np.minimum(rng.exponential(4 * 3600, len(chosen)), 23 * 3600) + 60  # seconds
        iso = created.isoformat()
        for i, delay in zip(chosen.tolist(), delays.tolist(), strict=True):
            labeled.append((created + timedelta(seconds=delay), ids[i], iso, int(actual[i])))

    def refusal(
        source: str, request_id: str, at: datetime, refused: int, problems: list
    ) -> tuple[str, bytes]:
        record = refusal_record(
            spec=spec, source=source, request_id=request_id, created_at=at, status=400,
            error="invalid_rows" if source == "batch" else "invalid_request", refused=refused,
            problems=count_problems(spec, problems),
        )  # fmt: skip
        return refusal_log_key(spec.name, at, request_id), dumps(record).encode()

    # online: requests of request_size instances, at times spread over the day
    requests_total = -(-comp.online_rows // comp.request_size)
    seconds = np.sort(rng.uniform(0, 86_400, requests_total))
    halves = [seconds < 43_200, seconds >= 43_200]
    for half, times in enumerate(seconds[mask] for mask in halves):
        sizes = [comp.request_size] * len(times)
        if half == 1 and comp.online_rows % comp.request_size:
            sizes[-1] = comp.online_rows % comp.request_size
        n = sum(sizes)
        drift = 0.0 if half == 0 else comp.drift_late
        instances = generate_requests(n, seed=comp.seed * 100 + half, drift=drift, users=world.users)
        features, known, outputs, actual = world.score(instances, comp.seed * 100 + half, drift)
        requests = redact(spec, instances)
        latency = rng.lognormal(np.log(35.0), 0.4, len(times))
        start = 0
        for t, size, lat in zip(times.tolist(), sizes, latency.tolist(), strict=True):
            at = DAY + timedelta(seconds=t)
            request_id = _uuid(rng)
            ids = [_uuid(rng) for _ in range(size)]
            body = "".join(
                dumps(
                    prediction_record(
                        prediction_id=ids[i],
                        request_id=request_id,
                        model=spec.name,
                        model_version=VERSION,
                        created_at=at,
                        ttl_days=ttl,
                        request=requests[start + i],
                        features=features[start + i],
                        entity_known=known[start + i],
                        output=outputs[start + i],
                        latency_ms=lat,
                    )
                )
                for i in range(size)
            )
            yield prediction_log_key(spec.name, at, request_id), body.encode()
            label_some(ids, at, actual[start : start + size])
            facts["online_requests"] += 1
            facts["online_objects"] += 1
            start += size
        facts["online_predictions"] += n
    # refused online requests: one object each, at times spread over the day
    refused_requests = round(requests_total * comp.online_refused_share / (1 - comp.online_refused_share))
    for t in np.sort(rng.uniform(0, 86_400, refused_requests)).tolist():
        problems = REFUSAL_PROBLEMS[int(rng.integers(len(REFUSAL_PROBLEMS)))]
        yield refusal("online", _uuid(rng), DAY + timedelta(seconds=t), 1, problems)
        facts["refusal_objects"] += 1
        facts["refused_online_requests"] += 1

    # batch: jobs evenly spaced over the day, each cut into chunks of chunk_rows input rows
    per_job = [comp.batch_rows // comp.batch_jobs + (j < comp.batch_rows % comp.batch_jobs)
               for j in range(comp.batch_jobs)]  # fmt: skip
    for j, job_rows in enumerate(per_job):
        started = DAY + timedelta(hours=24 * (j + 0.5) / comp.batch_jobs)
        job_id = _uuid(rng)
        drift, logged, chunk, row = drift_at(started), 0, 0, 2  # CSV row numbers: the header is 1
        while logged < job_rows:
            inputs = comp.chunk_rows
            refused = rng.random(inputs) < comp.batch_refused_share
            keep = np.flatnonzero(~refused)[: job_rows - logged]
            inputs = int(keep[-1]) + 1 if len(keep) else inputs
            refused = refused[:inputs]
            seed = comp.seed * 100_000 + j * 1_000 + chunk
            instances = generate_requests(len(keep), seed=seed, drift=drift, users=world.users)
            features, known, outputs, actual = world.score(instances, seed, drift)
            requests = redact(spec, instances)
            request_id = f"batch-{job_id}-{chunk:06d}"
            ids = [batch_prediction_id(job_id, chunk, row + int(i)) for i in keep.tolist()]
            latency = rng.lognormal(np.log(250.0), 0.3, -(-len(keep) // comp.endpoint_rows))
            body = "".join(
                dumps(
                    prediction_record(
                        prediction_id=ids[i],
                        request_id=request_id,
                        model=spec.name,
                        model_version=VERSION,
                        created_at=started,
                        ttl_days=ttl,
                        request=requests[i],
                        features=features[i],
                        entity_known=known[i],
                        output=outputs[i],
                        latency_ms=float(latency[i // comp.endpoint_rows]),
                        source="batch",
                    )
                )
                for i in range(len(keep))
            )
            yield prediction_log_key(spec.name, started, request_id), body.encode()
            del body
            label_some(ids, started, actual)
            if refused.any():
                kinds = rng.integers(len(REFUSAL_PROBLEMS), size=int(refused.sum()))
                problems = [p for k in kinds.tolist() for p in REFUSAL_PROBLEMS[k][:1]]
                yield refusal("batch", request_id, started, int(refused.sum()), problems)
                facts["refusal_objects"] += 1
                facts["refused_batch_rows"] += int(refused.sum())
            facts["batch_objects"] += 1
            facts["batch_predictions"] += len(keep)
            facts["batch_chunk_rows_max"] = max(facts["batch_chunk_rows_max"], len(keep))
            logged += len(keep)
            row += inputs
            chunk += 1
        facts["batch_jobs"] += 1

    # ground truth: feedback requests of feedback_size lines, in the order the actuals arrive
    labeled.sort()
    for start in range(0, len(labeled), comp.feedback_size):
        group = labeled[start : start + comp.feedback_size]
        recorded = group[-1][0]  # a request is recorded when it arrives: after all of its actuals
        request = _uuid(rng)
        at = recorded.isoformat(timespec="microseconds")
        body = "".join(
            dumps(
                ground_truth_line(
                    {
                        "prediction_id": pid,
                        "model": spec.name,
                        "model_version": VERSION,
                        "created_at": created,
                    },
                    actual,
                    f"{at}#{request}#{index:05d}",  # the sequence the feedback Lambda gives
                    recorded.isoformat(),
                )
            )  # fmt: skip
            for index, (_, pid, created, actual) in enumerate(group)
        )
        yield ground_truth_key(spec.name, recorded, request), body.encode()
        facts["ground_truth_objects"] += 1
        facts["ground_truth_lines"] += len(group)
    return dict(facts)


class Pack:
    """The day's objects in one file (bodies back to back) with an index: generated once,
    PUT into the embedded AWS, and read directly by the S3 stand-in."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        meta = json.loads((folder / "index.json").read_text())
        self.facts: dict[str, Any] = meta["facts"]
        self.objects: dict[str, tuple[int, int]] = {k: (o, n) for k, o, n in meta["objects"]}
        self.fd = os.open(folder / "objects.bin", os.O_RDONLY)

    def read(self, key: str) -> bytes:
        offset, size = self.objects[key]
        return os.pread(self.fd, size, offset)

    @property
    def model_dir(self) -> Path:
        return self.folder / "model"

    @staticmethod
    def build(folder: Path, comp: Composition, training_rows: int = TRAINING_ROWS) -> Pack:
        """Train the model and write the day's objects under `folder` (atomically)."""
        work = folder.with_name(folder.name + f".tmp-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        bundle = train_demo_model(work / "model", training_rows)
        index, offset = [], 0
        started = time.perf_counter()
        with (work / "objects.bin").open("wb") as f:
            day = generate_day(comp, bundle)
            while True:
                try:
                    key, body = next(day)
                except StopIteration as done:
                    facts = done.value
                    break
                f.write(body)
                index.append((key, offset, len(body)))
                offset += len(body)
        facts |= {
            "objects": len(index),
            "bytes": offset,
            "generate_s": round(time.perf_counter() - started, 1),
        }
        meta = {"composition": dataclasses.asdict(comp), "facts": facts, "objects": index}
        (work / "index.json").write_text(json.dumps(meta))
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
        return Pack(folder)

    @staticmethod
    def load_or_build(comp: Composition, cache: Path = CACHE) -> Pack:
        cache.mkdir(parents=True, exist_ok=True)
        ignore = cache / ".gitignore"  # the cache ignores itself, whatever the repo's .gitignore says
        if not ignore.exists():
            ignore.write_text("*\n")
        folder = cache / f"monitoring-{comp.key()}"
        if (folder / "index.json").is_file():
            return Pack(folder)
        return Pack.build(folder, comp)


# -- the embedded AWS --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_moto(log_path: Path) -> tuple[subprocess.Popen, str]:
    """The embedded AWS (`python -m local_runtime.aws_server`: moto's server) on a free port, as
    `inferline up` starts it."""
    import httpx

    port = free_port()
    url = f"http://{HOST}:{port}"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_runtime.aws_server", "-H", HOST, "-p", str(port)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/moto-api/", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError("the moto server did not start in 60 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def local_client(url: str, service: str):
    """A client of the embedded AWS, as local_runtime.up.local_client makes it."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def buckets() -> tuple[str, str]:
    from inferline.resources import bucket_name

    return bucket_name(PREFIX, "data"), bucket_name(PREFIX, "artifacts")


def model_data_key() -> str:
    from inferline.resources import model_version_prefix

    return f"{model_version_prefix(MODEL)}local-v{VERSION}/output/model.tar.gz"


def load_day(s3, dynamodb, pack: Pack, threads: int = 16) -> dict[str, float]:
    """The tables and buckets `inferline up` creates, the version's model.tar.gz, and every
    object of the day, PUT `threads` at a time."""
    from local_runtime.bootstrap import bootstrap, model_archive

    bootstrap(PREFIX, dynamodb, s3)
    data, artifacts = buckets()
    s3.put_object(Bucket=artifacts, Key=model_data_key(), Body=model_archive(pack.model_dir))
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=data, Key=key, Body=pack.read(key)), pack.objects))
    seconds = time.perf_counter() - started
    return {
        "objects": len(pack.objects),
        "seconds": round(seconds, 1),
        "puts_per_s": len(pack.objects) / seconds,
    }


def load_aws(url: str, pack: Pack, threads: int = 16) -> dict[str, float]:
    """load_day into the moto server at `url`."""
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3", endpoint_url=url, region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local",
        config=Config(max_pool_connections=threads),
    )  # fmt: skip
    return load_day(s3, local_client(url, "dynamodb"), pack, threads)


def get_rates(url: str, pack: Pack, moto_pid: int, sample: int = 2_000) -> dict[str, Any]:
    """GETs/s of the embedded AWS for small objects (online requests) and MB/s for large ones
    (batch chunks): one at a time on one client, and with logs.fetch's parallel readers on a
    client made as local_client makes it."""
    from model_artifacts.monitoring import logs

    data, _ = buckets()
    online = [k for k in pack.objects if k.startswith("predictions/") and "/batch-" not in k][:sample]
    batch = [k for k in pack.objects if k.startswith("predictions/") and "/batch-" in k][:6]
    s3 = local_client(url, "s3")
    s3.get_object(Bucket=data, Key=online[0])["Body"].read()  # the connection made
    out: dict[str, Any] = {"readers": logs.READERS}

    def timed(name: str, keys: list[str], run) -> None:
        cpu = cpu_seconds(moto_pid)
        started = time.perf_counter()
        size = run(keys)
        seconds = time.perf_counter() - started
        out[name] = {
            "objects": len(keys), "seconds": round(seconds, 3), "gets_per_s": round(len(keys) / seconds, 1),
            "ms_per_get": round(1000 * seconds / len(keys), 2), "mb_per_s": round(size / seconds / 2**20, 1),
            "moto_cpu_ms_per_get": round(1000 * (cpu_seconds(moto_pid) - cpu) / len(keys), 2),
        }  # fmt: skip

    def one_at_a_time(keys):
        return sum(len(s3.get_object(Bucket=data, Key=k)["Body"].read()) for k in keys)

    def parallel(keys):
        objects = [(k, pack.objects[k][1]) for k in keys]
        return sum(len(body) for body in logs.fetch(local_client(url, "s3"), data, objects))

    timed("online_objects_one_at_a_time", online, one_at_a_time)
    timed("online_objects_parallel", online, parallel)
    timed("batch_objects_one_at_a_time", batch, one_at_a_time)
    timed("batch_objects_parallel", batch, parallel)
    return out


# -- the S3 stand-in: the same objects, already on this machine --------------------------------------------


class _NoSuchKey(Exception):
    pass


class FolderS3:
    """The few S3 calls monitor() makes, served from a Pack (reads) and memory (writes)."""

    class exceptions:  # noqa: N801 (as boto3 spells it: s3.exceptions.NoSuchKey)
        NoSuchKey = _NoSuchKey

    def __init__(self, pack: Pack) -> None:
        data, artifacts = buckets()
        self.pack = pack
        self.buckets: dict[str, list[str]] = {data: sorted(pack.objects), artifacts: [model_data_key()]}
        self.written: dict[tuple[str, str], bytes] = {}
        from local_runtime.bootstrap import model_archive

        self.written[(artifacts, model_data_key())] = model_archive(pack.model_dir)

    def get_object(self, Bucket: str, Key: str, **_) -> dict:  # noqa: N803 (boto3's names)
        if (Bucket, Key) in self.written:
            body = self.written[(Bucket, Key)]
        elif Key in self.pack.objects and Bucket == buckets()[0]:
            body = self.pack.read(Key)
        else:
            raise _NoSuchKey(Key)
        return {"Body": io.BytesIO(body), "ContentLength": len(body)}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_) -> dict:  # noqa: N803
        self.written[(Bucket, Key)] = Body
        return {}

    def get_paginator(self, name: str):
        assert name == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str = "", StartAfter: str = "") -> Iterator[dict]:  # noqa: N803
        sizes = {k: self.pack.objects[k][1] for k in self.buckets.get(Bucket, []) if k in self.pack.objects}
        sizes |= {k: len(body) for (b, k), body in self.written.items() if b == Bucket}
        keys = sorted(k for k in sizes if k.startswith(Prefix) and k > StartAfter)
        for start in range(0, max(len(keys), 1), 1000):
            yield {"Contents": [{"Key": k, "Size": sizes[k]} for k in keys[start : start + 1000]]}


# -- the child: one monitoring run, timed by stage ---------------------------------------------------------


def vmhwm_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def vmrss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# stages as monitor() calls them: (module, function, stage name)
STAGES = [
    ("run", "load_bundle", "load the version (model.tar.gz)"),
    ("run", "resolve_baseline", "baseline"),
    ("logs", "read_ground_truth", "read ground truth"),
    ("run", "read_window", "read predictions"),  # read_window less read_ground_truth
    ("run", "read_refusals", "read refusals"),
    ("run", "drift_section", "compute: drift"),
    ("run", "data_quality", "compute: data quality"),
    ("run", "live_quality", "compute: live quality + CBPE"),
    ("run", "service_section", "compute: service"),
    ("run", "read_history", "read history"),
    ("report", "render", "render the report"),
    ("run", "write_run", "write result, summary, report"),
]


@contextmanager
def instrumented() -> Iterator[dict[str, Any]]:
    """The functions monitor() calls (and logs.fetch and its listing) wrapped with timers while
    the block runs; yields the record they fill."""
    from model_artifacts.monitoring import logs, report
    from model_artifacts.monitoring import run as run_module

    modules = {"run": run_module, "logs": logs, "report": report}
    record: dict[str, Any] = {
        "stages_s": defaultdict(float),
        "peak_rss_mb_after": {},
        "fetch": defaultdict(lambda: {"objects": 0, "bytes": 0, "wait_s": 0.0}),
        "listing_s": defaultdict(float),
    }
    current: list[str] = []  # the stages under way, innermost last

    def timed(fn, label):
        def wrapper(*args, **kwargs):
            current.append(label)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                record["stages_s"][label] += time.perf_counter() - started
                record["peak_rss_mb_after"][label] = round(vmhwm_mb(), 1)
                current.pop()

        return wrapper

    def timed_iterator(fn, seconds: str, count: bool):
        """A generator function whose consumer's waits are added to the current stage."""

        def wrapper(*args, **kwargs):
            entry = record[seconds][current[-1] if current else "?"]
            items = fn(*args, **kwargs)
            while True:
                started = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    return
                finally:
                    elapsed = time.perf_counter() - started
                    if count:
                        entry["wait_s"] += elapsed
                    else:
                        record[seconds][current[-1] if current else "?"] += elapsed
                if count:
                    entry["objects"] += 1
                    entry["bytes"] += len(item)
                yield item

        return wrapper

    # the listing: partition_objects (partition_keys before logs.py streamed it)
    listing = "partition_objects" if hasattr(logs, "partition_objects") else "partition_keys"
    wrappers = [(modules[m], name, timed(getattr(modules[m], name), label)) for m, name, label in STAGES]
    wrappers += [
        (logs, "fetch", timed_iterator(logs.fetch, "fetch", count=True)),
        (logs, listing, timed_iterator(getattr(logs, listing), "listing_s", count=False)),
    ]
    originals = [(module, name, getattr(module, name)) for module, name, _ in wrappers]
    for module, name, wrapper in wrappers:
        setattr(module, name, wrapper)
    try:
        yield record
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


def monitored_run(s3, profile: bool = False) -> dict[str, Any]:
    """monitor() once over the day in this process, timed by stage; what it found and took."""
    from model_artifacts.monitoring.run import monitor

    data, artifacts = buckets()
    profiler = cProfile.Profile() if profile else None
    with instrumented() as record:
        if profiler:
            profiler.enable()
        started, cpu_started = time.perf_counter(), time.process_time()
        run = monitor(
            s3, model=MODEL, data_bucket=data,
            champion={"version": VERSION, "model_data_url": f"s3://{artifacts}/{model_data_key()}"},
            since=DAY, until=DAY + timedelta(days=1), now=NOW, write=True,
        )  # fmt: skip
        run_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        if profiler:
            profiler.disable()
    result = run.result
    stages = dict(record["stages_s"])
    stages["read predictions"] -= stages.get("read ground truth", 0.0)  # read_window reads both
    out = {
        "monitor_s": round(run_s, 3),
        "monitor_cpu_s": round(cpu_s, 2),
        "stages_s": {k: round(v, 3) for k, v in stages.items()},
        "compute_s": round(sum(v for k, v in stages.items() if k.startswith("compute")), 3),
        "other_s": round(run_s - sum(stages.values()), 3),
        "peak_rss_mb_after": record["peak_rss_mb_after"],
        "fetch": {k: dict(v, wait_s=round(v["wait_s"], 3)) for k, v in record["fetch"].items()},
        "listing_s": {k: round(v, 3) for k, v in record["listing_s"].items()},
        "rows": result["judged"]["rows"],
        "labeled": result["quality"]["labeled"],
        "ground_truth_lines": result["ground_truth"]["lines"],
        "objects": result["service"]["read"]["objects"],
        "bytes": result["service"]["read"]["bytes"],
        "refused": result["data_quality"]["refusals"],
        "figures": result["figures"],
        "status": result["summary"]["status"],
        "headline": result["summary"]["headline"],
        "drifted": (result.get("drift") or {}).get("drifted"),
        "uris": run.uris,
        "vmhwm_mb": round(vmhwm_mb(), 1),
    }
    if profiler:
        stats = pstats.Stats(profiler)
        top = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:25]
        out["cprofile_top_tottime"] = [
            {
                "function": f"{f.split('site-packages/')[-1].split(str(REPO) + '/')[-1]}:{line}({func})",
                "calls": calls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
            }  # fmt: skip
            for (f, line, func), (_cc, calls, tottime, cumtime, _callers) in top
        ]
    return out


def child(config: dict[str, Any]) -> dict[str, Any]:
    """One monitoring run in this fresh process (`--child`), as the monitoring job makes it: against
    the moto server at config["url"], or on the pack at config["pack"] (the data already fetched)."""
    started = time.perf_counter()
    import model_artifacts.monitoring.run  # noqa: F401 (what the run imports, timed)

    imported = time.perf_counter()
    s3 = (
        local_client(config["url"], "s3")
        if config["source"] == "moto"
        else FolderS3(Pack(Path(config["pack"])))
    )
    out = monitored_run(s3, profile=bool(config.get("profile")))
    return {"source": config["source"], "import_s": round(imported - started, 3)} | out


def run_child(
    config: dict[str, Any], moto_pid: int | None, work: Path, argv: list[str] | None = None
) -> dict:
    """A fresh process runs child(config): its wall time from spawn to exit; its peak RSS, the
    larger of its own VmHWM at the end of its work and the VmHWM polled here while it runs
    (os.wait4's ru_maxrss would carry this process's high-water mark through vfork and exec);
    its CPU seconds (os.wait4: its own); the moto server's CPU seconds meanwhile."""
    out_path = work / f"child-{uuid.uuid4().hex[:8]}.json"
    log_path = out_path.with_suffix(".log")
    moto_cpu = cpu_seconds(moto_pid) if moto_pid else None
    command = argv or [sys.executable, str(Path(__file__).resolve())]
    polled = 0.0
    started = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--child", json.dumps(config), "--child-out", str(out_path)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                polled = max(polled, vmhwm_mb(proc.pid))
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(
            f"the monitoring child failed ({proc.returncode}):\n{log_path.read_text()[-4000:]}"
        )
    out = json.loads(out_path.read_text())
    out |= {
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(max(out["vmhwm_mb"], polled), 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "moto_cpu_s": round(cpu_seconds(moto_pid) - moto_cpu, 2) if moto_pid else None,
    }
    return out


# -- the report ---------------------------------------------------------------------------------------------


def median(rounds: list[dict], *path: str) -> float:
    values = []
    for r in rounds:
        value: Any = r
        for p in path:
            value = value.get(p, 0.0) if isinstance(value, dict) else 0.0
        values.append(value or 0.0)
    return statistics.median(values)


def summarize(results: dict) -> dict:
    """Each measurement's median over the rounds, for the runs against moto and on local data."""
    out = {}
    for source in ("moto", "local"):
        rounds = [r[source] for r in results["rounds"] if source in r]
        if not rounds:
            continue
        names = {key: list(dict.fromkeys(k for r in rounds for k in r[key])) for key in ("stages_s", "fetch")}
        out[source] = {
            key: median(rounds, key)
            for key in ("wall_s", "monitor_s", "import_s", "peak_rss_mb", "cpu_s", "compute_s", "other_s")
        }
        out[source] |= {
            "moto_cpu_s": median(rounds, "moto_cpu_s") if source == "moto" else None,
            "stages_s": {k: median(rounds, "stages_s", k) for k in names["stages_s"]},
            "wait_s": {k: median(rounds, "fetch", k, "wait_s") for k in names["fetch"]},
            "objects": {k: median(rounds, "fetch", k, "objects") for k in names["fetch"]},
        }
    return out


def ratios(summary: dict) -> dict:
    moto = summary["moto"]
    out = {}
    for key in TARGETS:
        value, target = moto[key], TARGETS[key]
        out[key] = {"value": value, "target": target, "ratio": value / target, "met": value < target}
    return out


def markdown(results: dict) -> str:
    run, comp, facts = results["run"], results["composition"], results["data"]
    summary, targets, rounds = results["summary"], results["ratios"], results["rounds"]
    moto, local = summary["moto"], summary.get("local")
    first = rounds[0]["moto"]
    batch_jobs = max(facts["batch_jobs"], 1)
    lines = [
        "# Monitoring benchmark: one run over a day of logged predictions",
        "",
        f"Written by `{run['command'].strip()}` on {run['when']}: {run['machine']}, Python "
        f"{run['python']}; load average {run['load_average_before'][0]:.1f} before and "
        f"{run['load_average_after'][0]:.1f} after (the machine is shared: each round runs the run "
        f"against moto and the run on local data in turn, so load falls on both). "
        + (f"Medians of {len(rounds)} rounds." if len(rounds) > 1 else "One round."),
        "",
        "## The day's logs",
        "",
        f"{facts['online_predictions'] + facts['batch_predictions']:,} logged predictions of `{MODEL}` "
        f"version {VERSION} on {DAY:%Y-%m-%d}: {facts['objects']:,} objects, "
        f"{facts['bytes'] / 2**20:,.0f} MiB "
        "of JSON Lines in the platform's layouts and formats (generated once by this script, kept in "
        "bench/.cache/; not part of the measurement):",
        "",
        f"- online: {facts['online_predictions']:,} predictions in {facts['online_requests']:,} requests of "
        f"{comp['request_size']} instances, one object per request (prediction_record, as "
        "write_prediction_log writes it), at times spread evenly over the day;",
        f"- batch: {facts['batch_predictions']:,} predictions from {facts['batch_jobs']} jobs of "
        f"{facts['batch_predictions'] // batch_jobs:,} rows, evenly spaced, in {facts['batch_objects']} "
        "chunk "
        f"objects (chunks of {comp['chunk_rows']:,} input rows, the split's CHUNK_MAX_ROWS default; up to "
        f"{facts['batch_chunk_rows_max']:,} lines), the job's start as created_at, one endpoint latency per "
        f"{comp['endpoint_rows']:,} rows;",
        f"- traffic: model_artifacts.demo_data on the {DEMO_USERS:,} demo users (5% unknown), drift 0 until "
        f"noon and {comp['drift_late']} after; scores from the demo model, labels drawn by the demo world;",
        f"- ground truth: {facts['ground_truth_lines']:,} actuals ({comp['labeled_share']:.0%} of "
        "predictions, "
        f"arriving 1 min to 23 h later) in {facts['ground_truth_objects']:,} feedback-request objects of "
        f"{comp['feedback_size']:,} lines (ground_truth_line), by the date they arrived;",
        f"- refusals: {facts['refused_online_requests']:,} refused online requests "
        f"({comp['online_refused_share']:.0%} of online requests, one object each) and "
        f"{facts['refused_batch_rows']:,} refused batch rows ({comp['batch_refused_share']:.1%}, one object "
        "per "
        f"chunk): {facts['refusal_objects']:,} objects.",
        "",
        f"The run: `monitor(s3, model={MODEL!r}, since={DAY:%Y-%m-%d}T00:00Z, until=+1 day, now=+2 days, "
        "write=True)` in a fresh Python process (`--child`; imports included), with a boto3 S3 client made "
        "as local_runtime.up.local_client makes it, against the embedded AWS as `inferline up` starts "
        "it (`python -m local_runtime.aws_server`, moto's server) holding the objects. It "
        f"judged {first['rows']:,} predictions, {first['labeled']:,} with ground truth: status "
        f"`{first['status']}` ({first['headline']}).",
        "",
        "The same run on the data already fetched: the same objects served from the pack file by a small "
        "S3 stand-in in the process (FolderS3): what remains of the run when the embedded AWS costs nothing.",
        "",
        "## Results",
        "",
        "| run | wall s, spawn to exit | in monitor() s | peak RSS MB | CPU s | moto CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, entry in enumerate(rounds, 1):
        for source, x in entry.items():
            moto_cpu = "-" if x.get("moto_cpu_s") is None else f"{x['moto_cpu_s']:.1f}"
            lines.append(f"| round {i}, {source} | {x['wall_s']:.1f} | {x['monitor_s']:.1f} | "
                         f"{x['peak_rss_mb']:.0f} | {x['cpu_s']:.1f} | {moto_cpu} |")  # fmt: skip
    lines.append(f"| **median, against moto** | **{moto['wall_s']:.1f}** | {moto['monitor_s']:.1f} | "
                 f"**{moto['peak_rss_mb']:.0f}** | {moto['cpu_s']:.1f} | "
                 f"{moto['moto_cpu_s']:.1f} |")  # fmt: skip
    if local:
        lines.append(f"| median, data already fetched | {local['wall_s']:.1f} | {local['monitor_s']:.1f} | "
                     f"{local['peak_rss_mb']:.0f} | {local['cpu_s']:.1f} | - |")  # fmt: skip
    lines += ["", "| target | median | target | ratio | met |", "| --- | ---: | ---: | ---: | --- |"]
    labels = {"wall_s": "wall time of one monitoring run (s)", "peak_rss_mb": "peak RSS of its process (MB)"}
    for key, label in labels.items():
        t = targets[key]
        lines.append(f"| {label} | {t['value']:.1f} | < {t['target']:.0f} | {t['ratio']:.2f} | "
                     f"{'yes' if t['met'] else 'NO'} |")  # fmt: skip
    total = moto["cpu_s"] + moto["moto_cpu_s"]
    read = moto["objects"]
    objects = sum(read.values())
    lines += [
        "",
        f"CPU during the run against moto (median): the monitoring process {moto['cpu_s']:.1f} s "
        f"({100 * moto['cpu_s'] / total:.0f}%), the moto server {moto['moto_cpu_s']:.1f} s "
        f"({100 * moto['moto_cpu_s'] / total:.0f}%): {total:.1f} CPU seconds in {moto['wall_s']:.1f} s on "
        f"{os.cpu_count()} cores. moto spent {1000 * moto['moto_cpu_s'] / max(objects, 1):.1f} ms of CPU per "
        f"object read ({objects:,.0f} GETs and their listings); the monitoring process spent "
        f"{moto['cpu_s'] - local['cpu_s']:.1f} s more CPU than on local data, "
        f"{1000 * (moto['cpu_s'] - local['cpu_s']) / max(objects, 1):.1f} ms per GET (boto3 and HTTP)."
        if local
        else "",
        "",
        "## Where the time goes",
        "",
        "Median seconds of wall time inside the child by stage: the functions monitor() calls, wrapped with "
        "timers (run.py untouched). `read predictions` is read_window less read_ground_truth (it calls it "
        "first); `waiting` is the time the parser was blocked on logs.fetch: GETs (and listing pages) it "
        "did not overlap with parsing.",
        "",
        "| stage | against moto | of which waiting | data already fetched | peak RSS after (moto), MB |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| start the process, imports | {moto['import_s']:.2f} | | "
        f"{local['import_s'] if local else 0:.2f} | |",
    ]
    peaks = first.get("peak_rss_mb_after", {})
    for _, _, label in STAGES:
        if label not in moto["stages_s"]:
            continue
        wait = moto["wait_s"].get(label)
        lines.append(
            f"| {label} | {moto['stages_s'][label]:.2f} | {'' if wait is None else f'{wait:.2f}'} | "
            f"{(local['stages_s'].get(label, 0.0) if local else 0.0):.2f} | {peaks.get(label, '')} |"
        )
    lines += [
        f"| other (mask, alarms, summary, finite) | {moto['other_s']:.2f} | | "
        f"{local['other_s'] if local else 0:.2f} | |",
        f"| **monitor()** | **{moto['monitor_s']:.2f}** | | **{local['monitor_s'] if local else 0:.2f}** | |",
    ]
    rates = results.get("get_rates")
    if rates:
        lines += [
            "",
            "## The embedded AWS's GET rates",
            "",
            "Measured before the rounds on the same moto server from the benchmark process (a client as "
            f"local_client makes it; `parallel` is logs.fetch, {rates['readers']} GETs at a time):",
            "",
            "| objects | count | GETs/s | ms per GET | MB/s | moto CPU ms per GET |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        names = {
            "online_objects_one_at_a_time": "online request objects, one at a time",
            "online_objects_parallel": "online request objects, parallel",
            "batch_objects_one_at_a_time": "batch chunk objects, one at a time",
            "batch_objects_parallel": "batch chunk objects, parallel",
        }
        for key, label in names.items():
            r = rates[key]
            lines.append(f"| {label} | {r['objects']:,} | {r['gets_per_s']:,.0f} | {r['ms_per_get']:.2f} | "
                         f"{r['mb_per_s']:,.0f} | {r['moto_cpu_ms_per_get']:.2f} |")  # fmt: skip
        load = results["load"]
        lines += [
            "",
            f"Loading the day into moto (before the rounds, not measured): {load['objects']:,} PUTs in "
            f"{load['seconds']:.0f} s ({load['puts_per_s']:,.0f}/s, 16 threads). moto's RSS then "
            f"{results['moto_rss_mb']:,.0f} MB, its peak {results.get('moto_peak_rss_mb', 0):,.0f} MB: it "
            "keeps every object in memory.",
        ]
    profile = results.get("profile")
    if profile:
        lines += [
            "",
            "## cProfile of one run against moto",
            "",
            "Own time, top functions, of the main thread only (the parser; the GETs' client work runs on "
            "reader threads, which cProfile does not see; the profiler inflates Python-heavy code):",
            "",
            "| function | calls | own s | cumulative s |",
            "| --- | ---: | ---: | ---: |",
        ]
        for t in profile["cprofile_top_tottime"][:15]:
            lines.append(
                f"| `{t['function']}` | {t['calls']:,} | {t['tottime_s']:.2f} | {t['cumtime_s']:.2f} |"
            )
    lines.append("")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    defaults = Composition()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=defaults.rows, help="logged predictions in the day")
    parser.add_argument("--online-share", type=float, default=defaults.online_share)
    parser.add_argument(
        "--request-size", type=int, default=defaults.request_size, help="instances per request"
    )
    parser.add_argument("--batch-jobs", type=int, default=defaults.batch_jobs)
    parser.add_argument("--chunk-rows", type=int, default=defaults.chunk_rows, help="input rows per chunk")
    parser.add_argument("--labeled-share", type=float, default=defaults.labeled_share)
    parser.add_argument("--online-refused-share", type=float, default=defaults.online_refused_share)
    parser.add_argument("--batch-refused-share", type=float, default=defaults.batch_refused_share)
    parser.add_argument("--drift-late", type=float, default=defaults.drift_late)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--rounds", type=int, help="default: 3; 1 below 100,000 rows (a smoke run)")
    parser.add_argument("--no-local", action="store_true", help="skip the runs on the data already fetched")
    parser.add_argument("--profile", action="store_true", help="one more run against moto, under cProfile")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--results", type=Path, default=BENCH / "results" / "monitoring.json")
    parser.add_argument("--summary", type=Path, default=BENCH / "RESULTS_MONITORING.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.rows >= 100_000 else 1
    if args.child:
        Path(args.child_out).write_text(json.dumps(child(json.loads(args.child))))
        return 0

    comp = Composition(
        rows=args.rows, online_share=args.online_share, request_size=args.request_size,
        batch_jobs=args.batch_jobs, chunk_rows=args.chunk_rows, labeled_share=args.labeled_share,
        online_refused_share=args.online_refused_share, batch_refused_share=args.batch_refused_share,
        drift_late=args.drift_late, seed=args.seed,
    )  # fmt: skip
    results: dict[str, Any] = {
        "run": {
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
            "python": platform.python_version(),
            "command": "bench/bench_monitoring.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "load_average_before": os.getloadavg(),
        },
        "composition": dataclasses.asdict(comp),
    }
    results = measure(args, comp, results)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
    report = markdown(results)
    kept = HAND_WRITTEN + "\n"  # what follows the marker is kept: notes written by hand
    if args.summary.exists() and HAND_WRITTEN in (previous := args.summary.read_text()):
        kept = HAND_WRITTEN + previous.split(HAND_WRITTEN, 1)[1]
    args.summary.write_text(report + "\n" + kept)
    print("\n" + report)
    print(f"wrote {args.results} and {args.summary}")
    return 0 if all(r["met"] for r in results["ratios"].values()) else 1


def measure(args, comp: Composition, results: dict[str, Any]) -> dict[str, Any]:
    print(f"the day's logs ({comp.rows:,} predictions; cached under {args.cache}) ...", flush=True)
    started = time.perf_counter()
    pack = Pack.load_or_build(comp, args.cache)
    results["data"] = pack.facts
    print(f"  {pack.facts['objects']:,} objects, {pack.facts['bytes'] / 2**20:,.0f} MiB "
          f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-monitoring-"))
    moto, url = start_moto(work / "moto.log")
    try:
        print(f"loading the embedded AWS at {url} ...", flush=True)
        results["load"] = load_aws(url, pack)
        results["moto_rss_mb"] = round(vmrss_mb(moto.pid), 1)
        print(f"  {results['load']['objects']:,} PUTs in {results['load']['seconds']:.0f} s", flush=True)
        results["get_rates"] = get_rates(url, pack, moto.pid)
        for name, r in results["get_rates"].items():
            if isinstance(r, dict):
                print(f"  GET {name}: {r['gets_per_s']:,.0f}/s, {r['ms_per_get']:.2f} ms, "
                      f"{r['mb_per_s']:,.0f} MB/s", flush=True)  # fmt: skip
        results["rounds"] = []
        for i in range(args.rounds):
            entry = {"moto": run_child({"source": "moto", "url": url}, moto.pid, work)}
            m = entry["moto"]
            print(f"round {i + 1}: moto {m['wall_s']:.1f} s ({m['monitor_s']:.1f} s in monitor()), peak "
                  f"{m['peak_rss_mb']:.0f} MB, CPU {m['cpu_s']:.1f} s + moto {m['moto_cpu_s']:.1f} s; "
                  f"{m['rows']:,} predictions, {m['labeled']:,} labeled", flush=True)  # fmt: skip
            if not args.no_local:
                entry["local"] = x = run_child({"source": "local", "pack": str(pack.folder)}, None, work)
                print(f"         local {x['wall_s']:.1f} s ({x['monitor_s']:.1f} s in monitor()), peak "
                      f"{x['peak_rss_mb']:.0f} MB, CPU {x['cpu_s']:.1f} s", flush=True)  # fmt: skip
            results["rounds"].append(entry)
        if args.profile:
            results["profile"] = run_child({"source": "moto", "url": url, "profile": True}, moto.pid, work)
        results["moto_peak_rss_mb"] = round(vmhwm_mb(moto.pid), 1)
    finally:
        stop(moto)
        shutil.rmtree(work, ignore_errors=True)
    results["run"]["load_average_after"] = os.getloadavg()
    results["summary"] = summarize(results)
    results["ratios"] = ratios(results["summary"])
    return results


if __name__ == "__main__":
    sys.exit(main())
