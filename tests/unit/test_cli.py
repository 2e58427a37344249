"""The `inferline` CLI commands that work without a running platform."""

from local_runtime.cli import main
from model_artifacts.bundle import ModelBundle

HEADER = "user_id,purchases_30d,avg_order_value,days_since_last_visit,tenure_days\n"


def test_features_load_reports_bad_rows_and_exits_nonzero(aws, tmp_path, capsys):
    path = tmp_path / "users.csv"
    path.write_text(HEADER + "a1,3,10,1,5\na2,-1,x,1,5\n")
    code = main(["features", "load", "purchase-propensity", str(path), "--table", aws.features.name])
    out = capsys.readouterr().out
    assert code == 2
    assert "loaded 1 row(s), rejected 1" in out and "row 3: purchases_30d: must be >= 0" in out
    assert aws.features.get_item(Key={"pk": "user#a1"})["Item"]["tenure_days"] == 5


def test_train_saves_a_version_and_can_make_it_current(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INFERLINE_HOME", str(tmp_path))
    assert main(["train", "purchase-propensity", "--rows", "2000", "--version", "v9", "--current"]) == 0
    saved = ModelBundle.load(tmp_path / "models" / "purchase-propensity" / "v9")
    current = ModelBundle.load(tmp_path / "models" / "purchase-propensity" / "current")
    assert saved.version == current.version == "v9"
    assert 0.5 < saved.metrics["roc_auc"] < 1
    assert "version v9 saved" in capsys.readouterr().out


def test_errors_are_reported_without_a_traceback(capsys):
    assert main(["train", "no-such-model"]) == 1
    assert "error:" in capsys.readouterr().err


# -- HTTP errors as messages ------------------------------------------------------------------------


def fake_api(monkeypatch, answer):
    """The CLI's API client answering every request with answer(request) -> httpx.Response."""
    import httpx

    from local_runtime import cli

    transport = httpx.MockTransport(answer)
    monkeypatch.setattr(
        cli, "_api", lambda config: httpx.Client(base_url="http://api.test", transport=transport)
    )


def test_a_batch_job_whose_status_call_fails_is_an_error_message_not_a_keyerror(
    monkeypatch, tmp_path, capsys
):
    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json={"job_id": "j1", "upload_method": "PUT", "upload_url": "http://s3.test/u",
                                             "upload_headers": {"Content-Type": "text/csv"}})  # fmt: skip
        return httpx.Response(403, json={"error": "forbidden", "message": "Forbidden"})

    fake_api(monkeypatch, answer)
    monkeypatch.setattr("local_runtime.batch_client.httpx.put", lambda *a, **k: httpx.Response(200))
    path = tmp_path / "rows.csv"
    path.write_text("user_id\nu1\n")
    assert main(["batch", "purchase-propensity", str(path), "--email", "a@example.com"]) == 1
    err = capsys.readouterr().err
    assert "error: reading job j1 failed (HTTP 403): forbidden: Forbidden" in " ".join(err.split())
    assert "Traceback" not in err and "'status'" not in err


def test_a_refused_submission_quotes_the_apis_words(monkeypatch, tmp_path, capsys):
    import httpx

    problem = {"error": "invalid_request", "message": "malformed batch job request"}
    fake_api(monkeypatch, lambda request: httpx.Response(400, json=problem))
    path = tmp_path / "rows.csv"
    path.write_text("user_id\nu1\n")
    assert main(["batch", "purchase-propensity", str(path), "--email", "[not an address]"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "submitting the job failed (HTTP 400): invalid_request: malformed batch job request" in err


def test_a_busy_api_is_asked_again_while_following_a_job(monkeypatch):
    import httpx
    from rich.console import Console

    from local_runtime.batch_client import follow_job

    answers = iter([httpx.Response(503, text="busy"), httpx.Response(200, json={"status": "succeeded"})])
    api = httpx.Client(
        base_url="http://api.test", transport=httpx.MockTransport(lambda request: next(answers))
    )
    monkeypatch.setattr("local_runtime.batch_client.time.sleep", lambda seconds: None)
    assert follow_job(api, "j1", 60, Console(quiet=True))["status"] == "succeeded"


def test_an_api_that_cannot_be_reached_is_said_so(monkeypatch, capsys):
    import httpx

    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    fake_api(monkeypatch, refuse)
    assert main(["predict", "purchase-propensity", "--instance", '{"user_id": "u1"}']) == 1
    assert "could not reach http://api.test/v1/models/purchase-propensity/predict" in capsys.readouterr().err


def test_the_api_client_waits_out_a_429_as_retry_after_says(monkeypatch):
    import httpx

    from local_runtime import api_client as module

    answers = [httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(429), httpx.Response(200)]
    sent, slept = [], []

    def answer(self, request):
        sent.append(request)
        return answers.pop(0)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", answer)
    monkeypatch.setattr(module.time, "sleep", slept.append)
    with module.api_client("http://127.0.0.1:1", "k") as api:
        reply = api.post("/v1/feedback", json={"feedback": []})
    assert reply.status_code == 200 and len(sent) == 3 and slept == [2.0, 1.0]
    assert all(r.headers["x-api-key"] == "k" and r.content == sent[0].content for r in sent)
