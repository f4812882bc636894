"""The forward batcher on its own: who gets which rows, when a batch runs, and errors."""

import asyncio
import threading

import numpy as np
import pytest

from seldon_market_ab.runtimes.batching import ForwardBatcher


def run(coroutine):
    return asyncio.run(coroutine)


def stacked(forward):
    """A pass function over the stacked windows of its requests' inputs."""
    return lambda inputs: forward(np.concatenate(inputs))


def recording(passes: list):
    """A pass function that returns its windows and records how many it took."""
    return stacked(lambda x: passes.append(len(x)) or x)


def send(batcher, x):
    return batcher(x, len(x))


def test_concurrent_calls_share_one_pass_and_get_their_own_rows():
    passes = []

    def forward(x):
        passes.append(len(x))
        return x.sum(axis=1)

    async def main():
        batcher = ForwardBatcher(stacked(forward), max_windows=100, wait=0.0)
        inputs = [np.full((n, 3), float(i)) for i, n in enumerate((1, 3, 2))]
        return await asyncio.gather(*(send(batcher, x) for x in inputs))

    outputs = run(main())
    assert passes == [6]  # one pass, at the end of the turn of the event loop that queued all three
    assert [o.tolist() for o in outputs] == [[0.0], [3.0, 3.0, 3.0], [6.0, 6.0]]


def test_a_full_batch_runs_at_once_without_waiting():
    passes = []

    async def main():
        batcher = ForwardBatcher(recording(passes), max_windows=2, wait=60.0)
        return await asyncio.wait_for(
            asyncio.gather(send(batcher, np.zeros((1, 1))), send(batcher, np.ones((1, 1)))), 5)

    run(main())
    assert passes == [2]


def test_a_model_error_reaches_every_request_of_the_batch():
    def forward(x):
        raise RuntimeError("model failed")

    async def main():
        batcher = ForwardBatcher(stacked(forward), max_windows=10, wait=0.0)
        return await asyncio.gather(send(batcher, np.zeros((1, 1))), send(batcher, np.zeros((2, 1))),
                                    return_exceptions=True)

    errors = run(main())
    assert [str(e) for e in errors] == ["model failed", "model failed"]


def test_a_cancelled_request_does_not_disturb_the_others():
    async def main():
        batcher = ForwardBatcher(stacked(lambda x: x * 2), max_windows=10, wait=0.05)
        gone = asyncio.ensure_future(send(batcher, np.ones((1, 1))))
        kept = asyncio.ensure_future(send(batcher, np.full((1, 1), 3.0)))
        await asyncio.sleep(0)
        gone.cancel()
        return await kept

    assert run(main()).tolist() == [[6.0]]


@pytest.mark.parametrize("wait", [0.0, 0.01])
def test_a_lone_request_is_answered(wait):
    async def main():
        return await send(ForwardBatcher(stacked(lambda x: x + 1), max_windows=8, wait=wait), np.zeros((1, 2)))

    assert run(main()).tolist() == [[1.0, 1.0]]


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="expected 'fixed' or 'adaptive'"):
        ForwardBatcher(stacked(lambda x: x), max_windows=8, wait=0.0, policy="sometimes")


async def one_per_turn(batcher, count: int) -> list:
    """``count`` requests that reach the batcher one turn of the event loop apart, as MLServer's gRPC server
    delivers concurrent calls."""
    calls = []
    for _ in range(count):
        calls.append(asyncio.ensure_future(send(batcher, np.ones((1, 1)))))
        await asyncio.sleep(0)
    return await asyncio.gather(*calls)


def test_adaptive_a_lone_caller_never_waits():
    """A minute's wait is configured, yet requests sent one after another are answered at once (wait_for would
    give up after 5 s), each in its own pass."""
    passes = []

    async def main():
        batcher = ForwardBatcher(recording(passes), max_windows=32, wait=60.0, policy="adaptive")
        for _ in range(5):
            await asyncio.wait_for(send(batcher, np.ones((1, 1))), 5)
        return batcher.company.expected

    assert run(main()) == 1
    assert passes == [1, 1, 1, 1, 1]


