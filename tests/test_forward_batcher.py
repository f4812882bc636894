"""The forward batcher on its own: who gets which rows, when a batch runs, and errors."""

import asyncio

import numpy as np
import pytest

from runtimes.batching import ForwardBatcher


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_calls_share_one_pass_and_get_their_own_rows():
    passes = []

    def forward(x):
        passes.append(len(x))
        return x.sum(axis=1)

    async def main():
        batcher = ForwardBatcher(forward, max_windows=100, wait=0.0)
        inputs = [np.full((n, 3), float(i)) for i, n in enumerate((1, 3, 2))]
        return await asyncio.gather(*(batcher(x) for x in inputs))

    outputs = run(main())
    assert passes == [6]  # one pass, at the end of the turn of the event loop that queued all three
    assert [o.tolist() for o in outputs] == [[0.0], [3.0, 3.0, 3.0], [6.0, 6.0]]


def test_a_full_batch_runs_at_once_without_waiting():
    passes = []

    async def main():
        batcher = ForwardBatcher(lambda x: passes.append(len(x)) or x, max_windows=2, wait=60.0)
        return await asyncio.wait_for(asyncio.gather(batcher(np.zeros((1, 1))), batcher(np.ones((1, 1)))), 5)

    run(main())
    assert passes == [2]


def test_a_model_error_reaches_every_request_of_the_batch():
    def forward(x):
        raise RuntimeError("model failed")

    async def main():
        batcher = ForwardBatcher(forward, max_windows=10, wait=0.0)
        return await asyncio.gather(batcher(np.zeros((1, 1))), batcher(np.zeros((2, 1))), return_exceptions=True)

    errors = run(main())
    assert [str(e) for e in errors] == ["model failed", "model failed"]


def test_a_cancelled_request_does_not_disturb_the_others():
    async def main():
        batcher = ForwardBatcher(lambda x: x * 2, max_windows=10, wait=0.05)
        gone = asyncio.ensure_future(batcher(np.ones((1, 1))))
        kept = asyncio.ensure_future(batcher(np.full((1, 1), 3.0)))
        await asyncio.sleep(0)
        gone.cancel()
        return await kept

    assert run(main()).tolist() == [[6.0]]


@pytest.mark.parametrize("wait", [0.0, 0.01])
def test_a_lone_request_is_answered(wait):
    async def main():
        return await ForwardBatcher(lambda x: x + 1, max_windows=8, wait=wait)(np.zeros((1, 2)))

    assert run(main()).tolist() == [[1.0, 1.0]]
