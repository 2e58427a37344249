"""Benchmark the LOCAL batch path end to end against in-process vectorized prediction.

    .venv/bin/python bench/bench_batch.py                 # 1,000,000 rows (issue 4, item 7)
    .venv/bin/python bench/bench_batch.py --rows 50000    # a smaller file, same measurements

In one run:

  data         N demo request rows (model_artifacts.demo_data.generate_requests, in blocks, on
               the 2,000 users `inferline up` seeds: seed 7) streamed to a CSV, with a small
               share of bad rows (out-of-range, unknown category, not a number, missing
               required field, extra field) whose count is known, so errors.csv is checked
  in-process   the demo model `inferline up` serves (model_artifacts.train on the same demo
               data, trained here first through local_runtime.up.ensure_demo_model so both
               sides use one model.joblib); the good rows joined with the stored features
               (spec defaults for unknown users) and scored with pipeline.predict_proba on
               100,000-row frames: rows/s of predict_proba alone (the ratio's denominator),
               and of join + frame + predict_proba (for information)
  end to end   `python -m local_runtime.cli up` as a subprocess (temporary INFERLINE_HOME,
               free ports); the CSV submitted with local_runtime.batch_client.submit_file
               (presigned PUT) and followed with follow_job; wall time from submit to the job's
               end; both outputs downloaded and checked: every row number in exactly one of
               them, counts equal to the job's, rows_failed equal to the bad rows written,
               scores equal to in-process scores
  memory       VmHWM (peak RSS) of the `inferline up` process, which runs the batch workers
               (threads) and also the local API; moto's and the model server's for information
  where time   CPU seconds of each process (up, moto, model server) over the job, and a
  goes         profile of one chunk processed in this process against the running runtime:
               wall time per stage and per AWS API operation, then cProfile's top functions

It prints a table and writes bench/results/batch.json and bench/RESULTS_BATCH.md.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import os
import platform
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
HOST = "127.0.0.1"
MODEL = "purchase-propensity"
DEMO_SEED = 7  # local_runtime.up.DEMO_SEED: the users `up` seeds into the feature store
DEMO_USERS = 2_000  # model_artifacts.demo_data.write_demo_files' default
BLOCK_ROWS = 100_000
TARGETS = {"rows_per_s_pct": 30.0, "worker_peak_mb": 512.0}
HAND_WRITTEN = "<!-- bench_batch.py rewrites the summary above this line and keeps what follows -->"
BAD_KINDS = ("price_out_of_range", "unknown_category", "pages_not_a_number", "device_missing", "extra_field")


# -- the file and the in-process side ------------------------------------------------------------


def write_file_and_score(path: Path, rows: int, bad_share: float, seed: int, bundle) -> dict[str, Any]:
    """Write the CSV block by block; score each block's good rows in-process as it goes.

    Returns the counts, the in-process timings and the expected score of every good row
    (indexed by CSV row number; NaN for bad rows)."""
    import pandas as pd

    from model_artifacts.demo_data import REQUEST_FIELDS, generate_requests, generate_users

    spec = bundle.spec
    users = generate_users(DEMO_USERS, DEMO_SEED)
    stored = pd.DataFrame.from_records(users).set_index("user_id")[list(spec.stored_features)]
    rng = np.random.default_rng([seed, 99])
    expected = np.full(rows + 2, np.nan)  # row numbers: header is 1, data rows 2..rows+1
    counts = {kind: 0 for kind in BAD_KINDS}
    timing = {
        "predict_s": 0.0,
        "predict_cpu_s": 0.0,
        "pipeline_s": 0.0,
        "generate_write_s": 0.0,
        "scored_rows": 0,
    }
    frames = []  # kept to time predict_proba again after the job (see repeat_in_process)
    positive = bundle.classes.index(spec.target.classes[-1])
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(REQUEST_FIELDS)
        for block_start in range(0, rows, BLOCK_ROWS):
            n = min(BLOCK_ROWS, rows - block_start)
            started = time.perf_counter()
            records = generate_requests(n, seed=seed * 1000 + block_start // BLOCK_ROWS, users=users)
            bad = rng.random(n) < bad_share
            kinds = rng.integers(0, len(BAD_KINDS), n)
            good_records = []
            good_rows = []
            for i, record in enumerate(records):
                fields = [record.get(name, "") for name in REQUEST_FIELDS]
                if bad[i]:
                    kind = BAD_KINDS[kinds[i]]
                    counts[kind] += 1
                    if kind == "price_out_of_range":
                        fields[1] = -5
                    elif kind == "unknown_category":
                        fields[2] = "toasters"
                    elif kind == "pages_not_a_number":
                        fields[5] = "many"
                    elif kind == "device_missing":
                        fields[3] = ""
                    else:
                        fields.append("surplus")
                else:
                    good_records.append(record)
                    good_rows.append(block_start + i + 2)
                writer.writerow(fields)
            timing["generate_write_s"] += time.perf_counter() - started

            # in-process: join the stored features (defaults for unknown users), frame, score
            started = time.perf_counter()
            frame = pd.DataFrame.from_records(good_records)
            joined = frame.join(stored, on="user_id")
            for name, feature in spec.stored_features.items():
                joined[name] = joined[name].fillna(feature.default)
            model_frame = joined[spec.model_inputs].copy()
            for name in spec.numeric_inputs:
                model_frame[name] = model_frame[name].astype("float64")
            for name in spec.categorical_inputs:
                model_frame[name] = model_frame[name].astype(object)
            predict_started, cpu_started = time.perf_counter(), time.process_time()
            proba = bundle.pipeline.predict_proba(model_frame)
            done = time.perf_counter()
            timing["predict_cpu_s"] += time.process_time() - cpu_started
            timing["predict_s"] += done - predict_started
            timing["pipeline_s"] += done - started
            timing["scored_rows"] += len(good_records)
            expected[np.array(good_rows, dtype=np.int64)] = proba[:, positive]
            frames.append(model_frame)
            del records, good_records, frame, joined
    bad_total = sum(counts.values())
    return {
        "rows": rows,
        "bad_rows": bad_total,
        "bad_by_kind": counts,
        "good_rows": rows - bad_total,
        "bytes": path.stat().st_size,
        "timing": timing,
        "expected": expected,
        "frames": frames,
    }


def repeat_in_process(bundle, file_info: dict) -> tuple[float, float]:
    """predict_proba on the same frames again (after the job): the machine is shared, so the
    ratio's denominator is the faster of the two passes, which can only lower the ratio.
    Returns (wall seconds, CPU seconds of this process)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    for frame in file_info["frames"]:
        bundle.pipeline.predict_proba(frame)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    file_info.pop("frames")
    return seconds, cpu


