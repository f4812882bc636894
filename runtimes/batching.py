"""One forward pass for the windows of concurrent requests.

A TorchScript LSTM costs little more for eight windows than for one (the benchmark measures it), so
the runtime runs the requests that are served together as one pass: the features of each request,
then the model once over all their windows. Requests of any input kind (``ohlcv`` or ``features``)
and any window length batch together; MLServer's adaptive batching merges raw requests under the
first one's shape instead, which is why it is not used here.

A pass runs as soon as ``max_windows`` windows are waiting; otherwise the policy decides:

- ``fixed``: ``wait`` seconds after its first request (``wait = 0``: at the end of the current turn of
  the event loop, which batches whatever arrived together).
- ``adaptive``: a pass waits up to ``wait`` seconds only while recent passes were shared, for as many
  requests as ``ExpectedCompany`` expects, and runs the moment they are in; a lone caller never waits.

A pass of at least ``thread_windows`` windows runs in a worker thread, so that the event loop goes on
serving other requests meanwhile: the features kernel and the TorchScript forward pass release the GIL.
Smaller passes run on the event loop, where they cost less than handing them to a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

from seldon_market_ab.company import ExpectedCompany


class ForwardBatcher:
    def __init__(self, forward: Callable[[list], np.ndarray], max_windows: int, wait: float,
                 observe: Callable[[int], None] | None = None, policy: str = "fixed",
                 thread_windows: int | None = None):
        """``forward(inputs)``: the outputs of a list of request inputs, one row per window, in order."""
        if policy not in ("fixed", "adaptive"):
            raise ValueError(f"unknown batch wait policy {policy!r}; expected 'fixed' or 'adaptive'")
        self.forward, self.max_windows, self.wait, self.observe = forward, max_windows, wait, observe
        self.adaptive = policy == "adaptive"
        self.company = ExpectedCompany(max_windows)  # adaptive: how many requests the next pass waits for
        self.thread_windows = thread_windows
        self._executor: ThreadPoolExecutor | None = None
        self._waiting: list[tuple[Any, int, asyncio.Future]] = []
        self._windows = 0
        self._scheduled: asyncio.Handle | None = None

    async def __call__(self, request_input: Any, windows: int) -> np.ndarray:
        """The model's output for one request's input of ``windows`` windows, computed with whatever else is
        waiting."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((request_input, windows, future))
        self._windows += windows
        if self._windows >= self.max_windows or (self.adaptive and self.company.filled(len(self._waiting))):
            self._run(filled=True)
        elif self._scheduled is None:
            wait = self.wait if self.company.waits or not self.adaptive else 0.0
            self._scheduled = loop.call_later(wait, self._run) if wait > 0 else loop.call_soon(self._run)
        return await future

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _run(self, filled: bool = False) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        waiting, windows, self._waiting, self._windows = self._waiting, self._windows, [], 0
        if not waiting:
            return
        if self.adaptive:
            self.company.learn(len(waiting), filled)
        inputs = [request_input for request_input, _, _ in waiting]
        if self.thread_windows is not None and windows >= self.thread_windows:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="forward-pass")
            work = asyncio.get_running_loop().run_in_executor(self._executor, self.forward, inputs)
            work.add_done_callback(partial(self._finished, waiting))
            return
        try:
            outputs = self.forward(inputs)
        except Exception as error:
            self._deliver(waiting, None, error)
        else:
            self._deliver(waiting, outputs)

    def _finished(self, waiting: list, done: asyncio.Future) -> None:
        error = done.exception()
        self._deliver(waiting, None if error else done.result(), error)

    def _deliver(self, waiting: list, outputs: np.ndarray | None, error: BaseException | None = None) -> None:
        if error is not None:  # every request in the pass gets the model's error
            for _, _, future in waiting:
                if not future.done():
                    future.set_exception(error)
            return
        if self.observe is not None:
            self.observe(len(outputs))
        start = 0
        for _, windows, future in waiting:
            if not future.done():  # a cancelled request (the client went away) takes nothing
                future.set_result(outputs[start:start + windows])
            start += windows
