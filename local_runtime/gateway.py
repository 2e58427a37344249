"""The local API Gateway: HTTP requests in, API Gateway proxy events to the same handlers out.

Its routes are the API contract's (inferline.contract): every path of the OpenAPI document,
served by the operation the document names, as the deployed REST API is:
  predict           the online workflow (preprocess, endpoint, postprocess); the templated
                    path answers 404 unknown_model for a model that is not served, as the
                    deployed API's mock does
  feedback, submit_batch_job, get_batch_job   the Lambda handlers
  get_openapi       the document itself
Every route requires the API key in `x-api-key`: missing is 401, wrong is 403. Bodies over
the size limit are refused with 413 before any handler runs, and a body that stops arriving
gets 408 (and the connection is closed: its framing is lost). No exception leaves a route: a
failure is a 500 in the API's error shape on a connection that stays usable, as API Gateway
answers. GET /_local/health says only "ok" without the key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inferline import contract
from inferline.clients import CLIENTS_ENV
from inferline.spec import load_spec
from inferline.workflow import MAX_BODY_BYTES
from local_runtime.clients import Limiter, lambda_variable, load_clients
from local_runtime.config import LocalConfig
from local_runtime.online_workflow import LocalOnlineWorkflow, context_for

log = logging.getLogger("inferline.gateway")


def api_gateway_event(
    method: str,
    path: str,
    body: bytes | str | None,
    path_parameters: dict | None = None,
    headers: dict | None = None,
    query: dict | None = None,
    source_ip: str = "127.0.0.1",
    api_key_id: str | None = None,
) -> dict:
    """A REST API (v1) proxy integration event, as API Gateway builds it."""
    headers = dict(headers or {})
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    now = datetime.now(UTC)
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "stage": "local",
            "httpMethod": method,
            "path": path,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "identity": {"sourceIp": source_ip, "apiKeyId": api_key_id},  # the key's id, never the key
        },
        "body": body or None,
        "isBase64Encoded": False,
    }


def event_from(request: Request, body: bytes, path_parameters: dict | None) -> dict:
    client = getattr(request.state, "client", None)
    return api_gateway_event(
        request.method,
        request.url.path,
        body,
        path_parameters,
        headers=dict(request.headers),
        query=dict(request.query_params),
        source_ip=request.client.host if request.client else "127.0.0.1",
        api_key_id=client.key_id if client else None,
    )


def to_http(reply: dict) -> Response:
    return Response(
        content=reply.get("body") or "",
        status_code=int(reply["statusCode"]),
        headers=reply.get("headers") or {},
    )


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


BODY_TIMEOUT_S = 10.0  # a body that has not fully arrived by then never will


def guarded(endpoint):
    """The route, with any exception answered as a 500 in the API's error shape: an exception
    that leaves a route makes the server drop the connection under the client's next request."""

    async def route(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return error(500, "internal_error", "the request failed inside the platform; see the gateway log")

    return route


def create_app(config: LocalConfig, serving_urls: dict[str, str]) -> Starlette:
    """The gateway app; the handlers are imported here, after the Lambda environment is set."""
    clients = load_clients(config)
    by_key = {c.api_key: Limiter(c) for c in clients}
    os.environ.update(config.lambda_environment() | {CLIENTS_ENV: lambda_variable(clients)})
    from batch import api_handler as batch_api
    from feedback.handler import handler as feedback_handler
    from postprocess.handler import handler as postprocess_handler
    from preprocess.handler import handler as preprocess_handler

    workflow = LocalOnlineWorkflow(config.prefix, serving_urls, preprocess_handler, postprocess_handler)

    async def read_checked(request: Request) -> bytes | Response:
        """The body, once the key, the client's limits and the body's size and arrival allow."""
        key = request.headers.get("x-api-key")
        if not key:
            return error(401, "missing_api_key", "send your API key in the x-api-key header")
        limiter = by_key.get(key)
        if limiter is None:
            return error(403, "invalid_api_key", "the API key is not valid")
        refused = limiter.take()
        if refused == "throttled":
            message = f"client '{limiter.client.name}' is over its {limiter.client.rate_limit} requests/s"
            return error(429, "throttled", message + "; retry shortly", headers={"Retry-After": "1"})
        if refused == "quota_exceeded":
            return error(429, "quota_exceeded", f"client '{limiter.client.name}' has used its "
                         f"{limiter.client.daily_quota} requests for today (UTC)")
        request.state.client = limiter.client
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return error(413, "payload_too_large", f"request body is over {MAX_BODY_BYTES} bytes")
        try:
            body = await asyncio.wait_for(request.body(), BODY_TIMEOUT_S)
        except TimeoutError:
            message = f"the request body did not arrive within {BODY_TIMEOUT_S:.0f} s"
            return error(408, "request_timeout", message, headers={"Connection": "close"})
        if len(body) > MAX_BODY_BYTES:
            return error(413, "payload_too_large", f"request body is over {MAX_BODY_BYTES} bytes")
        return body

    def predict(model: str | None):
        """The workflow for `model`, or (templated path) for the model the path names if served."""

        async def route(request: Request) -> Response:
            body = await read_checked(request)
            if isinstance(body, Response):
                return body
            name = model or request.path_params["model"]
            if name not in serving_urls:
                return unknown_model(name)
            event = event_from(request, body, {"model": name})
            started = time.perf_counter()
            reply, steps = await run_in_threadpool(workflow.run, event)
            log.info("predict %s -> %s via %s in %.1f ms", name, reply["statusCode"], " > ".join(steps),
                     (time.perf_counter() - started) * 1000)  # fmt: skip
            return to_http(reply)

        return route

    def unknown_model(name: str) -> Response:
        return JSONResponse({"error": "unknown_model", "message": f"no model named '{name}'",
                             "models": sorted(serving_urls)}, status_code=404)  # fmt: skip

    def lambda_route(handler, function_name: str, model: str | None = None):
        """A route proxied to one Lambda handler, with the route's path parameters in the event
        (a model's own path names its model, as API Gateway's does; on the templated path, a
        model that is not served is a 404, as the deployed Lambdas hold only served specs)."""

        async def route(request: Request) -> Response:
            body = await read_checked(request)
            if isinstance(body, Response):
                return body
            named = request.path_params.get("model")
            if named is not None and named not in serving_urls:
                return unknown_model(named)
            parameters = dict(request.path_params) | ({"model": model} if model else {})
            event = event_from(request, body, parameters or None)
            return to_http(await run_in_threadpool(handler, event, context_for(function_name)))

        return route

    async def health(request: Request) -> Response:
        """Up or not, to anyone; what it runs and where, to a caller with the key."""
        if request.headers.get("x-api-key") not in by_key:
            return JSONResponse({"status": "ok"})
        return JSONResponse(
            {
                "status": "ok",
                "models": sorted(serving_urls),
                "aws": config.aws_url,
                "serving": serving_urls,
            }
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, "not_found", f"no route for {request.method} {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")

    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path, exc_info=exc)
        return error(500, "internal_error", "the request failed inside the platform; see the gateway log")

    document = contract.openapi([load_spec(m) for m in serving_urls])

    async def openapi(request: Request) -> Response:
        checked = await read_checked(request)
        if isinstance(checked, Response):
            return checked
        served = document | {"servers": [{"url": str(request.base_url).rstrip("/") or "/"}]}
        return JSONResponse(served)

    def endpoint(operation: str, model: str | None):
        """What serves an operation of the contract (on a model's own path, for that model)."""
        if operation == contract.PREDICT:
            return predict(model)
        if operation == contract.FEEDBACK:
            return lambda_route(feedback_handler, "feedback")
        if operation == contract.SUBMIT_BATCH_JOB:
            return lambda_route(batch_api.submit, "batch-submit", model)
        if operation == contract.GET_BATCH_JOB:
            return lambda_route(batch_api.status, "batch-status")
        if operation == contract.GET_OPENAPI:
            return openapi
        raise ValueError(f"the contract names an operation the gateway cannot serve: {operation}")

    routes = [
        Route(path, guarded(endpoint(route.operation, contract.path_model(path, route))), methods=[method])
        for method, path, route in contract.paths(serving_urls)
    ]
    return Starlette(
        routes=[*routes, Route("/_local/health", guarded(health), methods=["GET"])],
        exception_handlers={404: not_found, 405: not_allowed, Exception: internal},
    )