def in_process_summary(file_info: dict, second_pass: tuple[float, float] | None = None) -> dict:
    t = file_info["timing"]
    second_pass_s, second_cpu_s = second_pass or (None, None)
    best = min(t["predict_s"], second_pass_s or t["predict_s"])
    best_cpu = min(t["predict_cpu_s"], second_cpu_s or t["predict_cpu_s"])
    return {
        "predict_proba_cpu_us_per_row": 1e6 * best_cpu / t["scored_rows"],
        "scored_rows": t["scored_rows"],
        "predict_proba_s": round(best, 3),
        "predict_proba_rows_per_s": t["scored_rows"] / best,
        "predict_proba_passes_s": [round(t["predict_s"], 3)]
        + ([round(second_pass_s, 3)] if second_pass_s else []),
        "join_frame_predict_s": round(t["pipeline_s"], 3),
        "join_frame_predict_rows_per_s": t["scored_rows"] / t["pipeline_s"],
        "frame_rows": BLOCK_ROWS,
    }


# -- the local runtime -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_runtime(home: Path, env: dict[str, str], timeout: float) -> subprocess.Popen:
    import httpx

    (home / "logs").mkdir(parents=True, exist_ok=True)
    log = (home / "logs" / "bench-up.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_runtime.cli", "up"],
        cwd=REPO,
        env=os.environ | env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://{HOST}:{env['INFERLINE_API_PORT']}/_local/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"inferline up exited ({proc.returncode}):\n{tail(home)}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_runtime(proc)
    raise RuntimeError(f"inferline up was not ready after {timeout:.0f} s:\n{tail(home)}")


