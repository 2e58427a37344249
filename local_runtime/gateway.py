"""The local API Gateway: HTTP requests in, API Gateway proxy events to the same handlers out.

Routes (as the deployed REST API):
  POST /v1/models/{model}/predict   -> the online workflow (preprocess, endpoint, postprocess)
  POST /v1/feedback                 -> the feedback handler
  POST /v1/models/{model}/batch-jobs -> the batch submit handler (a presigned upload URL)
  GET  /v1/batch-jobs/{job_id}       -> the batch status handler
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

from inferline.workflow import MAX_BODY_BYTES
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
            "identity": {"sourceIp": source_ip, "apiKey": headers.get("x-api-key")},
        },
        "body": body or None,
        "isBase64Encoded": False,
    }


def event_from(request: Request, body: bytes, path_parameters: dict | None) -> dict:
    return api_gateway_event(
        request.method,
        request.url.path,
        body,
        path_parameters,
        headers=dict(request.headers),
        query=dict(request.query_params),
        source_ip=request.client.host if request.client else "127.0.0.1",
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
    os.environ.update(config.lambda_environment())
    from batch import api_handler as batch_api
    from feedback.handler import handler as feedback_handler
    from postprocess.handler import handler as postprocess_handler
    from preprocess.handler import handler as preprocess_handler

    workflow = LocalOnlineWorkflow(config.prefix, serving_urls, preprocess_handler, postprocess_handler)

    async def read_checked(request: Request) -> bytes | Response:
        key = request.headers.get("x-api-key")
        if not key:
            return error(401, "missing_api_key", "send your API key in the x-api-key header")
        if key != config.api_key:
            return error(403, "invalid_api_key", "the API key is not valid")
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

    async def predict(request: Request) -> Response:
        body = await read_checked(request)
        if isinstance(body, Response):
            return body
        event = event_from(request, body, {"model": request.path_params["model"]})
        started = time.perf_counter()
        reply, steps = await run_in_threadpool(workflow.run, event)
        log.info(
            "predict %s -> %s via %s in %.1f ms",
            request.path_params["model"],
            reply["statusCode"],
            " > ".join(steps),
            (time.perf_counter() - started) * 1000,
        )
        return to_http(reply)

    def lambda_route(handler, function_name: str):
        """A route proxied to one Lambda handler, with the route's path parameters in the event."""

        async def route(request: Request) -> Response:
            body = await read_checked(request)
            if isinstance(body, Response):
                return body
            event = event_from(request, body, dict(request.path_params) or None)
            return to_http(await run_in_threadpool(handler, event, context_for(function_name)))

        return route

    async def health(request: Request) -> Response:
        """Up or not, to anyone; what it runs and where, to a caller with the key."""
        if request.headers.get("x-api-key") != config.api_key:
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

    return Starlette(
        routes=[
            Route("/v1/models/{model}/predict", guarded(predict), methods=["POST"]),
            Route("/v1/feedback", guarded(lambda_route(feedback_handler, "feedback")), methods=["POST"]),
            Route(
                "/v1/models/{model}/batch-jobs",
                guarded(lambda_route(batch_api.submit, "batch-submit")),
                methods=["POST"],
            ),
            Route(
                "/v1/batch-jobs/{job_id}",
                guarded(lambda_route(batch_api.status, "batch-status")),
                methods=["GET"],
            ),
            Route("/_local/health", guarded(health), methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_allowed, Exception: internal},
    )