@pytest.mark.parametrize("policy, wait, expected", [("adaptive", 60.0, [3, 3]), ("fixed", 0.0, [3, 1, 1, 1])])
def test_adaptive_after_a_shared_pass_the_next_waits_for_the_expected_company(policy, wait, expected):
    """Three requests in one turn share a pass; then three arriving a turn apart share one too (with `fixed` and
    no wait, each of them runs alone)."""
    passes = []

    async def main():
        batcher = ForwardBatcher(recording(passes), max_windows=32, wait=wait, policy=policy)
        await asyncio.gather(*(send(batcher, np.ones((1, 1))) for _ in range(3)))
        return await asyncio.wait_for(one_per_turn(batcher, 3), 5)

    outputs = run(main())
    assert passes == expected
    assert [o.tolist() for o in outputs] == [[[1.0]]] * 3


def test_adaptive_a_wait_that_runs_out_expects_as_many_as_came():
    """After a shared pass the batcher expects company; when only one request comes before the wait runs out,
    it expects one again, and the next lone request does not wait (a minute's wait is set by then)."""
    passes = []

    async def main():
        batcher = ForwardBatcher(recording(passes), max_windows=32, wait=0.01, policy="adaptive")
        await asyncio.gather(send(batcher, np.ones((1, 1))), send(batcher, np.ones((1, 1))))
        assert batcher.company.expected == 2
        await send(batcher, np.ones((1, 1)))  # waits out 10 ms alone
        assert batcher.company.expected == 1
        batcher.wait = 60.0
        await asyncio.wait_for(send(batcher, np.ones((1, 1))), 5)

    run(main())
    assert passes == [2, 1, 1]


def test_adaptive_every_fourth_pass_that_fills_early_expects_one_more():
    passes = []

    async def main():
        batcher = ForwardBatcher(recording(passes), max_windows=32, wait=60.0, policy="adaptive")
        await asyncio.gather(send(batcher, np.ones((1, 1))), send(batcher, np.ones((1, 1))))
        seen = []
        for _ in range(2 * batcher.company.probe_every):
            await asyncio.wait_for(one_per_turn(batcher, batcher.company.expected), 5)
            seen.append(batcher.company.expected)
        return seen

    seen = run(main())
    assert seen == [2, 2, 2, 3, 3, 3, 3, 4]
    assert passes == [2, 2, 2, 2, 2, 3, 3, 3, 3]


def test_adaptive_one_request_filling_a_pass_is_no_sign_of_company():
    async def main():
        batcher = ForwardBatcher(stacked(lambda x: x), max_windows=4, wait=60.0, policy="adaptive")
        for _ in range(8):
            await send(batcher, np.ones((4, 1)))
        return batcher.company.expected

    assert run(main()) == 1


def test_a_large_pass_runs_in_a_worker_thread_while_small_ones_are_served():
    """A 16-window pass runs off the event loop: held there, it does not stop a 1-window request from being
    answered on the loop; when released, it gets its own rows."""
    release, threads = threading.Event(), []

    def forward(inputs):
        threads.append(threading.current_thread().name)
        if len(inputs[0]) >= 16:
            assert release.wait(10)
        return np.concatenate(inputs).sum(axis=1)

    async def main():
        batcher = ForwardBatcher(forward, max_windows=64, wait=0.0, thread_windows=16)
        large = asyncio.ensure_future(send(batcher, np.ones((16, 2))))
        await asyncio.sleep(0)
        small = await asyncio.wait_for(send(batcher, np.full((1, 2), 3.0)), 5)
        release.set()
        answer = await asyncio.wait_for(large, 5)
        batcher.close()
        return small, answer

    small, large = run(main())
    assert small.tolist() == [6.0] and large.tolist() == [2.0] * 16
    assert threads[0].startswith("forward-pass") and threads[1] == "MainThread"


def test_an_error_in_a_threaded_pass_reaches_every_request():
    def forward(inputs):
        raise RuntimeError("model failed")

    async def main():
        batcher = ForwardBatcher(forward, max_windows=64, wait=0.0, thread_windows=2)
        answers = await asyncio.gather(send(batcher, np.zeros((1, 1))), send(batcher, np.zeros((2, 1))),
                                       return_exceptions=True)
        batcher.close()
        return answers

    assert [str(e) for e in run(main())] == ["model failed", "model failed"]
