"""SageMaker endpoints on one machine: what moto cannot do (it has no UpdateEndpoint and runs no
containers), played by the local runtime.

- `LocalEndpoints` (inside `inferline up`) runs one model server process per endpoint, on
  the model its EndpointConfig names (Models and EndpointConfigs live in moto, as in AWS).
  UpdateEndpoint is blue/green: the new version's server starts on its own port, and only
  once it answers /ping does traffic move to it; the old one then drains (in-flight requests
  finish) and stops. If the new server never gets healthy the endpoint stays on the old
  config, silently, as SageMaker's auto-rollback leaves it.
- `router_app` is the endpoints' front door on INFERLINE_SERVING_PORT: boto3's
  sagemaker-runtime (`/endpoints/{name}/invocations`) is forwarded to the current server,
  and `/_local/endpoints/{name}` answers UpdateEndpoint and DescribeEndpoint.
- `LocalSageMaker` is the `sagemaker` client the retraining steps get locally: moto for
  models, configs and the registry; the router for endpoints.
"""

from __future__ import annotations

import io
import logging
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inferline.resources import split_s3_uri
from local_runtime.config import HOST, REPO_ROOT, LocalConfig
from local_runtime.up import stop_process, wait_for

log = logging.getLogger("inferline.sagemaker_local")

READY_TIMEOUT = 60  # seconds a new model server has to answer /ping
DRAIN_SECONDS = 1.0  # requests already forwarded to the old server finish before it stops
LOCAL_IMAGE = "inferline-serving:local"


@dataclass
class Backend:
    config_name: str
    model_name: str
    version: str | None
    url: str
    process: subprocess.Popen


@dataclass
class Endpoint:
    name: str
    model: str  # the inferline model it serves
    status: str = "Creating"
    backend: Backend | None = None
    # when it last changed config (created, updated, rolled back to): SageMaker's LastModifiedTime
    last_modified: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def config_name(self) -> str | None:
        return self.backend.config_name if self.backend else None


