"""Submitting a batch job: a presigned PUT for a small file, a presigned multipart upload for a
large one; a multipart upload assembled on moto starts the job like any other upload."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest
from test_batch import HEADER, MODEL, OWNER, good_row
from test_batch import batch as batch  # noqa: F401  (the fixture, shared)

from batch import api
from inferline import jobs
from inferline.clients import Client
from inferline.resources import upload_key
from inferline.spec import load_spec

CLIENT = Client("tests", ("example.com",))  # the client whose key sent the requests


def submit(batch, **fields) -> dict:  # noqa: F811
    reply = api.submit_job(
        MODEL,
        json.dumps({"email": OWNER} | fields),
        batch.services.jobs,
        batch.aws.s3,
        batch.aws.data_bucket,
        load_spec,
        upload_expiry_seconds=600,
        client=CLIENT,
    )
    return json.loads(reply["body"]) | {"http": reply["statusCode"]}


def test_a_small_file_gets_one_presigned_put(batch):  # noqa: F811
    for fields in ({}, {"size": 1000}, {"size": api.MULTIPART_THRESHOLD - 1, "multipart": False}):
        job = submit(batch, **fields)
        assert job["http"] == 201 and job["upload_method"] == "PUT"
        assert urlparse(job["upload_url"]).path.endswith(upload_key(MODEL, job["job_id"]))
        assert "email" not in job


@pytest.mark.parametrize(
    "name", ["ventes\u00a0mars.csv", "گزارش\u200cها.csv", "売上\u3000一月.csv", "👩\u200d💻.csv"]
)
def test_file_names_in_any_script_are_taken(batch, name):  # noqa: F811
    assert submit(batch, file_name=name)["http"] == 201


def test_a_large_file_gets_a_presigned_multipart_upload(batch):  # noqa: F811
    size = 4 * api.MIN_PART_SIZE + 1  # just over MULTIPART_THRESHOLD
    job = submit(batch, size=size)
    assert job["http"] == 201 and job["upload_method"] == "multipart"
    assert job["part_size"] == api.MIN_PART_SIZE
    assert [p["part_number"] for p in job["parts"]] == [1, 2, 3, 4, 5]
    for part in job["parts"]:
        url = urlparse(part["url"])
        query = parse_qs(url.query)
        assert url.path.endswith(upload_key(MODEL, job["job_id"]))
        assert query["uploadId"] == [job["upload_id"]] and query["partNumber"] == [str(part["part_number"])]
    assert parse_qs(urlparse(job["complete_url"]).query)["uploadId"] == [job["upload_id"]]
    assert job["complete_method"] == "POST"
    uploads = batch.aws.s3.list_multipart_uploads(Bucket=batch.aws.data_bucket)["Uploads"]
    assert [u["UploadId"] for u in uploads] == [job["upload_id"]]

    # a huge file: never more than MAX_PARTS URLs, parts grow instead
    huge = submit(batch, size=api.MAX_PARTS * api.MIN_PART_SIZE * 10)
    assert len(huge["parts"]) <= api.MAX_PARTS and huge["part_size"] == 10 * api.MIN_PART_SIZE


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"size": "big"}, "size"),
        ({"size": 0}, "size"),
        ({"size": True}, "size"),
        ({"multipart": True}, "size"),
        ({"multipart": "yes", "size": 10}, "multipart"),
        ({"size": api.MAX_PARTS * api.MAX_PART_SIZE + 1}, "size"),
        ({"file_name": ""}, "file_name"),
        ({"file_name": "leads.csv\r\nBcc: someone@example.com"}, "file_name"),  # mail headers
        ({"file_name": "leads\u2028.csv"}, "file_name"),
        ({"colour": "red"}, "colour"),  # an unknown field is named
    ],
)
def test_malformed_requests_name_the_field(batch, fields, field):  # noqa: F811
    job = submit(batch, **fields)
    assert job["http"] == 400 and job["details"][0]["field"] == field


def test_a_multipart_upload_is_assembled_and_processed(batch, monkeypatch):  # noqa: F811
    import moto.s3.models

    # parts of a few hundred bytes instead of 5 MiB, on both sides
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 256)
    monkeypatch.setattr(api, "MIN_PART_SIZE", 300)
    data = (HEADER + "\n" + "\n".join(good_row(i) for i in range(40)) + "\n").encode()
    job = submit(batch, size=len(data), multipart=True)
    assert len(job["parts"]) == -(-len(data) // 300) > 3

    # what the CLI does with the presigned URLs, as the same S3 calls
    s3, bucket, key = batch.aws.s3, batch.aws.data_bucket, upload_key(MODEL, job["job_id"])
    etags = []
    for part in job["parts"]:
        start = (part["part_number"] - 1) * job["part_size"]
        reply = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=job["upload_id"],
            PartNumber=part["part_number"],
            Body=data[start : start + job["part_size"]],
        )
        etags.append({"PartNumber": part["part_number"], "ETag": reply["ETag"]})
    assert jobs.get_job(batch.services.jobs, job["job_id"])["status"] == jobs.AWAITING_UPLOAD
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=job["upload_id"], MultipartUpload={"Parts": etags}
    )
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data

    assert batch.split(key)["action"] == "split"
    from batch.chunk import process_chunk

    for body in batch.messages():
        process_chunk(batch.services, body)
    final = jobs.get_job(batch.services.jobs, job["job_id"])
    assert final["status"] == jobs.SUCCEEDED and final["rows_ok"] == 40 and final["rows_failed"] == 0
    assert [int(r["row"]) for r in batch.output(final, "results")] == list(range(2, 42))
