"""The transport limit: the model server's HTTP stack (uvicorn, uvloop and httptools where
installed, the same settings) with an app that does no work: GET /ping and POST /invocations
answer a fixed reply of the model server's size at once, after reading the body.

    .venv/bin/python bench/null_server.py PORT

bench/bench_serving.py measures it in the same run as the model server: what the server adds
over it is the cost of parsing, checking, scoring and encoding.
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

REPLY = b'{"model":"purchase-propensity","model_version":"1","classes":[0,1],"scores":[0.5]}'


async def ping(request: Request) -> Response:
    return Response(b'{"status":"ready"}', media_type="application/json")


async def invocations(request: Request) -> Response:
    await request.body()
    return Response(REPLY, media_type="application/json")


app = Starlette(routes=[Route("/ping", ping, methods=["GET"]),
                        Route("/invocations", invocations, methods=["POST"])])  # fmt: skip

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="auto", http="auto", access_log=False,
                log_level="warning")  # fmt: skip