class LocalEndpoints:
    def __init__(self, config: LocalConfig, sagemaker, s3):
        self.config = config
        self.sagemaker = sagemaker  # moto: models and endpoint configs
        self.s3 = s3
        self.endpoints: dict[str, Endpoint] = {}
        self.ready_timeout = READY_TIMEOUT

    # -- the control plane --------------------------------------------------------------

    def create(self, name: str, model: str, config_name: str) -> None:
        """Start the endpoint on `config_name` and wait until it serves (startup only)."""
        endpoint = self.endpoints.setdefault(name, Endpoint(name=name, model=model))
        backend = self._start_backend(endpoint, config_name)
        endpoint.backend, endpoint.status = backend, "InService"
        endpoint.last_modified = _now()

    def update(self, name: str, config_name: str) -> None:
        """UpdateEndpoint: returns at once; the endpoint is Updating until the new server
        serves (then InService on the new config) or fails (InService on the old one)."""
        endpoint = self._get(name)
        if not endpoint.lock.acquire(blocking=False):
            raise ValueError(f"endpoint {name} is already updating")
        try:
            self.sagemaker.describe_endpoint_config(EndpointConfigName=config_name)  # exists, or raises
            endpoint.status = "Updating"
            threading.Thread(target=self._blue_green, args=(endpoint, config_name), daemon=True).start()
        except BaseException:
            endpoint.lock.release()  # the thread that would have released it never started
            raise

    def describe(self, name: str) -> dict[str, Any]:
        endpoint = self._get(name)
        # A rolled-back update leaves no failure reason, as SageMaker's auto-rollback does not.
        return {
            "EndpointName": name,
            "EndpointStatus": endpoint.status,
            "EndpointConfigName": endpoint.config_name,
            "LastModifiedTime": endpoint.last_modified,
        }

    def revive_if_dead(self, name: str) -> None:
        """A model server that died is replaced on the same config, in the background, as
        SageMaker replaces an unhealthy instance; requests fail (503) until it answers."""
        endpoint = self.endpoints.get(name)
        if not endpoint or not endpoint.backend or endpoint.backend.process.poll() is None:
            return
        if not endpoint.lock.acquire(blocking=False):
            return  # an update or a revival is already under way
        log.warning("the model server of %s died; starting a new one", name)
        threading.Thread(target=self._blue_green, args=(endpoint, endpoint.config_name), daemon=True).start()

    def url(self, name: str) -> str | None:
        endpoint = self.endpoints.get(name)
        return endpoint.backend.url if endpoint and endpoint.backend else None

    def stop_all(self) -> None:
        for endpoint in self.endpoints.values():
            if endpoint.backend:
                stop_process(endpoint.backend.process)

    def _get(self, name: str) -> Endpoint:
        if name not in self.endpoints:
            raise KeyError(name)
        return self.endpoints[name]

    def _blue_green(self, endpoint: Endpoint, config_name: str) -> None:
        try:
            try:
                green = self._start_backend(endpoint, config_name)
            except Exception as exc:  # the old server never stopped serving: a silent rollback
                log.warning("update of %s to %s rolled back: %s", endpoint.name, config_name, exc)
                endpoint.status = "InService"
                return
            blue, endpoint.backend = endpoint.backend, green  # new requests go to green now
            endpoint.status = "InService"
            if blue is None or blue.config_name != green.config_name:  # not a revival
                endpoint.last_modified = _now()
            self._remember_current(endpoint)
            log.info("%s now serves %s (version %s)", endpoint.name, config_name, green.version)
        finally:
            endpoint.lock.release()  # the next update may start while the old server drains
        if blue:
            time.sleep(DRAIN_SECONDS)
            stop_process(blue.process)  # uvicorn finishes the requests it holds before exiting

    # -- model servers --------------------------------------------------------------------

    def _start_backend(self, endpoint: Endpoint, config_name: str) -> Backend:
        variant = self.sagemaker.describe_endpoint_config(EndpointConfigName=config_name)[
            "ProductionVariants"
        ][0]
        container = self.sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
        model_dir = self._unpack(endpoint.model, variant["ModelName"], container["ModelDataUrl"])
        port = free_port()
        args = [
            sys.executable, "-m", "model_artifacts.serving", "--model-dir", str(model_dir),
            "--host", HOST, "--port", str(port), "--workers", "1",
        ]  # fmt: skip
        log_file = self.config.path("logs", f"serving-{endpoint.model}.log").open("ab")
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        url = f"http://{HOST}:{port}"
        try:
            wait_for(f"{url}/ping", self.ready_timeout, process, "the model server")
        except Exception:
            stop_process(process)
            raise
        self.config.path("run", f"serving-{endpoint.model}.pid").write_text(str(process.pid))
        version = (container.get("Environment") or {}).get("INFERLINE_MODEL_VERSION")
        return Backend(config_name, variant["ModelName"], version, url, process)

    def _unpack(self, model: str, model_name: str, model_data_url: str) -> Path:
        """The model.tar.gz from the embedded S3, unpacked once per SageMaker Model."""
        target = self.config.path("models", model, "deployed", model_name)
        if (target / "model.joblib").is_file():
            return target
        bucket, key = split_s3_uri(model_data_url)
        archive = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(partial, filter="data")
        partial.rename(target)
        return target

    def _remember_current(self, endpoint: Endpoint) -> None:
        """The next `inferline up` starts with the version serving now."""
        source = self.config.path("models", endpoint.model, "deployed", endpoint.backend.model_name)
        current = self.config.path("models", endpoint.model, "current")
        staged = current.with_name("current.next")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(source, staged)
        shutil.rmtree(current, ignore_errors=True)
        staged.rename(current)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# -- the front door ---------------------------------------------------------------------------


def _error(status: int, code: str, message: str) -> JSONResponse:
    # botocore reads the error code from this header, as it does from SageMaker's replies.
    return JSONResponse({"message": message}, status_code=status, headers={"x-amzn-ErrorType": code})


