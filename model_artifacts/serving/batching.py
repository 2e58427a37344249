"""Micro-batching: concurrent requests share one predict_proba call.

Each worker process runs one inference loop. It takes every request queued since the last
call (up to `max_rows` rows), scores their rows together in one call on a single predict
thread, and hands each request its slice. It never waits for more requests to arrive: a
request that finds the loop idle is scored at once, so batching adds no latency when alone.
Under load, the rows that queue during one call go into the next, which is where the
throughput comes from: scikit-learn's cost per call dwarfs its cost per row.

A model that costs microseconds (the compiled backend, ONNX Runtime) is scored inline, on the
event loop: the hop to the predict thread and back cost more than the model (one instance:
0.53 ms p50 through the thread, 0.32 ms inline, in bench/bench_serving.py --quick).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from model_artifacts.serving.payload import Rows

Job = tuple[Rows, "asyncio.Future[np.ndarray]"]
T = TypeVar("T")


class MicroBatcher:
    """One inference loop and its predict thread; `predict` scores a Rows batch."""

    def __init__(self, predict: Callable[[Rows], np.ndarray], max_rows: int, threads: int | None = None,
                 inline: bool = False):  # fmt: skip
        """`threads`: the OpenMP/BLAS threads the model may use on the predict thread (None:
        leave the libraries' defaults). `inline`: score on the event loop itself, for a model
        that costs microseconds (the hop to the predict thread and back costs more)."""
        self._predict = predict
        self._inline = inline
        self._max_rows = max_rows
        self._pending: deque[Job] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="predict", initializer=_limit_threads, initargs=(threads,)
        )
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="inference-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        _fail(list(self._pending), RuntimeError("the model server is shutting down"))
        self._pending.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def call(self, function: Callable[[], T]) -> T:
        """Run `function` on the predict thread (a warm-up, say), outside any batch."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def predict(self, rows: Rows) -> np.ndarray:
        """Class probabilities for `rows`, scored together with whatever else is queued."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._take()
            if not batch:
                continue
            try:
                if self._inline:
                    proba = self._score(batch)
                    await asyncio.sleep(0)  # let the requests that arrived meanwhile queue up
                else:
                    proba = await loop.run_in_executor(self._executor, self._score, batch)
            except asyncio.CancelledError:
                _fail(batch, RuntimeError("the model server is shutting down"))
                raise
            except Exception as exc:  # the batch's requests get the error, not the loop
                await self._score_alone(loop, batch, exc)
                continue
            start = 0
            for rows, future in batch:
                if not future.done():
                    future.set_result(proba[start : start + rows.count])
                start += rows.count

    def _take(self) -> list[Job]:
        """The queued requests for one call: at least one, then as many as fit in max_rows."""
        batch: list[Job] = []
        count = 0
        while self._pending:
            rows, future = self._pending[0]
            if batch and count + rows.count > self._max_rows:
                break
            self._pending.popleft()
            if future.done():  # its client went away
                continue
            batch.append((rows, future))
            count += rows.count
        return batch

    def _score(self, batch: list[Job]) -> np.ndarray:
        if len(batch) == 1:
            return self._predict(batch[0][0])
        names = batch[0][0].columns.keys()
        columns = {n: np.concatenate([rows.columns[n] for rows, _ in batch]) for n in names}
        return self._predict(Rows(columns, sum(rows.count for rows, _ in batch)))

    async def _score_alone(self, loop: asyncio.AbstractEventLoop, batch: list[Job], exc: Exception):
        """A batch failed: score its requests one by one, so only the one that breaks the
        model gets the error, not every request that happened to share its call."""
        if len(batch) == 1:
            _fail(batch, exc)
            return
        for job in batch:
            try:
                proba = await loop.run_in_executor(self._executor, self._score, [job])
            except Exception as alone:
                _fail([job], alone)
            else:
                if not job[1].done():
                    job[1].set_result(proba)


def _limit_threads(threads: int | None) -> None:
    """On the predict thread: OpenMP's thread count is per calling thread, so it is set here."""
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)


def _fail(batch: list[Job], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
