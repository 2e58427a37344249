"""The model server: SageMaker's real-time container contract for one model bundle.

  GET  /ping                               200 once the model is loaded, 503 until then
                                           (or for good, with the reason, if loading failed)
  POST /invocations                        {"instances": [...]} as JSON, or CSV rows; answers
                                           {"model", "model_version", "classes", "scores"}
  POST /endpoints/{endpoint}/invocations   the same, answered the way SageMaker's runtime API
                                           answers InvokeEndpoint, so a boto3
                                           "sagemaker-runtime" client pointed here (endpoint_url)
                                           behaves as it does against a real endpoint

Every refusal is JSON {"error", "message", "details"}: 4xx for what the client sent (the
instance or row and the field it names), 503 while the model is not loaded, 500 when the
model itself fails. SageMaker itself turns any 4xx or 5xx from a container into a 424
ModelError carrying OriginalStatusCode and OriginalMessage; the /endpoints/... route does
the same, with the `x-amzn-ErrorType: ModelError` header boto3 reads to raise
`client.exceptions.ModelError`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from model_artifacts.bundle import ModelBundle
from model_artifacts.compiled import ONNX_RUNTIME
from model_artifacts.serving.batching import MicroBatcher
from model_artifacts.serving.model import ServedModel
from model_artifacts.serving.payload import Refusal
from model_artifacts.serving.settings import ServingSettings

log = logging.getLogger("inferline.serving")

JSON = "application/json"
CSV = "text/csv"
BACKEND_HEADER = "X-Inferline-Backend"  # which backend scored: onnxruntime or scikit-learn
# The production variant named in replies (the name SageMaker's own examples give it).
VARIANT = "AllTraffic"


class ModelState:
    """Loading, ready or failed: what /ping reports and /invocations needs."""

    def __init__(self) -> None:
        self.model: ServedModel | None = None
        self.batcher: MicroBatcher | None = None
        self.failure: str | None = None

    def not_ready(self) -> Refusal:
        if self.failure:
            return Refusal(503, "model_not_ready", f"the model failed to load: {self.failure}")
        return Refusal(503, "model_not_ready", "the model is still loading; retry shortly")


def create_app(
    settings: ServingSettings | None = None,
    load: Callable[[], ModelBundle] | None = None,
    load_before_serving: bool = False,
) -> Starlette:
    """The ASGI app. `load` returns the bundle (default: ModelBundle.load(settings.model_dir));
    it runs in a thread after start-up, so /ping answers 503 while a large model loads; with
    `load_before_serving` start-up waits for it, so the server listens only once it can
    answer (one of several workers, whose peers already answer /ping)."""
    settings = settings or ServingSettings.from_env()
    load = load or partial(ModelBundle.load, settings.model_dir)
    state = ModelState()

    async def load_model() -> None:
        batcher = None
        try:
            bundle = await asyncio.to_thread(load)
            model = ServedModel(bundle, settings.max_instances, settings.model_threads)
            batcher = MicroBatcher(model.predict_proba, settings.max_batch_rows, settings.model_threads,
                                   inline=model.backend == ONNX_RUNTIME)  # fmt: skip
            # On the predict thread: it warms up the thread (and its OpenMP pool) that serves.
            await batcher.call(model.check)
        except Exception as exc:
            state.failure = f"{type(exc).__name__}: {exc}"
            log.exception("could not load the model from %s", settings.model_dir)
            if batcher is not None:
                await batcher.stop()
            return
        batcher.start()
        # The loaded model is long-lived: freeze it (and all else alive now) out of the cyclic
        # GC, which otherwise walks all of its objects again on every full collection that the
        # allocations of parsing request bodies set off. Collect first, so no garbage is frozen.
        gc.collect()
        gc.freeze()
        state.model, state.batcher = model, batcher
        log.info(
            "model %s version %s loaded from %s (%s, %d model thread(s)); inputs: %s",
            model.spec.name,
            bundle.version,
            settings.model_dir,
            model.backend if not model.fallback_reason else f"{model.backend}: {model.fallback_reason}",
            settings.model_threads,
            ", ".join(model.schema.names),
        )

    @asynccontextmanager
    async def lifespan(app: Starlette):
        loading = asyncio.create_task(load_model(), name="load-model")
        if load_before_serving:
            await asyncio.shield(loading)
        try:
            yield
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            if state.batcher is not None:
                await state.batcher.stop()

    async def ping(request: Request) -> Response:
        model = state.model
        if model is None:
            return error_response(state.not_ready())
        body = {"status": "ready", "model": model.spec.name, "model_version": model.bundle.version,
                "backend": model.backend}  # fmt: skip
        if model.fallback_reason:
            body["fallback_reason"] = model.fallback_reason
        return json_response(200, body)

    async def invocations(request: Request) -> Response:
        model, batcher = state.model, state.batcher
        try:
            if model is None or batcher is None:
                raise state.not_ready()
            kind = content_kind(request.headers.get("content-type"))
            check_accept(request.headers.get("accept"))
            body = await read_body(request, settings.max_body_bytes)
            if not body.strip():
                raise Refusal(400, "empty_body", "the request body is empty")
            rows = model.schema.from_json(body) if kind == JSON else model.schema.from_csv(body)
        except Refusal as refused:
            return error_response(refused)
        try:
            proba = await batcher.predict(rows)
        except Exception as exc:
            log.error("the model failed on %d rows", rows.count, exc_info=exc)
            return error_response(
                Refusal(
                    500,
                    "model_error",
                    f"the model failed to score the instances: {type(exc).__name__}: {exc}",
                )
            )
        return Response(model.reply(proba), media_type=JSON, headers={BACKEND_HEADER: model.backend})

    async def endpoint_invocations(request: Request) -> Response:
        response = await invocations(request)
        if response.status_code < 400:
            response.headers["x-Amzn-Invoked-Production-Variant"] = VARIANT
            return response
        return sagemaker_model_error(response)

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/endpoints/{endpoint_name}/invocations", endpoint_invocations, methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )


def app_from_env(load_before_serving: bool = False) -> Starlette:
    """uvicorn's app factory (`--factory`): settings from the environment, logging set up."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
    )
    return create_app(ServingSettings.from_env(), load_before_serving=load_before_serving)