def router_app(endpoints: LocalEndpoints) -> Starlette:
    client = httpx.AsyncClient(timeout=httpx.Timeout(60, connect=2))

    async def invoke(request: Request) -> Response:
        name = request.path_params["name"]
        url = endpoints.url(name)
        if url is None:
            return _error(400, "ValidationError", f"Endpoint {name} not found.")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
        body = await request.body()
        try:
            reply = await client.post(f"{url}/endpoints/{name}/invocations", content=body, headers=headers)
        except httpx.ConnectError as exc:
            newer = endpoints.url(name)
            if newer is None or newer == url:  # not a swap: the server is down
                endpoints.revive_if_dead(name)
                return _error(503, "ServiceUnavailable", f"the model server for {name} did not answer: {exc}")
            # Sent to the old server as it stopped after a swap: the new one answers instead.
            reply = await client.post(f"{newer}/endpoints/{name}/invocations", content=body, headers=headers)
        except httpx.HTTPError as exc:
            return _error(503, "ServiceUnavailable", f"the model server for {name} did not answer: {exc}")
        passed = {k: v for k, v in reply.headers.items() if k.lower() in ("content-type", "x-amzn-errortype")}
        return Response(reply.content, status_code=reply.status_code, headers=passed)

    async def describe(request: Request) -> Response:
        try:
            return JSONResponse(endpoints.describe(request.path_params["name"]))
        except KeyError:
            return _error(400, "ValidationError", f"Could not find endpoint {request.path_params['name']}.")

    async def update(request: Request) -> Response:
        body = await request.json()
        try:
            endpoints.update(request.path_params["name"], body["EndpointConfigName"])
        except KeyError:
            return _error(400, "ValidationError", f"Could not find endpoint {request.path_params['name']}.")
        except ClientError as exc:
            return _error(400, "ValidationError", str(exc))
        except ValueError as exc:
            return _error(400, "ValidationError", str(exc))
        return JSONResponse(
            {"EndpointArn": f"arn:aws:sagemaker:local:endpoint/{request.path_params['name']}"}
        )

    async def ping(request: Request) -> Response:
        return JSONResponse({"endpoints": {n: endpoints.describe(n) for n in endpoints.endpoints}})

    return Starlette(
        routes=[
            Route("/endpoints/{name}/invocations", invoke, methods=["POST"]),
            Route("/_local/endpoints/{name}", describe, methods=["GET"]),
            Route("/_local/endpoints/{name}", update, methods=["POST"]),
            Route("/ping", ping, methods=["GET"]),
        ],
    )


# -- the client the retraining steps use locally ----------------------------------------------


class LocalSageMaker:
    """A boto3 `sagemaker` client whose endpoint calls reach the local endpoints (via the
    router) and everything else the embedded AWS."""

    def __init__(self, moto_client, router_url: str):
        self._moto = moto_client
        self._http = httpx.Client(base_url=router_url, timeout=30)

    def __getattr__(self, name: str):
        return getattr(self._moto, name)

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        reply = self._http.get(f"/_local/endpoints/{EndpointName}")
        self._raise_for(reply, "DescribeEndpoint")
        return reply.json()

    def update_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        # The arguments SageMaker would get, checked against its API model as boto3 checks them.
        validate_parameters(
            kwargs, self._moto.meta.service_model.operation_model("UpdateEndpoint").input_shape
        )
        return self._update(**kwargs)

    def _update(self, EndpointName: str, EndpointConfigName: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        reply = self._http.post(
            f"/_local/endpoints/{EndpointName}", json={"EndpointConfigName": EndpointConfigName}
        )
        self._raise_for(reply, "UpdateEndpoint")
        return reply.json()

    @staticmethod
    def _raise_for(reply: httpx.Response, operation: str) -> None:
        if reply.is_success:
            return
        code = reply.headers.get("x-amzn-ErrorType", "ValidationError")
        raise ClientError(
            {"Error": {"Code": code, "Message": reply.json().get("message", reply.text)}}, operation
        )
