"""Batch predictions end to end on moto: upload -> split -> chunk workers -> results.csv,
errors.csv and the email, with a fake endpoint that scores rows from their price.

Every test checks the row accounting: each non-blank input row is in exactly one of the
two outputs, in input order.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import random
import time
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from batch import assemble
from batch.chunk import process_chunk
from batch.dead_letter import handle_dead_letter
from batch.notify import fail_job
from batch.services import Services
from batch.split import split_upload
from inferline import jobs
from inferline.features import load_features_csv
from inferline.prediction_log import batch_index_key, batch_prediction_id
from inferline.resources import batch_output_key, table_name, upload_key
from inferline.spec import load_spec

SPEC = load_spec("purchase-propensity")
MODEL = SPEC.name
SENDER = "batch@inferline.example.com"
OWNER = "grace.hopper@example.com"
COLUMNS = [
    "user_id",
    "price",
    "category",
    "device",
    "country",
    "session_pages",
    "hour_of_day",
    "discount_pct",
    "email",
]
HEADER = ",".join(COLUMNS)
REFUSED_PRICE = 666.0  # the fake model answers ModelError for a row with this price


def good_row(i: int, price: float | None = None) -> str:
    price = price if price is not None else (i % 100) + 0.5
    return f"u{i % 5},{price},books,mobile,US,{1 + i % 9},{i % 24},5,user{i}@example.com"


def model_error(status: int, error: str, message: str) -> ClientError:
    """SageMaker's ModelError for a container answer of `status`, as botocore parses it: the
    container's status and body beside "Error"."""
    side = "client" if status < 500 else "server"
    return ClientError(
        {
            "Error": {"Code": "ModelError", "Message": f"Received {side} error ({status}) from primary"},
            "OriginalStatusCode": status,
            "OriginalMessage": json.dumps({"error": error, "message": message}),
        },
        "InvokeEndpoint",
    )


class FakeEndpoint:
    """sagemaker-runtime's invoke_endpoint: score = price / 100 (capped), checks the payload
    (CSV with a header naming the model inputs, as the serving container reads it, or JSON)."""

    def __init__(self):
        self.calls: list[int] = []

    def invoke_endpoint(self, EndpointName, ContentType, Accept, Body):
        assert EndpointName == f"test-{MODEL}"
        if ContentType == "text/csv":
            reader = csv.DictReader(io.StringIO(Body.decode(), newline=""))
            assert reader.fieldnames == SPEC.model_inputs
            numeric = set(SPEC.numeric_inputs)
            instances = [{k: float(v) if k in numeric else v for k, v in r.items()} for r in reader]
        else:
            instances = json.loads(Body)["instances"]
        assert all(list(r) == SPEC.model_inputs for r in instances)
        assert all("email" not in r and "user_id" not in r for r in instances)
        self.calls.append(len(instances))
        if any(r["price"] == REFUSED_PRICE for r in instances):
            raise model_error(400, "x", "price is cursed")
        body = {
            "model": MODEL,
            "model_version": "v7",
            "classes": [0, 1],
            "scores": [min(r["price"] / 100, 1.0) for r in instances],
        }
        return {"Body": io.BytesIO(json.dumps(body).encode())}


@pytest.fixture
def batch(aws, tmp_path):
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="test-batch-chunks")["QueueUrl"]
    ses = boto3.client("ses")
    ses.verify_email_identity(EmailAddress=SENDER)
    dynamodb = boto3.resource("dynamodb")
    load_features_csv(
        aws.features,
        SPEC,
        "user_id,purchases_30d,avg_order_value,days_since_last_visit,tenure_days\nu1,4,55.0,3,700\n",
    )
    services = Services(
        s3=aws.s3,
        bucket=aws.data_bucket,
        jobs=dynamodb.Table(table_name(aws.prefix, "jobs")),
        ses=ses,
        email_sender=SENDER,
        outbox_dir=str(tmp_path / "outbox"),
        sqs=sqs,
        chunks_queue_url=queue,
        features=aws.features,
        predictions=aws.predictions,
        runtime=FakeEndpoint(),
        resource_prefix=aws.prefix,
        link_expiry_seconds=3600,
    )
    return Harness(services, aws)


