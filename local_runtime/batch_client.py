"""A batch job from the client's side, over HTTP only: submit, upload the file to the
presigned URL (streamed, with a progress bar), and follow the job until it ends."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn

FINAL = ("succeeded", "failed")


def submit_file(api: httpx.Client, model: str, path: Path, email: str, console: Console) -> dict:
    reply = api.post(f"/v1/models/{model}/batch-jobs", json={"email": email, "file_name": path.name})
    if reply.status_code != 201:
        raise RuntimeError(f"submit refused (HTTP {reply.status_code}): {reply.text}")
    job = reply.json()
    size = path.stat().st_size
    with Progress(TextColumn("uploading {task.description}"), BarColumn(), DownloadColumn(),
                  console=console, transient=True) as progress:  # fmt: skip
        task = progress.add_task(path.name, total=size)

        def chunks():
            with path.open("rb") as f:
                while block := f.read(1024 * 1024):
                    progress.advance(task, len(block))
                    yield block

        headers = dict(job["upload_headers"]) | {"Content-Length": str(size)}
        put = httpx.put(job["upload_url"], content=chunks(), headers=headers, timeout=600)
    if put.status_code != 200:
        raise RuntimeError(f"upload refused (HTTP {put.status_code}): {put.text[:500]}")
    console.print(f"uploaded {path.name} ({size:,} bytes) as job {job['job_id']}")
    return job


def follow_job(api: httpx.Client, job_id: str, timeout: float, console: Console) -> dict:
    deadline = time.monotonic() + timeout
    columns = (TextColumn("job {task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[state]}"))  # fmt: skip
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(job_id[:8], total=None, state="waiting for the upload")
        while time.monotonic() < deadline:
            job = api.get(f"/v1/batch-jobs/{job_id}").json()
            if job.get("total_chunks"):
                progress.update(task, total=job["total_chunks"], completed=job.get("chunks_done") or 0)
            progress.update(task, state=f"{job['status']}: {job.get('rows_ok') or 0:,} ok, "
                                        f"{job.get('rows_failed') or 0:,} failed")  # fmt: skip
            if job["status"] in FINAL:
                return job
            time.sleep(0.5)
    raise TimeoutError(f"job {job_id} still running after {timeout:.0f}s")
