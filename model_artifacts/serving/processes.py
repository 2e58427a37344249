"""Server processes: one uvicorn server, or one per worker on its own SO_REUSEPORT socket."""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
from functools import partial

from model_artifacts.serving.settings import ServingSettings


def serve(settings: ServingSettings, access_log: bool, reuse_port: bool = False) -> None:
    """One server process: uvicorn with uvloop and httptools where installed."""
    import uvicorn

    from model_artifacts.serving.app import app_from_env

    # A worker beside others loads its model before it listens: the kernel then gives new
    # connections only to workers that can answer them.
    config = uvicorn.Config(
        partial(app_from_env, load_before_serving=reuse_port),
        factory=True,
        host=settings.host,
        port=settings.port,
        loop="auto",
        http="auto",
        access_log=access_log,
        log_level="info",
    )
    if not reuse_port:
        uvicorn.Server(config).run()
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.host, settings.port))  # uvicorn listens once start-up is done
    uvicorn.Server(config).run(sockets=[sock])


def serve_workers(settings: ServingSettings, access_log: bool) -> None:
    """`workers` server processes, each listening on its own SO_REUSEPORT socket.

    With one shared listening socket (uvicorn's --workers), whichever worker wakes first
    accepts a whole burst of new connections, and a client holding a few keep-alive
    connections can leave the other workers idle. With a socket per worker the kernel
    spreads connections across them. Any worker exiting stops them all, so the container
    fails visibly and SageMaker replaces it instead of serving at part capacity.
    """
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=serve, args=(settings, access_log, True), name=f"worker-{n}")
        for n in range(settings.workers)
    ]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive():
                worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.start()
    while any(w.is_alive() for w in workers):
        for worker in workers:
            worker.join(timeout=0.5)
            if worker.exitcode is not None and not stopping:
                stop(signal.SIGTERM, None)
    if any(w.exitcode not in (0, -signal.SIGTERM) for w in workers) and not stopping:
        sys.exit(1)