class Harness:
    def __init__(self, services: Services, aws):
        self.services = services
        self.aws = aws

    def with_chunks(self, rows: int, max_bytes: int = 8 * 1024 * 1024) -> Harness:
        from dataclasses import replace

        self.services = replace(self.services, chunk_max_rows=rows, chunk_max_bytes=max_bytes)
        return self

    def upload(self, data: bytes, email: str | None = OWNER, via_api: bool = True) -> str:
        """Put the file as the API's presigned PUT would (job first) or directly with metadata."""
        if via_api:
            job = jobs.create_job(self.services.jobs, MODEL, email)
            key = upload_key(MODEL, job["job_id"])
            self.aws.s3.put_object(Bucket=self.aws.data_bucket, Key=key, Body=data)
        else:
            key = f"uploads/{MODEL}/my file.csv"
            metadata = {"email": email} if email else {}
            self.aws.s3.put_object(Bucket=self.aws.data_bucket, Key=key, Body=data, Metadata=metadata)
        return key

    def split(self, key: str) -> dict:
        return split_upload(self.services, key)

    def messages(self) -> list[str]:
        """Drain the chunks queue (bodies, in the order sent)."""
        sqs, url, bodies = self.services.sqs, self.services.chunks_queue_url, []
        while True:
            reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
            if not reply.get("Messages"):
                return bodies
            for m in reply["Messages"]:
                bodies.append(m["Body"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def run(self, data: bytes, shuffle: bool = False, **upload) -> dict:
        """Upload, split and process every chunk; returns the job afterwards."""
        result = self.split(self.upload(data, **upload))
        bodies = self.messages()
        if shuffle:
            random.Random(4).shuffle(bodies)
        for body in bodies:
            process_chunk(self.services, body)
        return jobs.get_job(self.services.jobs, result["job_id"])

    def output(self, job: dict, kind: str) -> list[dict]:
        key = batch_output_key(MODEL, job["job_id"], kind)
        body = self.aws.s3.get_object(Bucket=self.aws.data_bucket, Key=key)["Body"].read()
        return list(csv.DictReader(io.StringIO(body.decode(), newline="")))


def log_records(batch: Harness) -> list[list[dict]]:
    """Every prediction log object's records, per object."""
    bucket, s3 = batch.aws.data_bucket, batch.aws.s3
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"predictions/model={MODEL}/").get("Contents", [])
    bodies = [s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed]
    return [[json.loads(line) for line in body.splitlines()] for body in bodies]


def sent_mail() -> list:
    return ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages


def check_accounting(batch: Harness, job: dict, rows: int) -> tuple[list[dict], list[dict]]:
    results, errors = batch.output(job, "results"), batch.output(job, "errors")
    assert job["status"] == jobs.SUCCEEDED
    assert job["rows_ok"] == len(results) and job["rows_failed"] == len(errors)
    assert len(results) + len(errors) == rows
    numbers = sorted(int(r["row"]) for r in results + errors)
    assert numbers == sorted(set(numbers)), "a row appears twice"
    assert [int(r["row"]) for r in results] == sorted(int(r["row"]) for r in results)
    return results, errors


# -- good files -----------------------------------------------------------------------------


def test_a_good_file_is_predicted_in_order_logged_and_emailed(batch, tmp_path):
    rows = [good_row(i) for i in range(7)]
    job = batch.run((HEADER + "\n" + "\n".join(rows) + "\n").encode())
    results, errors = check_accounting(batch, job, 7)
    assert errors == []
    assert list(results[0]) == ["row", *COLUMNS, "prediction_id", "label", "score"]
    assert [r["row"] for r in results] == [str(n) for n in range(2, 9)]
    first = results[0]
    assert first["email"] == "user0@example.com", "the user's own columns come back as given"
    assert first["price"] == "0.5" and first["label"] == "no_purchase"
    assert float(first["score"]) == pytest.approx(0.005)
    assert results[6]["label"] == "no_purchase" and float(results[6]["score"]) == pytest.approx(0.065)
    assert first["prediction_id"] == batch_prediction_id(job["job_id"], 0, 2)

    # the prediction log: like online, source batch, PII erased, features looked up; one JSON
    # Lines object for the chunk, where the retraining dataset builder lists the logs
    (log,) = log_records(batch)
    assert [r["prediction_id"] for r in log] == [r["prediction_id"] for r in results]
    item = log[0]
    assert item["source"] == "batch" and item["model_version"] == "v7"
    assert item["request"]["email"] == "*****"
    assert "user0@example.com" not in json.dumps(log)
    assert log[1]["features"]["purchases_30d"] == 4 and log[1]["entity_known"] is True  # u1
    assert log[0]["features"]["purchases_30d"] == 0 and log[0]["entity_known"] is False  # u0
    assert item["created_at"] == job["started_at"]
    assert batch.aws.predictions.scan(Select="COUNT")["Count"] == 1, "one index item, no item per row"

    # the email: which file, counts, working links to both outputs
    (mail,) = sent_mail()
    assert mail.source == SENDER and mail.destinations["ToAddresses"] == [OWNER]
    assert f"{job['job_id']}.csv" in mail.subject and "7 of 7 rows predicted" in mail.subject
    assert "Rows predicted: 7" in mail.body and "Rows failed:   0" in mail.body
    links = [w for w in mail.body.split() if w.startswith("http")]
    assert len(links) == 2
    for link, kind in zip(links, ("results", "errors"), strict=True):
        url = urlparse(link)
        assert url.path.endswith(batch_output_key(MODEL, job["job_id"], kind))
        query = parse_qs(url.query)
        if "X-Amz-Expires" in query:  # SigV4
            assert query["X-Amz-Expires"] == ["3600"]
        else:  # SigV2: an absolute time
            assert abs(int(query["Expires"][0]) - time.time() - 3600) < 60
    assert "1 hour" in mail.body
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    opened = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert opened["Subject"] == mail.subject and opened["To"] == OWNER and opened["From"] == SENDER
    assert opened.get_content() == mail.body
    assert links[0] in eml.read_text(), "the .eml is readable as it is, links unbroken"
    assert job["notified_at"] and job["finished_at"]


def test_a_file_over_several_chunks_keeps_row_order_whatever_order_chunks_finish(batch):
    rows = [good_row(i) for i in range(103)]
    batch.with_chunks(rows=10)
    job = batch.run((HEADER + "\n" + "\n".join(rows)).encode(), shuffle=True)  # no final newline
    assert job["total_chunks"] == 11 and job["done_chunks"] == list(range(11))
    results, _ = check_accounting(batch, job, 103)
    assert [r["user_id"] for r in results] == [f"u{i % 5}" for i in range(103)]
    assert [r["row"] for r in results] == [str(n) for n in range(2, 105)]
    assert max(batch.services.runtime.calls) <= 10
    assert len(sent_mail()) == 1


def test_chunks_are_also_cut_by_bytes(batch):
    rows = [good_row(i) for i in range(40)]
    batch.with_chunks(rows=1000, max_bytes=300)
    job = batch.run((HEADER + "\n" + "\n".join(rows) + "\n").encode())
    assert job["total_chunks"] > 5
    check_accounting(batch, job, 40)


def test_quoted_fields_with_commas_and_newlines_are_not_cut(batch):
    # user ids with commas, quotes and newlines inside quotes; tiny chunks put boundaries
    # right next to them, where a newline split would cut a record in two
    ids = ['"a,b"', '"line\nbreak"', '"say ""hi"""', '"x\r\ny,z"', "plain"]
    rows = [f"{ids[i % 5]},{i}.5,books,mobile,US,2,3,5," for i in range(25)]
    batch.with_chunks(rows=2)
    job = batch.run((HEADER + "\n" + "\n".join(rows) + "\n").encode())
    results, errors = check_accounting(batch, job, 25)
    assert errors == []
    expected = ["a,b", "line\nbreak", 'say "hi"', "x\r\ny,z", "plain"]
    assert [r["user_id"] for r in results] == [expected[i % 5] for i in range(25)]
    assert [r["row"] for r in results] == [str(n) for n in range(2, 27)]


def test_crlf_and_a_utf8_bom_are_read_like_a_plain_file(batch):
    rows = [good_row(i) for i in range(6)]
    data = b"\xef\xbb\xbf" + ("\r\n".join([HEADER, *rows]) + "\r\n").encode()
    batch.with_chunks(rows=4)
    job = batch.run(data)
    results, errors = check_accounting(batch, job, 6)
    assert errors == [] and "user_id" in results[0]
    assert results[0]["email"] == "user0@example.com", "no \\r left on the last column"


def test_blank_lines_are_not_rows(batch):
    data = (HEADER + "\n" + good_row(1) + "\n\n" + good_row(2) + "\n\r\n\n").encode()
    job = batch.run(data)
    results, _ = check_accounting(batch, job, 2)
    assert [r["row"] for r in results] == ["2", "4"]


# -- bad rows -------------------------------------------------------------------------------


def test_bad_rows_go_to_errors_with_the_online_reasons(batch):
    rows = [
        good_row(0),
        "u1,cheap,books,mobile,US,2,3,5,",  # wrong type
        "u1,10,books,mobile,US,2.5,3,5,",  # not an integer
        "u1,-1,books,mobile,US,2,30,5,",  # two values out of range
        "u1,10,pets,mobile,US,2,3,5,",  # not an allowed value
        ",10,books,mobile,US,2,3,5,",  # required value missing
        "u1,10,books,mobile,US,2,3",  # too few fields
        'u1,"10,books,mobile,US,2,3,5,',  # a quote left open to the end of the file
        good_row(8),
    ]
    batch.with_chunks(rows=3)
    job = batch.run((HEADER + "\n" + "\n".join(rows) + "\n").encode())
    # 9 lines but 8 records: the open quote swallows the last line into row 9
    results, errors = check_accounting(batch, job, 8)
    assert [r["row"] for r in results] == ["2"]
    reasons = {int(e["row"]): e["reason"] for e in errors}
    assert reasons[3] == "price: must be a number, got a string"
    assert reasons[4] == "session_pages: must be an integer, got 2.5"
    assert reasons[5] == "price: must be >= 0; hour_of_day: must be <= 23"
    assert reasons[6].startswith("category: must be one of books")
    assert reasons[7] == "user_id: is required"
    assert reasons[8] == "the row has 7 fields; the header has 9"
    assert reasons[9].startswith("the row is not valid CSV")
    assert errors[0]["raw"] == rows[1]
    mail = sent_mail()[0]
    assert "1 of 8 rows predicted, 7 failed" in mail.subject
    # the refusal log: one record per chunk with refused rows, by field and problem, no values
    objects = batch.aws.s3.list_objects_v2(Bucket=batch.aws.data_bucket, Prefix="refusals/")["Contents"]
    records = [
        json.loads(batch.aws.s3.get_object(Bucket=batch.aws.data_bucket, Key=o["Key"])["Body"].read())
        for o in objects
    ]
    assert len(records) == 3 and sum(r["refused"] for r in records) == 7
    assert {r["source"] for r in records} == {"batch"}
    counted = {(p["field"], p["problem"]): p["count"] for r in records for p in r["problems"]}
    assert counted == {
        ("price", "must be a number, got a string"): 1,
        ("session_pages", "must be an integer"): 1,
        ("price", "must be >= 0"): 1,
        ("hour_of_day", "must be <= 23"): 1,
        ("category", "must be one of books, electronics, fashion, home, sports, toys, grocery, beauty"): 1,
        ("user_id", "is required"): 1,
        (None, "the row has a different number of fields than the header"): 1,
        (None, "the row is not valid CSV"): 1,
    }
    assert "pets" not in json.dumps(records) and "2.5" not in json.dumps(records)


def test_non_utf8_bytes_fail_that_row_only(batch):
    data = (HEADER + "\n" + good_row(0) + "\n").encode()
    data += b"u1,10,books,mobile,US,2,3,5,caf\xe9@example.com\n" + (good_row(2) + "\n").encode()
    job = batch.run(data)
    results, errors = check_accounting(batch, job, 3)
    assert [r["row"] for r in results] == ["2", "4"]
    (error,) = errors
    assert error["row"] == "3" and "not UTF-8" in error["reason"] and "0xe9" in error["reason"]
    assert "caf\\xe9" in error["raw"]


def test_a_row_the_model_refuses_is_an_error_and_the_rest_are_scored(batch):
    rows = [good_row(i) for i in range(9)]
    rows[5] = good_row(5, price=REFUSED_PRICE)
    job = batch.run((HEADER + "\n" + "\n".join(rows) + "\n").encode())
    results, errors = check_accounting(batch, job, 9)
    assert len(results) == 8
    assert errors[0]["row"] == "7" and errors[0]["reason"] == "the model refused the row: price is cursed"
    assert errors[0]["raw"] == rows[5]
    (obj,) = batch.aws.s3.list_objects_v2(Bucket=batch.aws.data_bucket, Prefix="refusals/")["Contents"]
    record = json.loads(batch.aws.s3.get_object(Bucket=batch.aws.data_bucket, Key=obj["Key"])["Body"].read())
    assert record["problems"] == [{"field": None, "problem": "refused by the model", "count": 1}]


def test_a_model_server_error_is_retried_not_blamed_on_the_rows(batch):
    """SageMaker reports any non-2xx container answer as ModelError; a 5xx (the model still
    loading, say) fails the delivery, so SQS retries the chunk, and no row is refused for it."""
    from dataclasses import replace

    class Unready(FakeEndpoint):
        ready = False

        def invoke_endpoint(self, **call):
            if not self.ready:
                self.calls.append(0)
                raise model_error(503, "model_not_ready", "retry shortly")
            return super().invoke_endpoint(**call)

    endpoint = Unready()
    batch.services = replace(batch.services, runtime=endpoint)
    key = batch.upload((HEADER + "\n" + "\n".join(good_row(i) for i in range(64)) + "\n").encode())
    job_id = batch.split(key)["job_id"]
    (body,) = batch.messages()
    with pytest.raises(ClientError):
        process_chunk(batch.services, body)
    assert endpoint.calls == [0]  # one call: the rows were not halved and blamed one by one
    assert jobs.get_job(batch.services.jobs, job_id)["status"] == jobs.RUNNING
    endpoint.ready = True  # the redelivery, once the model is up
    process_chunk(batch.services, body)
    results, errors = check_accounting(batch, jobs.get_job(batch.services.jobs, job_id), 64)
    assert len(results) == 64 and errors == []


def test_a_row_the_model_fails_on_is_an_error_and_the_rest_are_scored(batch):
    """The model raising on one row is a 500 from the container (ModelError): that row alone
    goes to errors.csv, as a refused one does, rather than failing every delivery of the chunk."""
    from dataclasses import replace

    class Fragile(FakeEndpoint):
        def invoke_endpoint(self, **call):
            if b"\n13.5,books" in call["Body"]:  # the row with price 13.5 breaks the model
                self.calls.append(0)
                raise model_error(500, "model_error", "ValueError: boom")
            return super().invoke_endpoint(**call)

    batch.services = replace(batch.services, runtime=Fragile())
    rows = [good_row(i) for i in range(9)]
    rows[3] = good_row(3, price=13.5)
    job = batch.run((HEADER + "\n" + "\n".join(rows) + "\n").encode())
    results, errors = check_accounting(batch, job, 9)
    assert len(results) == 8 and errors[0]["row"] == "5"
    assert errors[0]["reason"] == "the model refused the row: ValueError: boom"


def csv_of(rows: int, start: int = 0) -> bytes:
    return (HEADER + "\n" + "\n".join(good_row(i) for i in range(start, start + rows)) + "\n").encode()


def test_an_upload_replaced_while_its_chunks_run_fails_the_job_rather_than_mix_files(batch):
    """The presigned URL is good for an hour: a second PUT replaces the file while its chunks
    wait. Their byte ranges are the first file's: each chunk reads the version the splitter
    planned, or the job fails saying why (it used to score rows cut at the old offsets)."""
    batch.with_chunks(rows=10)
    key = batch.upload(csv_of(30))
    job_id = batch.split(key)["job_id"]
    bodies = batch.messages()
    batch.aws.s3.put_object(Bucket=batch.aws.data_bucket, Key=key, Body=csv_of(45, start=100))
    for body in bodies:
        process_chunk(batch.services, body)
    job = jobs.get_job(batch.services.jobs, job_id)
    assert job["status"] == jobs.FAILED and "uploaded again" in job["failure_reason"]
    assert job.get("chunks_done", 0) == 0
    (mail,) = sent_mail()
    assert "Submit a new job" in mail.body
    # the second upload's own event: the job is over, and the new file is not split into it
    assert batch.split(key)["action"] == "skipped" and batch.messages() == []


def test_a_second_upload_event_for_a_running_job_fails_it(batch):
    batch.with_chunks(rows=10)
    key = batch.upload(csv_of(30))
    job_id = batch.split(key)["job_id"]
    batch.messages()
    batch.aws.s3.put_object(Bucket=batch.aws.data_bucket, Key=key, Body=csv_of(45, start=100))
    result = batch.split(key)  # the new version's event, while the first file's chunks run
    assert result["action"] == "failed" and batch.messages() == []
    assert jobs.get_job(batch.services.jobs, job_id)["status"] == jobs.FAILED


def test_a_split_overtaken_by_the_split_of_a_newer_upload_sends_nothing(batch, monkeypatch):
    """Two splits of one job at once (a redelivered event and the new version's): the one that
    started the job running owns it; the other, planned on the older file, stands down."""
    from batch import split as split_module

    plan = split_module.plan_chunks
    key = batch.upload(csv_of(30))
    job_id = key.rsplit("/", 1)[-1].removesuffix(".csv")

    def overtaken(*args, **kwargs):
        planned = plan(*args, **kwargs)
        assert jobs.start_running(batch.services.jobs, job_id, 1, planned[0], source_etag='"newer"')
        return planned

    monkeypatch.setattr(split_module, "plan_chunks", overtaken)
    assert batch.split(key)["action"] == "skipped"
    assert batch.messages() == []
    assert jobs.get_job(batch.services.jobs, job_id)["status"] == jobs.RUNNING


def test_a_direct_upload_replaced_starts_its_own_job_and_fails_the_old_one(batch):
    batch.with_chunks(rows=10)
    first = batch.split(batch.upload(csv_of(30), via_api=False))["job_id"]
    old = batch.messages()
    second = batch.split(batch.upload(csv_of(45, start=100), via_api=False))["job_id"]
    assert second != first
    for body in old + batch.messages():
        process_chunk(batch.services, body)
    assert jobs.get_job(batch.services.jobs, first)["status"] == jobs.FAILED
    results, errors = check_accounting(batch, jobs.get_job(batch.services.jobs, second), 45)
    assert [r["user_id"] for r in results[:2]] == ["u0", "u1"] and errors == []
    assert [int(r["row"]) for r in results] == list(range(2, 47))


# -- bad files: the job fails at once, with an email ----------------------------------------


def failed_with(batch: Harness, data: bytes) -> str:
    job = batch.run(data)
    assert job["status"] == jobs.FAILED
    assert batch.messages() == [], "a refused file sends no chunk"
    (mail,) = sent_mail()
    assert mail.destinations["ToAddresses"] == [OWNER]
    assert "failed" in mail.subject and job["failure_reason"] in mail.body
    return job["failure_reason"]


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n\n", b"  \r\n"])
def test_an_empty_file_fails(batch, data):
    assert failed_with(batch, data).endswith("the file is empty")


@pytest.mark.parametrize("tail", ["", "\n", "\r\n\r\n\n"])
def test_a_header_only_file_fails(batch, tail):
    assert failed_with(batch, (HEADER + tail).encode()).endswith("the file has a header but no rows")


@pytest.mark.parametrize(
    ("columns", "problems"),
    [
        (
            ["user_id", "price", "category", "device", "country", "hour_of_day", "discount_pct"],
            [
                "missing required column 'session_pages' (int)",
            ],
        ),
        (
            [*COLUMNS, "favourite_colour", "shoe_size"],
            [
                "unknown column 'favourite_colour'",
                "unknown column 'shoe_size'",
            ],
        ),
        (
            ["user", *COLUMNS[1:5], "pages", *COLUMNS[6:]],
            [
                "unknown column 'user'",
                "unknown column 'pages'",
                "missing required column 'user_id' (string)",
                "missing required column 'session_pages' (int)",
            ],
        ),
        ([*COLUMNS, "price"], ["column 'price' appears more than once"]),
    ],
    ids=["missing", "extra", "renamed", "duplicate"],
)
def test_a_wrong_header_fails_listing_every_problem(batch, columns, problems):
    data = (",".join(columns) + "\n" + good_row(1) + "\n").encode()
    reason = failed_with(batch, data)
    listed = [line.strip()[2:] for line in reason.splitlines() if line.strip().startswith("- ")]
    assert listed == problems
    assert "Expected columns: user_id, price" in reason and "email (optional)" in reason


def test_the_optional_pii_column_may_be_left_out(batch):
    columns = [c for c in COLUMNS if c != "email"]
    rows = [",".join(good_row(i).split(",")[:-1]) for i in range(3)]
    job = batch.run((",".join(columns) + "\n" + "\n".join(rows) + "\n").encode())
    results, _ = check_accounting(batch, job, 3)
    assert "email" not in results[0]


# -- jobs started by a direct upload ----------------------------------------------------------


def test_a_direct_upload_starts_a_job_mailed_to_the_metadata_address(batch):
    job = batch.run((HEADER + "\n" + good_row(1) + "\n").encode(), via_api=False)
    check_accounting(batch, job, 1)
    assert job["email"] == OWNER and job["source_key"] == f"uploads/{MODEL}/my file.csv"
    (mail,) = sent_mail()
    assert "my file.csv" in mail.subject


@pytest.mark.parametrize("email", [None, "not-an-address", "a@" + "b" * 300 + ".com"])
def test_a_direct_upload_without_a_valid_address_fails_and_mails_nobody(batch, email):
    job = batch.run((HEADER + "\n" + good_row(1) + "\n").encode(), via_api=False, email=email)
    assert job["status"] == jobs.FAILED and "no valid email address" in job["failure_reason"]
    assert batch.messages() == [] and sent_mail() == []


# -- redelivery, poison messages and the dead-letter path ------------------------------------


def test_redelivered_messages_never_duplicate_rows_or_mail(batch):
    rows = [good_row(i) for i in range(12)]
    batch.with_chunks(rows=5)
    key = batch.upload((HEADER + "\n" + "\n".join(rows) + "\n").encode())
    job_id = batch.split(key)["job_id"]
    assert batch.split(key)["action"] == "split", "a split interrupted before running resends"
    bodies = batch.messages()
    assert len(bodies) == 6  # 3 chunks, sent twice: harmless
    first = process_chunk(batch.services, bodies[0])
    assert first["action"] == "processed"
    assert process_chunk(batch.services, bodies[0])["action"] == "skipped"
    job = jobs.get_job(batch.services.jobs, job_id)
    assert job["chunks_done"] == 1 and job["rows_ok"] == 5
    for body in bodies:
        process_chunk(batch.services, body)
    job = jobs.get_job(batch.services.jobs, job_id)
    results, _ = check_accounting(batch, job, 12)
    assert job["chunks_done"] == 3 and job["rows_ok"] == 12
    assert process_chunk(batch.services, bodies[2])["action"] == "skipped"
    assert batch.split(key)["action"] == "skipped"
    assert batch.messages() == [] and len(sent_mail()) == 1

    # a chunk processed again from scratch (its count lost) rewrites the same rows and ids
    assert jobs.mark_chunk_done(batch.services.jobs, job_id, 0, 5, 0) is None
    logs = log_records(batch)
    assert len(logs) == 3 and sum(map(len, logs)) == 12, "one log object per chunk, rewritten on retry"
    index = batch.aws.predictions.scan()["Items"]
    assert sorted(i["prediction_id"] for i in index) == [batch_index_key(job_id, c) for c in range(3)]


def test_a_crash_between_counting_and_assembly_is_finished_by_the_redelivery(batch, monkeypatch):
    batch.with_chunks(rows=2)
    key = batch.upload((HEADER + "\n" + "\n".join(good_row(i) for i in range(4)) + "\n").encode())
    job_id = batch.split(key)["job_id"]
    bodies = batch.messages()
    process_chunk(batch.services, bodies[0])

    def crash(*args, **kwargs):
        raise RuntimeError("worker died")

    monkeypatch.setattr(assemble, "assemble", crash)
    with pytest.raises(RuntimeError):
        process_chunk(batch.services, bodies[1])
    assert jobs.get_job(batch.services.jobs, job_id)["status"] == jobs.RUNNING
    monkeypatch.undo()
    assert process_chunk(batch.services, bodies[1])["action"] == "skipped"  # counted already
    job = jobs.get_job(batch.services.jobs, job_id)
    check_accounting(batch, job, 4)
    assert len(sent_mail()) == 1


def test_dead_lettered_chunk_fails_the_job_with_an_email(batch):
    batch.with_chunks(rows=2)
    key = batch.upload((HEADER + "\n" + "\n".join(good_row(i) for i in range(4)) + "\n").encode())
    job_id = batch.split(key)["job_id"]
    bodies = batch.messages()
    process_chunk(batch.services, bodies[0])
    assert handle_dead_letter(batch.services, bodies[1]) == 1
    job = jobs.get_job(batch.services.jobs, job_id)
    assert job["status"] == jobs.FAILED and "chunk 1 (from row 4)" in job["failure_reason"]
    (mail,) = sent_mail()
    assert "failed" in mail.subject and "chunk 1 (from row 4)" in mail.body
    # later deliveries of the other chunks change nothing and mail nobody again
    assert process_chunk(batch.services, bodies[1])["action"] == "skipped"
    assert handle_dead_letter(batch.services, bodies[1]) == 0
    assert not fail_job(batch.services, job_id, "again")
    assert len(sent_mail()) == 1
    assert handle_dead_letter(batch.services, "{not json") == 0


def test_a_counted_chunk_dead_lettered_blames_the_assembly_not_the_rows(batch, monkeypatch):
    """The last chunk was predicted and counted, then putting results.csv together kept
    failing: the email says so, rather than that a chunk could not be processed."""
    batch.with_chunks(rows=2)
    job_id = batch.split(batch.upload(csv_of(4)))["job_id"]
    first, last = batch.messages()
    process_chunk(batch.services, first)

    def broken(*args, **kwargs):
        raise RuntimeError("S3 is having a bad day")

    monkeypatch.setattr(assemble, "assemble", broken)
    with pytest.raises(RuntimeError):
        process_chunk(batch.services, last)
    assert handle_dead_letter(batch.services, last) == 1
    job = jobs.get_job(batch.services.jobs, job_id)
    assert job["status"] == jobs.FAILED and job["failure_reason"].startswith("every row was predicted")


def test_a_counted_chunk_dead_lettered_early_leaves_the_job_to_its_other_chunks(batch):
    """Counted, then timed out before returning: its job is still running, and the other
    chunks finish it."""
    batch.with_chunks(rows=2)
    job_id = batch.split(batch.upload(csv_of(4)))["job_id"]
    first, last = batch.messages()
    process_chunk(batch.services, first)
    assert handle_dead_letter(batch.services, first) == 0
    process_chunk(batch.services, last)
    check_accounting(batch, jobs.get_job(batch.services.jobs, job_id), 4)
    assert len(sent_mail()) == 1


def test_a_dead_lettered_chunk_of_a_finished_job_retries_its_unsent_email(batch, monkeypatch):
    import batch.notify as notify_module

    job_id = batch.split(batch.upload(csv_of(3)))["job_id"]
    (body,) = batch.messages()

    def broken(*args, **kwargs):
        raise RuntimeError("SES is down")

    monkeypatch.setattr(notify_module, "send", broken)
    with pytest.raises(RuntimeError):
        process_chunk(batch.services, body)  # predicted, counted, assembled; the email fails
    monkeypatch.undo()
    assert jobs.get_job(batch.services.jobs, job_id)["status"] == jobs.SUCCEEDED
    assert handle_dead_letter(batch.services, body) == 0
    (mail,) = sent_mail()
    assert "3 of 3 rows" in mail.subject


def test_one_email_when_several_callers_end_a_job_at_once(batch, monkeypatch):
    """Dead-letter deliveries of several chunks, and workers still running, may all end a job
    at once: one of them sends the email. A sender that fails gives the claim back."""
    from datetime import UTC, datetime, timedelta

    import batch.notify as notify_module

    batch.with_chunks(rows=2)
    job_id = batch.split(batch.upload(csv_of(4)))["job_id"]
    bodies = batch.messages()
    # another caller holds the claim (it is sending right now): nobody else sends
    assert jobs.claim_notification(batch.services.jobs, job_id)
    assert handle_dead_letter(batch.services, bodies[0]) == 1
    assert handle_dead_letter(batch.services, bodies[1]) == 0
    assert sent_mail() == []
    # the claim of a sender that crashed expires; a failed send gives it back at once
    later = datetime.now(UTC) + timedelta(seconds=jobs.NOTIFY_CLAIM_SECONDS + 1)
    assert not jobs.claim_notification(batch.services.jobs, job_id)
    jobs.release_notification(batch.services.jobs, job_id)

    def broken(*args, **kwargs):
        raise RuntimeError("SES is down")

    monkeypatch.setattr(notify_module, "send", broken)
    with pytest.raises(RuntimeError):
        fail_job(batch.services, job_id, "again")
    monkeypatch.undo()
    assert fail_job(batch.services, job_id, "again") is False  # already failed: only the mail
    assert len(sent_mail()) == 1
    assert not jobs.claim_notification(batch.services.jobs, job_id, now=later)  # sent: for good


def test_dead_lettered_upload_event_fails_the_job_it_started(batch):
    key = batch.upload(b"whatever", via_api=False)
    event = {"Records": [s3_record(batch, key)]}
    assert handle_dead_letter(batch.services, json.dumps(event)) == 1
    (mail,) = sent_mail()
    assert mail.destinations["ToAddresses"] == [OWNER] and "could not be read" in mail.body


def s3_record(batch: Harness, key: str) -> dict:
    return {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": batch.aws.data_bucket}, "object": {"key": key.replace(" ", "+")}},
    }
