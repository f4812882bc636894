"""One forward pass for the windows of concurrent requests.

A TorchScript LSTM costs little more for eight windows than for one (the benchmark measures it), so
the runtime stacks the features of requests that are served together and runs the model once. Each
request computes its own features first, so requests of any input kind (``ohlcv`` or ``features``)
and any window length batch together; MLServer's adaptive batching merges raw requests under the
first one's shape instead, which is why it is not used here.

A pass runs as soon as ``max_windows`` windows are waiting; otherwise the policy decides:

- ``fixed``: ``wait`` seconds after its first request (``wait = 0``: at the end of the current turn of
  the event loop, which batches whatever arrived together).
- ``adaptive``: MLServer's gRPC server accepts one call per turn of the event loop, so concurrent
  requests reach the runtime a few hundred microseconds apart and a pass that runs at the end of the
  turn almost never has company. The batcher therefore learns how many requests to expect: while it
  expects one (no sign of concurrency) a pass runs at the end of the turn and a lone caller never
  waits. Once a pass is shared, the next ones wait up to ``wait`` seconds for the expected number of
  requests and run the moment they are in. A pass that waits out its time expects as many as came
  (one: back to not waiting); every fourth pass that filled early expects one more, to find out
  whether more company is about.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

PROBE_EVERY = 4  # passes that filled early before the batcher expects one more request


class ForwardBatcher:
    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], max_windows: int, wait: float,
                 observe: Callable[[int], None] | None = None, policy: str = "fixed"):
        if policy not in ("fixed", "adaptive"):
            raise ValueError(f"unknown batch wait policy {policy!r}; expected 'fixed' or 'adaptive'")
        self.forward, self.max_windows, self.wait, self.observe = forward, max_windows, wait, observe
        self.adaptive = policy == "adaptive"
        self.expected_requests = 1  # adaptive: how many requests the next pass waits for
        self._filled_early = 0
        self._waiting: list[tuple[np.ndarray, asyncio.Future]] = []
        self._windows = 0
        self._scheduled: asyncio.Handle | None = None

    async def __call__(self, features: np.ndarray) -> np.ndarray:
        """The model's output for ``features [windows, ...]``, computed with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((features, future))
        self._windows += len(features)
        expecting_company = self.adaptive and self.expected_requests > 1
        if self._windows >= self.max_windows or (expecting_company and len(self._waiting) >= self.expected_requests):
            self._run(filled=True)
        elif self._scheduled is None:
            wait = self.wait if expecting_company or not self.adaptive else 0.0
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
            self._learn(len(waiting), filled)
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

    def _learn(self, requests: int, filled: bool) -> None:
        if not filled:  # the wait (or the turn) ended: expect as many as came
            self.expected_requests = requests
            return
        if requests == 1:  # one request filled the pass by itself: no sign of company
            return
        self._filled_early += 1
        if self._filled_early % PROBE_EVERY == 0:
            self.expected_requests = min(self.expected_requests + 1, self.max_windows)
