"""The local API gateway on a real HTTP server: a failing route is a 500 in the API's error
shape on a connection that stays usable; a body that stops arriving is a 408 that closes the
connection; the health check shows nothing internal without the key."""

from __future__ import annotations

import os
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from inferline import aws as aws_clients
from inferline import contract
from inferline.spec import load_spec
from local_runtime import gateway
from local_runtime.config import LocalConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(aws, monkeypatch, tmp_path):
    """The gateway app on a free port, its feedback Lambda one that crashes."""
    saved = dict(os.environ)
    # The handlers read their settings once, at import: import them under this test's AWS.
    import batch.api_handler  # noqa: F401
    import postprocess.handler  # noqa: F401
    import preprocess.handler  # noqa: F401

    def crashing(event, context):
        raise RuntimeError("injected failure")

    monkeypatch.setattr("feedback.handler.handler", crashing)
    monkeypatch.setattr(gateway, "BODY_TIMEOUT_S", 1.0)
    config = LocalConfig(home=tmp_path, api_port=free_port(), api_key="k", prefix=aws.prefix)
    app = gateway.create_app(config, {"purchase-propensity": "http://127.0.0.1:1"})
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.api_port, log_level="critical"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield config
    finally:
        srv.should_exit = True
        thread.join(10)
        os.environ.clear()
        os.environ.update(saved)
        aws_clients.reset()


def test_a_failing_route_is_a_500_and_the_connection_stays_usable(server):
    def local_port(reply: httpx.Response) -> int:
        return reply.extensions["network_stream"].get_extra_info("socket").getsockname()[1]

    with httpx.Client(base_url=server.api_url, headers={"x-api-key": "k"}) as client:
        reply = client.post("/v1/feedback", json={"feedback": [{"prediction_id": "p", "actual": 1}]})
        assert reply.status_code == 500 and reply.json()["error"] == "internal_error"
        assert reply.headers.get("connection", "").lower() != "close"
        time.sleep(0.2)  # were the server to close the connection, the client would have seen it
        again = client.get("/_local/health")
        assert again.status_code == 200
        assert local_port(again) == local_port(reply), "the 500 cost the client its connection"


def test_a_body_that_stops_arriving_is_a_408_and_the_connection_closes(server):
    with socket.create_connection(("127.0.0.1", server.api_port), timeout=10) as s:
        s.sendall(b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"feedback\"")  # fmt: skip
        started = time.monotonic()
        head = s.recv(4096).decode()
        assert head.startswith("HTTP/1.1 408"), head
        assert time.monotonic() - started < 5
        assert "connection: close" in head.lower()
        s.settimeout(5)
        rest = s.recv(4096)
        while rest:  # the server closes its side
            rest = s.recv(4096)


def test_health_says_only_ok_without_the_key(server):
    assert httpx.get(f"{server.api_url}/_local/health").json() == {"status": "ok"}
    wrong = httpx.get(f"{server.api_url}/_local/health", headers={"x-api-key": "wrong"})
    assert wrong.json() == {"status": "ok"}
    full = httpx.get(f"{server.api_url}/_local/health", headers={"x-api-key": "k"}).json()
    assert full["models"] == ["purchase-propensity"] and "aws" in full


def test_the_gateways_routes_are_the_contracts_paths(server):
    """Every path and method of the OpenAPI document, and nothing else but the local health check."""
    app = gateway.create_app(server, {"purchase-propensity": "http://127.0.0.1:1"})
    served = {(method, route.path) for route in app.routes for method in route.methods - {"HEAD"}}
    document = contract.openapi([load_spec("purchase-propensity")])
    expected = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert served == expected | {("GET", "/_local/health")}
    assert ("POST", "/v1/models/purchase-propensity/predict") in served


def test_the_document_is_served_with_the_key_only(server):
    with httpx.Client(base_url=server.api_url) as client:
        assert client.get(contract.OPENAPI_PATH).status_code == 401
        reply = client.get(contract.OPENAPI_PATH, headers={"x-api-key": "k"})
    assert reply.status_code == 200
    document = contract.openapi([load_spec("purchase-propensity")])
    assert reply.json() == document | {"servers": [{"url": server.api_url}]}


def test_a_model_that_is_not_served_is_404_on_the_templated_path(server):
    """As the deployed API's mock answers: the model list, no workflow started."""
    with httpx.Client(base_url=server.api_url, headers={"x-api-key": "k"}) as client:
        reply = client.post("/v1/models/not-served/predict", json={"instances": [{}]})
    assert reply.status_code == 404
    assert reply.json() == {"error": "unknown_model", "message": "no model named 'not-served'",
                            "models": ["purchase-propensity"]}  # fmt: skip