# -- request and response helpers -----------------------------------------------------------


def content_kind(content_type: str | None) -> str:
    """JSON or CSV, from the Content-Type header (none at all is taken as JSON)."""
    media = (content_type or JSON).split(";", 1)[0].strip().lower()
    if media in (JSON, CSV):
        return media
    raise Refusal(
        415,
        "unsupported_media_type",
        f"Content-Type {content_type!r} is not supported: send {JSON} or {CSV}",
    )


def check_accept(accept: str | None) -> None:
    if not accept:
        return
    ranges = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    if ranges & {JSON, "application/*", "*/*", ""}:
        return
    raise Refusal(406, "not_acceptable", f"replies are {JSON}; Accept {accept!r} excludes it")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or a 413 as soon as it is known to be larger than `limit` bytes."""
    declared = request.headers.get("content-length")
    too_large = Refusal(413, "payload_too_large", f"the body is larger than the limit of {limit} bytes")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, media_type=JSON, headers=headers
    )


def error_response(refused: Refusal) -> Response:
    return json_response(refused.status, refused.body())


def sagemaker_model_error(container: Response) -> Response:
    """A container error as SageMaker's InvokeEndpoint reports it: 424 ModelError."""
    status = container.status_code
    original = bytes(container.body).decode("utf-8", "replace")
    side = "client" if status < 500 else "server"
    return json_response(
        424,
        {
            "ErrorCode": f"{side.upper()}_ERROR_FROM_MODEL",
            "Message": f'Received {side} error ({status}) from primary with message "{original}". '
            "See the model server's log for more information.",
            "OriginalMessage": original,
            "OriginalStatusCode": status,
        },
        headers={"x-amzn-ErrorType": "ModelError"},
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return json_response(
        exc.status_code, {"error": error, "message": message, "details": []}, dict(exc.headers or {})
    )


async def internal_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this reply, so uvicorn logs the traceback.
    return json_response(
        500, {"error": "internal_error", "message": f"{type(exc).__name__}: {exc}", "details": []}
    )
