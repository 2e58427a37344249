"""Batch predictions over HTTP: submit a job, upload the CSV to the returned URL, follow the
job until it ends, and download both outputs. Every input row lands in exactly one."""

from __future__ import annotations

import csv
import io
import time

import httpx
import pytest

pytestmark = pytest.mark.integration

MODEL = "purchase-propensity"
HEADER = "user_id,price,category,device,country,session_pages,hour_of_day,discount_pct,email"
ROWS = [
    "u00001,10.5,books,mobile,US,3,12,0,a@example.com",
    "u00002,-1,books,mobile,US,3,12,0,",  # price out of range
    'u00003,20,home,desktop,GB,1,1,5,"x,y@example.com"',  # quoted comma
    "u00004,12,toys,tablet,DE,two,8,0,",  # wrong type
    'stranger,99.9,beauty,mobile,JP,4,23,50,"multi\nline"',  # quoted newline, unknown user
]


def wait_for_end(api: httpx.Client, job_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/v1/batch-jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.5)
    pytest.fail(f"batch job {job_id} did not end in {timeout}s: {job}")


def submit_and_upload(api: httpx.Client, content: bytes, **extra) -> str:
    reply = api.post(f"/v1/models/{MODEL}/batch-jobs", json={"email": "owner@example.com", **extra})
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["status"] == "awaiting_upload" and "email" not in job
    put = httpx.put(job["upload_url"], content=content, headers=job["upload_headers"], timeout=30)
    assert put.status_code == 200, put.text
    return job["job_id"]


def test_a_csv_job_accounts_for_every_row(target):
    content = ("\r\n".join([HEADER, *ROWS]) + "\r\n").encode("utf-8-sig")  # BOM and CRLF too
    with target.client() as api:
        job = wait_for_end(api, submit_and_upload(api, content))
    assert job["status"] == "succeeded", job
    assert (job["rows_ok"], job["rows_failed"]) == (3, 2)
    results = list(csv.DictReader(io.StringIO(httpx.get(job["results_url"]).text)))
    errors = list(csv.DictReader(io.StringIO(httpx.get(job["errors_url"]).text)))
    assert [r["user_id"] for r in results] == ["u00001", "u00003", "stranger"]  # input order
    assert all(0 <= float(r["score"]) <= 1 and r["prediction_id"] for r in results)
    assert {e["row"]: e["reason"] for e in errors} == {
        "3": "price: must be >= 0",
        "5": "session_pages: must be an integer, got a string",
    }
    assert len(results) + len(errors) == len(ROWS)


def test_an_upload_url_takes_one_file_only(target):
    """A second PUT to the same URL would replace the file under a job already running or
    done: S3 refuses it (If-None-Match: *), and the first file's job goes on."""
    content = ("\n".join([HEADER, ROWS[0]]) + "\n").encode()
    with target.client() as api:
        reply = api.post(f"/v1/models/{MODEL}/batch-jobs", json={"email": "owner@example.com"})
        job = reply.json()
        put = httpx.put(job["upload_url"], content=content, headers=job["upload_headers"], timeout=30)
        assert put.status_code == 200, put.text
        again = httpx.put(job["upload_url"], content=content + content, headers=job["upload_headers"])
        assert again.status_code == 412, again.text
        final = wait_for_end(api, job["job_id"])
    assert final["status"] == "succeeded" and (final["rows_ok"], final["rows_failed"]) == (1, 0)


def test_a_multipart_upload_through_presigned_urls(target, tmp_path):
    from local_runtime.batch_client import upload_parts

    path = tmp_path / "big.csv"
    path.write_bytes(("\n".join([HEADER, *ROWS]) + "\n").encode())
    with target.client() as api:
        request = {"email": "owner@example.com", "size": path.stat().st_size, "multipart": True}
        reply = api.post(f"/v1/models/{MODEL}/batch-jobs", json=request)
        assert reply.status_code == 201, reply.text
        job = reply.json()
        assert job["upload_method"] == "multipart" and len(job["parts"]) == 1
        upload_parts(job, path, lambda n: None)  # the CLI's part uploads and completion
        final = wait_for_end(api, job["job_id"])
    assert final["status"] == "succeeded", final
    assert (final["rows_ok"], final["rows_failed"]) == (3, 2)


def test_a_multipart_upload_of_full_size_parts(target, tmp_path):
    """A file larger than a part (parts are at least S3's 5 MiB minimum), uploaded in parallel
    parts with rows cut across the part boundary: the assembled file is processed row for row."""
    from local_runtime.batch_client import upload_parts

    email = "x" * 230 + "@example.com"  # long rows: fewer of them to fill the parts
    good = ROWS[0].split(",", 1)[1].rsplit(",", 1)[0] + "," + email
    with target.client() as api:
        probe = {"email": "owner@example.com", "size": 1, "multipart": True}
        part_size = api.post(f"/v1/models/{MODEL}/batch-jobs", json=probe).json()["part_size"]
        assert part_size >= 5 * 2**20
        lines, size, n = [HEADER], len(HEADER) + 1, 0
        while size < part_size + 2**20:  # one full part and a short last one
            line = f"u{n % 2000:05d},{good}" if n % 1000 else ROWS[1]  # one bad row in 1,000
            lines.append(line)
            size += len(line) + 1
            n += 1
        path = tmp_path / "large.csv"
        path.write_bytes(("\n".join(lines) + "\n").encode())
        request = {"email": "owner@example.com", "size": path.stat().st_size, "multipart": True}
        job = api.post(f"/v1/models/{MODEL}/batch-jobs", json=request).json()
        assert len(job["parts"]) == 2
        upload_parts(job, path, lambda n: None)
        final = wait_for_end(api, job["job_id"], timeout=240)
    assert final["status"] == "succeeded", final
    bad = len(range(0, n, 1000))
    assert (final["rows_ok"], final["rows_failed"]) == (n - bad, bad)


def test_a_wrong_header_fails_the_job_with_a_reason(target):
    with target.client() as api:
        job = wait_for_end(api, submit_and_upload(api, b"user_id,prize\nu1,3\n"))
    assert job["status"] == "failed"
    assert "price" in job["failure_reason"] and "prize" in job["failure_reason"]


def test_bad_submissions_are_4xx(target):
    with target.client() as api:
        assert api.post("/v1/models/nope/batch-jobs", json={"email": "a@example.com"}).status_code == 404
        assert api.post(f"/v1/models/{MODEL}/batch-jobs", json={"email": "not-an-address"}).status_code == 400
        assert api.post(f"/v1/models/{MODEL}/batch-jobs", content=b"{oops").status_code == 400
        assert api.get("/v1/batch-jobs/no-such-job").status_code == 404


def test_the_email_lands_in_the_outbox(local_target):
    with local_target.client() as api:
        job_id = submit_and_upload(api, ("\n".join([HEADER, ROWS[0]]) + "\n").encode(), file_name="leads.csv")
        assert wait_for_end(api, job_id)["status"] == "succeeded"
    mails = [p.read_text() for p in (local_target.home / "outbox").glob("*.eml")]
    mine = [m for m in mails if job_id in m]
    assert len(mine) == 1 and "To: owner@example.com" in mine[0]
    assert "Subject: inferline batch predictions for leads.csv: 1 of 1 rows predicted" in mine[0]
