"""A batch job from the client's side, over HTTP only: submit, upload the file to the
presigned URL (streamed, with a progress bar; a large file as a multipart upload, several parts
at once), and follow the job until it ends."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn

FINAL = ("succeeded", "failed")
PART_UPLOADS = 4  # multipart: parts in flight at once
RETRY_STATUSES = (429, 500, 502, 503, 504)  # while following a job: worth asking again


class ApiError(RuntimeError):
    """The API answered with an error: which call, the HTTP status, and the API's own words."""

    def __init__(self, what: str, reply: httpx.Response):
        try:
            body = reply.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            said = f"{body.get('error', '')}: {body.get('message', '')}".strip(": ")
        else:
            said = reply.text[:300]
        super().__init__(f"{what} failed (HTTP {reply.status_code}){': ' + said if said else ''}")
        self.status = reply.status_code


def checked(reply: httpx.Response, what: str, ok: tuple[int, ...] = (200,)) -> dict:
    """The reply's JSON object, or ApiError saying what the API answered instead."""
    if reply.status_code not in ok:
        raise ApiError(what, reply)
    try:
        body = reply.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(what, reply)
    return body


def submit_file(api: httpx.Client, model: str, path: Path, email: str, console: Console) -> dict:
    """Submit a job for the file and upload it; the API answers with a multipart upload for a
    large file (it is told the size), and then the parts go up several at a time."""
    size = path.stat().st_size
    request = {"email": email, "file_name": path.name, "size": size}
    job = checked(api.post(f"/v1/models/{model}/batch-jobs", json=request), "submitting the job", ok=(201,))
    with Progress(TextColumn("uploading {task.description}"), BarColumn(), DownloadColumn(),
                  console=console, transient=True) as progress:  # fmt: skip
        task = progress.add_task(path.name, total=size)
        if job.get("upload_method") == "multipart":
            upload_parts(job, path, lambda n: progress.advance(task, n))
            console.print(
                f"uploaded {path.name} ({size:,} bytes, {len(job['parts'])} parts) as job {job['job_id']}"
            )
            return job

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


def upload_parts(job: dict, path: Path, advance) -> None:
    """Each part's byte range PUT to its presigned URL, then the upload completed (S3 assembles
    the object, and that starts the job)."""
    part_size = job["part_size"]

    def put(part: dict) -> tuple[int, str]:
        with path.open("rb") as f:
            f.seek((part["part_number"] - 1) * part_size)
            data = f.read(part_size)
        reply = httpx.put(part["url"], content=data, timeout=600)
        if reply.status_code != 200:
            raise RuntimeError(
                f"part {part['part_number']} refused (HTTP {reply.status_code}): {reply.text[:500]}"
            )
        advance(len(data))
        return part["part_number"], reply.headers["ETag"]

    with ThreadPoolExecutor(max_workers=PART_UPLOADS) as pool:
        etags = sorted(pool.map(put, job["parts"]))
    body = (
        "<CompleteMultipartUpload>"
        + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>" for n, etag in etags
        )
        + "</CompleteMultipartUpload>"
    )
    reply = httpx.post(job["complete_url"], content=body.encode(), timeout=600)
    # S3 can answer 200 and still report an error in the body
    if reply.status_code != 200 or "<Error>" in reply.text:
        raise RuntimeError(f"completing the upload failed (HTTP {reply.status_code}): {reply.text[:500]}")


def follow_job(api: httpx.Client, job_id: str, timeout: float, console: Console) -> dict:
    deadline = time.monotonic() + timeout
    columns = (TextColumn("job {task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[state]}"))  # fmt: skip
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(job_id[:8], total=None, state="waiting for the upload")
        while time.monotonic() < deadline:
            reply = api.get(f"/v1/batch-jobs/{job_id}")
            if reply.status_code in RETRY_STATUSES:  # the platform is busy or restarting: ask again
                progress.update(task, state=f"the API answered {reply.status_code}; asking again")
                time.sleep(2)
                continue
            job = checked(reply, f"reading job {job_id}")
            if job.get("total_chunks"):
                progress.update(task, total=job["total_chunks"], completed=job.get("chunks_done") or 0)
            progress.update(task, state=f"{job['status']}: {job.get('rows_ok') or 0:,} ok, "
                                        f"{job.get('rows_failed') or 0:,} failed")  # fmt: skip
            if job["status"] in FINAL:
                return job
            time.sleep(0.5)
    raise TimeoutError(f"job {job_id} still running after {timeout:.0f}s")
