"""One forward pass for the windows of concurrent requests.

A TorchScript LSTM costs little more for eight windows than for one (the benchmark measures it), so
the runtime stacks the features of requests that are served together and runs the model once. Each
request computes its own features first, so requests of any input kind (``ohlcv`` or ``features``)
and any window length batch together; MLServer's adaptive batching merges raw requests under the
first one's shape instead, which is why it is not used here.

A pass runs as soon as ``max_windows`` windows are waiting; otherwise the policy decides:

- ``fixed``: ``wait`` seconds after its first request (``wait = 0``: at the end of the current turn of
  the event loop, which batches whatever arrived together).
- ``adaptive``: a pass waits up to ``wait`` seconds only while recent passes were shared, for as many
  requests as ``ExpectedCompany`` expects, and runs the moment they are in; a lone caller never waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from seldon_market_ab.company import ExpectedCompany


class ForwardBatcher:
    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], max_windows: int, wait: float,
                 observe: Callable[[int], None] | None = None, policy: str = "fixed"):
        if policy not in ("fixed", "adaptive"):
            raise ValueError(f"unknown batch wait policy {policy!r}; expected 'fixed' or 'adaptive'")
        self.forward, self.max_windows, self.wait, self.observe = forward, max_windows, wait, observe
        self.adaptive = policy == "adaptive"
        self.company = ExpectedCompany(max_windows)  # adaptive: how many requests the next pass waits for
        self._waiting: list[tuple[np.ndarray, asyncio.Future]] = []
        self._windows = 0
        self._scheduled: asyncio.Handle | None = None

    async def __call__(self, features: np.ndarray) -> np.ndarray:
        """The model's output for ``features [windows, ...]``, computed with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((features, future))
        self._windows += len(features)
        if self._windows >= self.max_windows or (self.adaptive and self.company.filled(len(self._waiting))):
            self._run(filled=True)
        elif self._scheduled is None:
            wait = self.wait if self.company.waits or not self.adaptive else 0.0
            self._scheduled = loop.call_later(wait, self._run) if wait > 0 else loop.call_soon(self._run)
        return await future

    def _run(self, filled: bool = False) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        waiting, self._waiting, self._windows = self._waiting, [], 0
        if not waiting:
            return
        if self.adaptive:
            self.company.learn(len(waiting), filled)
        try:
            outputs = self.forward(np.concatenate([features for features, _ in waiting]))
        except Exception as error:  # every request in the batch gets the model's error
            for _, future in waiting:
                if not future.done():
                    future.set_exception(error)
            return
        if self.observe is not None:
            self.observe(len(outputs))
        start = 0
        for features, future in waiting:
            if not future.done():  # a cancelled request (the client went away) takes nothing
                future.set_result(outputs[start:start + len(features)])
            start += len(features)