def tail(home: Path) -> str:
    path = home / "logs" / "bench-up.log"
    return path.read_text(errors="replace")[-3000:] if path.is_file() else ""


def stop_runtime(proc: subprocess.Popen) -> None:
    """SIGTERM to the runtime's process group (`up` stops moto and the model server itself)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_chunk_workers(count: int, env: dict[str, str], home: Path) -> list[subprocess.Popen]:
    """`count` more chunk workers (local_runtime.batch_worker processes), each one warm Lambda
    instance of the chunk function polling the chunks queue, as Lambda runs several for one queue."""
    workers = []
    for index in range(count):
        log = (home / "logs" / f"bench-chunk-worker-{index}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "local_runtime.batch_worker"],
                cwd=REPO,
                env=os.environ | env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
    return workers


def stop_chunk_workers(workers: list[subprocess.Popen]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.terminate()
    for proc in workers:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def runtime_pids(home: Path, up_pid: int) -> dict[str, int]:
    run = home / "run"
    return {
        "up (batch workers + API)": up_pid,
        "moto server": int((run / "aws.pid").read_text()),
        "model server": int((run / f"serving-{MODEL}.pid").read_text()),
    }


# -- the job --------------------------------------------------------------------------------------------


def run_job(api_url: str, api_key: str, path: Path, timeout: float, pids: dict[str, int]) -> dict:
    from rich.console import Console

    from local_runtime.api_client import api_client
    from local_runtime.batch_client import follow_job, submit_file

    console = Console(stderr=True)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    with api_client(api_url, api_key) as api:
        started = time.perf_counter()
        job = submit_file(api, MODEL, path, "bench@example.com", console)
        uploaded = time.perf_counter()
        final = follow_job(api, job["job_id"], timeout, console)
        ended = time.perf_counter()
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    return {
        "job": final,
        "upload_s": uploaded - started,
        "wall_s": ended - started,
        "cpu_s": {name: round(v, 2) for name, v in cpu.items()},
    }


def check_outputs(job: dict, file_info: dict, work: Path) -> dict:
    """Download both outputs; every row number in exactly one of them; scores as in-process."""
    import httpx

    rows = file_info["rows"]
    seen = np.zeros(rows + 2, dtype=np.uint8)
    expected = file_info["expected"]
    out: dict[str, Any] = {}
    for kind in ("results", "errors"):
        target = work / f"{kind}.csv"
        with httpx.stream("GET", job[f"{kind}_url"], timeout=600) as reply, target.open("wb") as f:
            reply.raise_for_status()
            for block in reply.iter_bytes(1024 * 1024):
                f.write(block)
        count, max_diff, bad_numbers = 0, 0.0, 0
        with target.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            score_at = header.index("score") if kind == "results" else None
            for record in reader:
                count += 1
                row = int(record[0])
                if not 2 <= row <= rows + 1:
                    bad_numbers += 1
                    continue
                seen[row] += 1
                if score_at is not None:
                    max_diff = max(max_diff, abs(float(record[score_at]) - expected[row]))
        out[kind] = {"rows": count, "bytes": target.stat().st_size, "row_numbers_out_of_range": bad_numbers}
        if score_at is not None:
            out[kind]["max_abs_score_diff_vs_in_process"] = max_diff
        target.unlink()
    data = seen[2:]
    out["rows_missing"] = int((data == 0).sum())
    out["rows_duplicated"] = int((data > 1).sum())
    ok, failed = int(job.get("rows_ok") or 0), int(job.get("rows_failed") or 0)
    out["accounted"] = (
        job.get("status") == "succeeded"
        and ok + failed == rows
        and out["results"]["rows"] == ok
        and out["errors"]["rows"] == failed
        and failed == file_info["bad_rows"]
        and out["rows_missing"] == 0
        and out["rows_duplicated"] == 0
        and out["results"]["row_numbers_out_of_range"] == 0
        and out["errors"]["row_numbers_out_of_range"] == 0
    )
    return out


# -- where the time goes: one chunk in this process, against the running runtime -------------------------


def profile_chunk(csv_path: Path, env: dict[str, str], rows: int, pids: dict[str, int]) -> dict:
    """Process one chunk of `rows` rows with batch.chunk.process_chunk here, twice: first timed
    by stage and by AWS API operation (wall clock), then under cProfile."""
    import boto3
    import botocore.client

    import batch.chunk as chunk_module
    from batch.services import Services
    from inferline import jobs
    from inferline.resources import bucket_name, table_name

    aws_url = f"http://{HOST}:{env['INFERLINE_AWS_PORT']}"
    session = dict(
        endpoint_url=aws_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    from botocore.config import Config

    s3 = boto3.client("s3", config=Config(signature_version="s3v4"), **session)
    dynamodb = boto3.resource("dynamodb", **session)
    prefix = "inferline"
    runtime = boto3.client(
        "sagemaker-runtime",
        endpoint_url=f"http://{HOST}:{env['INFERLINE_SERVING_PORT']}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    services = Services(
        s3=s3,
        bucket=bucket_name(prefix, "data"),
        jobs=dynamodb.Table(table_name(prefix, "jobs")),
        ses=boto3.client("ses", **session),
        email_sender="batch@inferline.local",
        outbox_dir=None,
        features=dynamodb.Table(table_name(prefix, "features")),
        predictions=dynamodb.Table(table_name(prefix, "predictions")),
        runtime=runtime,
        resource_prefix=prefix,
        feature_cache=chunk_module.JobFeatures(),  # as the handler's; cold: a new job per pass
    )
    with csv_path.open("rb") as f:
        header = f.readline()
        body = header + b"".join(f.readline() for _ in range(rows))
    columns = header.decode().strip().split(",")

    def new_chunk(tag: str) -> dict:
        key = f"bench/profile-{tag}.csv"
        s3.put_object(Bucket=services.bucket, Key=key, Body=body)
        job = jobs.create_job(
            services.jobs, MODEL, "bench@example.com", source_key=key, status=jobs.SPLITTING
        )
        jobs.start_running(services.jobs, job["job_id"], 1, columns)
        return {
            "job_id": job["job_id"],
            "model": MODEL,
            "key": key,
            "chunk": 0,
            "start": len(header),
            "end": len(body),
            "first_row": 2,
            "columns": columns,
        }

    # pass 1: wall time per stage (module functions wrapped) and per AWS operation
    stages: dict[str, float] = defaultdict(float)
    operations: dict[str, list] = defaultdict(lambda: [0, 0.0])
    stage_names = [
        "read_rows",
        "score_rows",
        "get_features",
        "_score",
        "_log_members",
        "write_log",
        "write_parts",
        "finish_if_complete",
    ]
    originals = {name: getattr(chunk_module, name) for name in stage_names}

    def timed(name, fn):
        def wrapper(*a, **kw):
            started = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                stages[name] += time.perf_counter() - started

        return wrapper

    original_call = botocore.client.BaseClient._make_api_call

    def timed_call(self, operation, params):
        started = time.perf_counter()
        try:
            return original_call(self, operation, params)
        finally:
            entry = operations[f"{self.meta.service_model.service_name}.{operation}"]
            entry[0] += 1
            entry[1] += time.perf_counter() - started

    message = new_chunk("timed")
    for name in stage_names:
        setattr(chunk_module, name, timed(name, originals[name]))
    botocore.client.BaseClient._make_api_call = timed_call
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items() if name != "up (batch workers + API)"}
    own_before = time.process_time()
    try:
        started = time.perf_counter()
        summary = chunk_module.process_chunk(services, message)
        wall = time.perf_counter() - started
    finally:
        botocore.client.BaseClient._make_api_call = original_call
        for name, fn in originals.items():
            setattr(chunk_module, name, fn)
    cpu = {name: round(cpu_seconds(pids[name]) - v, 2) for name, v in cpu_before.items()}
    cpu["this process (the worker)"] = round(time.process_time() - own_before, 2)

    # pass 2: cProfile (its overhead inflates Python-heavy code; read it for the shape)
    message = new_chunk("cprofile")
    profiler = cProfile.Profile()
    profiler.enable()
    chunk_module.process_chunk(services, message)
    profiler.disable()
    stats = pstats.Stats(profiler)
    top = []
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in sorted(
        stats.stats.items(), key=lambda item: item[1][2], reverse=True
    )[:20]:
        where = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        top.append(
            {
                "function": f"{where}:{line}({func})",
                "calls": calls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
            }
        )
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
    return {
        "rows": rows,
        "summary": summary,
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "stages_s": {k: round(v, 3) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
        "aws_operations": {
            k: {"calls": c, "wall_s": round(t, 3)}
            for k, (c, t) in sorted(operations.items(), key=lambda kv: -kv[1][1])
        },
        "cpu_s": cpu,
        "cprofile_top_tottime": top,
        "cprofile_cumulative_text": text.getvalue(),
    }


# -- the run ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="data rows in the CSV")
    parser.add_argument("--bad-share", type=float, default=0.005, help="share of rows made bad on purpose")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--job-timeout", type=float, default=7200, help="seconds to wait for the job")
    parser.add_argument(
        "--profile-rows", type=int, default=50_000, help="rows in the profiled chunk (0: skip)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="chunk worker processes besides the one thread in `up`"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary INFERLINE_HOME and CSV")
    parser.add_argument("--results", type=Path, default=BENCH / "results" / "batch.json")
    parser.add_argument("--summary", type=Path, default=BENCH / "RESULTS_BATCH.md")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    home = work / "home"
    env = {
        "INFERLINE_HOME": str(home),
        "INFERLINE_API_PORT": str(free_port()),
        "INFERLINE_SERVING_PORT": str(free_port()),
        "INFERLINE_AWS_PORT": str(free_port()),
        "INFERLINE_API_KEY": "bench-key",
    }
    os.environ.update(env)  # LocalConfig below reads the same home
    from local_runtime.config import LocalConfig
    from local_runtime.up import ensure_demo_model
    from model_artifacts.bundle import ModelBundle

    config = LocalConfig()
    results: dict[str, Any] = {
        "run": {
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
            "python": platform.python_version(),
            "command": "bench/bench_batch.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "load_average_before": os.getloadavg(),
            "chunk_max_rows": int(os.environ.get("CHUNK_MAX_ROWS", 50_000)),
            "chunk_max_bytes": int(os.environ.get("CHUNK_MAX_BYTES", 8 * 1024 * 1024)),
            "chunk_workers": 1 + args.workers,
        }
    }
    proc = None
    workers: list[subprocess.Popen] = []
    try:
        print(f"training the demo model as `inferline up` does (home {home}) ...", flush=True)
        bundle = ModelBundle.load(ensure_demo_model(config))
        print(f"writing {args.rows:,} rows and scoring them in-process ...", flush=True)
        csv_path = work / "requests.csv"
        file_info = write_file_and_score(csv_path, args.rows, args.bad_share, args.seed, bundle)
        results["file"] = {k: v for k, v in file_info.items() if k not in ("expected", "timing", "frames")}
        results["file"]["generate_write_s"] = round(file_info["timing"]["generate_write_s"], 2)
        results["in_process"] = in_process_summary(file_info)
        print(
            f"  in-process predict_proba: {results['in_process']['predict_proba_rows_per_s']:,.0f} rows/s",
            flush=True,
        )

        print("starting `inferline up` ...", flush=True)
        started = time.perf_counter()
        proc = start_runtime(home, env, timeout=300)
        results["run"]["runtime_start_s"] = round(time.perf_counter() - started, 1)
        pids = runtime_pids(home, proc.pid)
        workers = start_chunk_workers(args.workers, env, home)
        pids |= {f"chunk worker {i + 1}": w.pid for i, w in enumerate(workers)}
        time.sleep(2)  # their imports, as a warm Lambda has done them
        print(f"submitting {csv_path.name} ({file_info['bytes']:,} bytes) ...", flush=True)
        job = run_job(config.api_url, config.api_key, csv_path, args.job_timeout, pids)
        final = job["job"]
        results["end_to_end"] = {
            "status": final.get("status"),
            "failure_reason": final.get("failure_reason"),
            "total_chunks": final.get("total_chunks"),
            "rows_ok": final.get("rows_ok"),
            "rows_failed": final.get("rows_failed"),
            "upload_s": round(job["upload_s"], 2),
            "wall_s": round(job["wall_s"], 2),
            "rows_per_s": args.rows / job["wall_s"],
            "cpu_s_during_job": job["cpu_s"],
        }
        print(
            f"  job {final.get('status')} in {job['wall_s']:.1f} s: "
            f"{results['end_to_end']['rows_per_s']:,.0f} rows/s",
            flush=True,
        )
        print("timing in-process predict_proba again on the same frames ...", flush=True)
        results["in_process"] = in_process_summary(file_info, repeat_in_process(bundle, file_info))
        if final.get("status") == "succeeded":
            results["checks"] = check_outputs(final, file_info, work)
        else:
            results["checks"] = {"accounted": False}
        results["memory_mb"] = {
            name: {
                "peak_rss_VmHWM": round(status_mb(pid, "VmHWM"), 1),
                "rss_now": round(status_mb(pid, "VmRSS"), 1),
            }
            for name, pid in pids.items()
        }
        if args.profile_rows:
            print(f"profiling one {args.profile_rows:,}-row chunk in this process ...", flush=True)
            results["profile"] = profile_chunk(csv_path, env, min(args.profile_rows, args.rows), pids)
    finally:
        stop_chunk_workers(workers)
        if proc is not None:
            stop_runtime(proc)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["run"]["load_average_after"] = os.getloadavg()
    results["ratios"] = ratios(results)
    results["cpu_budget"] = cpu_budget(results)

    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
    report = markdown(results)
    kept = ""  # what follows HAND_WRITTEN in the summary is kept: notes and other scripts' results
    if args.summary.exists() and HAND_WRITTEN in (previous := args.summary.read_text()):
        kept = "\n" + HAND_WRITTEN + previous.split(HAND_WRITTEN, 1)[1]
    args.summary.write_text(report + kept)
    print("\n" + report)
    print(f"wrote {args.results} and {args.summary}")
    return 0 if all(r["met"] for r in results["ratios"].values()) else 1


def ratios(results: dict) -> dict:
    e2e, local = results["end_to_end"], results["in_process"]
    pct = 100 * e2e["rows_per_s"] / local["predict_proba_rows_per_s"]
    peak = max(
        m["peak_rss_VmHWM"]
        for name, m in results["memory_mb"].items()
        if name.startswith(("up ", "chunk worker"))
    )
    return {
        "rows_accounted": {
            "value": results["checks"]["accounted"],
            "target": "all",
            "met": results["checks"]["accounted"],
        },
        "end_to_end_rows_per_s_pct_of_in_process": {
            "value": pct,
            "target": f">= {TARGETS['rows_per_s_pct']}",
            "met": pct >= TARGETS["rows_per_s_pct"],
        },
        "worker_peak_rss_mb": {
            "value": peak,
            "target": f"< {TARGETS['worker_peak_mb']:.0f}",
            "met": peak < TARGETS["worker_peak_mb"],
        },
    }


def cpu_budget(results: dict) -> dict:
    """CPU per input row by process during the job, and the rows/s those costs allow on this
    machine's cores even if every core were busy with this job all the time."""
    rows, e2e = results["file"]["rows"], results["end_to_end"]
    cpu = e2e["cpu_s_during_job"]
    total = sum(cpu.values())
    cores = os.cpu_count() or 1
    ceiling = rows / (total / cores) if total else float("inf")
    return {
        "us_per_row": {name: 1e6 * v / rows for name, v in cpu.items()},
        "total_us_per_row": 1e6 * total / rows,
        "cores": cores,
        "ceiling_rows_per_s": ceiling,
        "ceiling_pct_of_in_process": 100 * ceiling / results["in_process"]["predict_proba_rows_per_s"],
        "cores_used": total / e2e["wall_s"],
        "cpu_pct_of_in_process": 100
        * results["in_process"]["predict_proba_cpu_us_per_row"]
        / (1e6 * total / rows),
    }


def markdown(results: dict) -> str:
    run, file, local, e2e = results["run"], results["file"], results["in_process"], results["end_to_end"]
    checks = results["checks"]
    budget = cpu_budget(results)
    passes = " and ".join(f"{v:.2f} s" for v in local.get("predict_proba_passes_s", []))
    lines = [
        "# Batch benchmark (local runtime)",
        "",
        f"Written by `{run['command'].strip()}` on {run['when']}: {run['machine']}, Python {run['python']}; "
        f"chunks of at most {run['chunk_max_rows']:,} rows / {run['chunk_max_bytes']:,} bytes, "
        f"{run['chunk_workers']} chunk workers; load average "
        f"{run['load_average_before'][0]:.1f} before, {run['load_average_after'][0]:.1f} after (the machine "
        "is shared). One run: the in-process side and the runtime share this machine but not in time.",
        "",
        f"File: {file['rows']:,} rows ({file['bytes']:,} bytes), of which {file['bad_rows']:,} "
        "bad on purpose "
        f"({', '.join(f'{k} {v}' for k, v in file['bad_by_kind'].items())}).",
        "",
        "| what | seconds | rows/s |",
        "| --- | ---: | ---: |",
        f"| in-process `pipeline.predict_proba`, {local['frame_rows']:,}-row frames, "
        f"{local['scored_rows']:,} good rows (faster of two passes: {passes}) "
        f"| {local['predict_proba_s']:.2f} | {local['predict_proba_rows_per_s']:,.0f} |",
        "| in-process feature join + frame + predict_proba (first pass, information) | "
        f"{local['join_frame_predict_s']:.2f} | "
        f"{local['join_frame_predict_rows_per_s']:,.0f} |",
        f"| end to end: submit (upload {e2e['upload_s']:.1f} s) to job {e2e['status']}, "
        f"{e2e['total_chunks']} chunk(s) "
        f"| {e2e['wall_s']:.1f} | {e2e['rows_per_s']:,.0f} |",
        "",
        f"Job: rows_ok {e2e['rows_ok']:,}, rows_failed {e2e['rows_failed']:,}."
        + (
            f" Downloaded results.csv {checks['results']['rows']:,} rows, "
            f"errors.csv {checks['errors']['rows']:,} "
            f"rows; row numbers missing {checks['rows_missing']}, duplicated {checks['rows_duplicated']}; "
            f"scores vs in-process max |diff| {checks['results']['max_abs_score_diff_vs_in_process']:.1e}."
            if "results" in checks
            else f" Failure: {e2e.get('failure_reason')}"
        ),
        "",
        "| process | peak RSS (VmHWM) MB | RSS at end MB |",
        "| --- | ---: | ---: |",
    ]
    for name, m in results["memory_mb"].items():
        lines.append(f"| {name} | {m['peak_rss_VmHWM']:.0f} | {m['rss_now']:.0f} |")
    lines += ["", "| ratio | value | target | met |", "| --- | ---: | --- | --- |"]
    labels = {
        "rows_accounted": "every row in exactly one output, counts match",
        "end_to_end_rows_per_s_pct_of_in_process": "end-to-end rows/s, % of in-process predict_proba rows/s",
        "worker_peak_rss_mb": "peak RSS of a process running batch workers (MB)",
    }
    for key, label in labels.items():
        r = results["ratios"][key]
        value = ("yes" if r["value"] else "NO") if isinstance(r["value"], bool) else f"{r['value']:.2f}"
        lines.append(f"| {label} | {value} | {r['target']} | {'yes' if r['met'] else 'NO'} |")
    lines += [
        "",
        "## Where the time goes",
        "",
        f"CPU used by each process during the job ({e2e['wall_s']:.1f} s wall, {budget['cores_used']:.2f} of "
        f"{budget['cores']} cores on average; the rest went to whatever else ran on the machine):",
        "",
        "| process | CPU s | CPU µs per input row | share |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, seconds in e2e["cpu_s_during_job"].items():
        per_row = budget["us_per_row"][name]
        lines.append(
            f"| {name} | {seconds:.1f} | {per_row:.1f} | {100 * per_row / budget['total_us_per_row']:.0f}% |"
        )
    lines += [
        f"| all | {sum(e2e['cpu_s_during_job'].values()):.1f} | {budget['total_us_per_row']:.1f} | 100% |",
        "",
        f"The ceiling this sets: {budget['total_us_per_row']:.1f} CPU µs per row on {budget['cores']} cores "
        f"is at best {budget['ceiling_rows_per_s']:,.0f} rows/s, "
        f"{budget['ceiling_pct_of_in_process']:.1f}% of in-process, if every core did nothing but this job "
        "all the time. For scale: in-process predict_proba takes "
        f"{1e6 * local['predict_proba_s'] / local['scored_rows']:.1f} µs of wall time and "
        f"{local['predict_proba_cpu_us_per_row']:.1f} µs of CPU per row (the libraries' default threads), "
        "work the model server also does, on one thread, inside its share above. CPU per row is what the "
        "machine's other tenants disturb least: end to end spends "
        f"{budget['total_us_per_row'] / local['predict_proba_cpu_us_per_row']:.1f} times the CPU of "
        f"in-process predict_proba per row ({budget['cpu_pct_of_in_process']:.1f}% by that measure).",
    ]
    profile = results.get("profile")
    if profile:
        lines += [
            "",
            f"### One {profile['rows']:,}-row chunk in detail",
            "",
            "`batch.chunk.process_chunk` run in the benchmark process against the running runtime "
            f"(moto server, model server), a new job so its stored features are fetched cold: "
            f"{profile['wall_s']:.2f} s, {profile['rows_per_s']:,.0f} rows/s. CPU seconds meanwhile: "
            + ", ".join(f"{k} {v:.2f}" for k, v in profile["cpu_s"].items())
            + ".",
            "",
            "| stage (wall; stages nest, and `_score` runs in endpoint threads) | seconds | share |",
            "| --- | ---: | ---: |",
        ]
        for name, seconds in profile["stages_s"].items():
            lines.append(f"| {name} | {seconds:.2f} | {100 * seconds / profile['wall_s']:.0f}% |")
        lines += ["", "| AWS API operation (wall, client side) | calls | seconds |", "| --- | ---: | ---: |"]
        for name, op in profile["aws_operations"].items():
            lines.append(f"| {name} | {op['calls']} | {op['wall_s']:.2f} |")
        lines += [
            "",
            "cProfile, top functions by own time (second pass, same chunk size):",
            "",
            "| function | calls | own s | cumulative s |",
            "| --- | ---: | ---: | ---: |",
        ]
        for t in profile["cprofile_top_tottime"][:12]:
            lines.append(
                f"| `{t['function']}` | {t['calls']:,} | {t['tottime_s']:.3f} | {t['cumtime_s']:.3f} |"
            )
    lines += [
        "",
        "Notes:",
        "",
        "- In-process is the model alone on the same good rows (stored features joined, defaults for "
        "unknown users) with the libraries' default thread counts; the ratio uses predict_proba only, "
        "the faster of a pass before and a pass after the job.",
        "- End to end is everything the user waits for: the upload through the presigned URL, S3 "
        "event -> SQS -> split, each chunk (read, parse and validate a column at a time, stored features "
        "once per entity per job per worker, CSV requests to the model server, the chunk's prediction log "
        "as one JSON Lines object plus one index item, parts to S3), assembly (large parts copied by "
        "UploadPartCopy), email. Chunk workers: the one thread `local_runtime.up.start_batch_workers` "
        "runs, plus `--workers` processes running the same handler on the same queue, as Lambda runs "
        "several instances of one function.",
        "- Peak memory: the `up` process also holds the local API and the split and dead-letter pollers; "
        "each extra worker process holds only the chunk handler.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
