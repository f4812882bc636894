"""The writer thread (routers/stores/writer.py) over a real SQLite store: group commits, urgency, failures."""

import asyncio
import queue
import threading
import time
import uuid
from concurrent.futures import wait

import pytest

from seldon_market_ab.routers.bandit import ThompsonSampling, state_from_dict, state_to_dict
from seldon_market_ab.routers.stores import (
    ApplyFeedback,
    Decision,
    FeedbackOutcome,
    RecordDecision,
    StoreWriter,
    open_store,
)
from seldon_market_ab.routers.stores.base import Operation

POLICY = ThompsonSampling(("a", "b"))


class CountingStore:
    """A real store that records the size of every batch it applies."""

    def __init__(self, store):
        self.store, self.batches = store, []

    def apply_batch(self, operations, derive=None):
        self.batches.append(len(operations))
        return self.store.apply_batch(operations, derive)


@pytest.fixture
def store(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}", f"writer-{uuid.uuid4().hex[:6]}")
    yield store
    store.close()


def decision(i, arm="a"):
    return Decision(f"d{i}", "all", arm, 0.5, 1000.0 + i)


def update(stored, decision, reward=1.0):
    state = state_from_dict(stored) if stored else POLICY.initial_state()
    return state_to_dict(POLICY.update(state, decision.arm, reward))


def test_decisions_queued_together_share_one_commit(store):
    counting = CountingStore(store)
    writer = StoreWriter(counting, linger=60.0)  # only an urgent write or flush ends the wait
    futures = [writer.submit(RecordDecision(decision(i))) for i in range(50)]
    writer.flush()
    wait(futures, timeout=10)
    assert counting.batches == [50]  # one transaction (the flush marker waits with them, unwritten)
    assert store.pending_count() == 50 and [f.result().decision_id for f in futures] == [f"d{i}" for i in range(50)]
    writer.close()


def test_an_urgent_write_does_not_wait_for_the_linger(store):
    writer = StoreWriter(store, linger=60.0)
    writer.submit(RecordDecision(decision(1)))
    started = time.monotonic()
    (outcome, _), = asyncio.run(writer.apply(ApplyFeedback("d1", 1.0, 1001.0, 3600.0, update)))
    assert outcome is FeedbackOutcome.APPLIED  # the decision queued before it was committed first
    assert time.monotonic() - started < 30  # far below the linger: it did not wait for it
    writer.close()


def test_a_failing_write_fails_alone(store):
    def broken(stored, decision):
        raise RuntimeError("bad update")

    writer = StoreWriter(store)
    writer.submit(RecordDecision(decision(1)))
    writer.submit(RecordDecision(decision(2)))
    results = asyncio.run(_gather(writer, ApplyFeedback("d1", 1.0, 1001.0, 3600.0, broken),
                                  ApplyFeedback("d2", 1.0, 1002.0, 3600.0, update)))
    assert isinstance(results[0], RuntimeError) and results[1][0] is FeedbackOutcome.APPLIED
    writer.close()
    assert store.decision("d1") is not None and store.apply_feedback("d1", 1.0, 1003.0, 3600.0, update)[0] \
        is FeedbackOutcome.APPLIED  # the failed one left nothing half-done


async def _gather(writer, *operations: Operation):
    futures = [asyncio.wrap_future(writer.submit(op, urgent=True)) for op in operations]
    return await asyncio.gather(*futures, return_exceptions=True)


def test_close_commits_what_was_queued(store):
    writer = StoreWriter(store, linger=60.0)
    for i in range(20):
        writer.submit(RecordDecision(decision(i)))
    writer.close()
    assert store.pending_count() == 20


def test_writes_from_many_threads_are_all_committed(store):
    writer = StoreWriter(store)
    barrier = threading.Barrier(4)

    def submit(thread):
        barrier.wait(timeout=10)
        return [writer.submit(RecordDecision(decision(100 * thread + i))) for i in range(25)]

    threads = [threading.Thread(target=submit, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.flush()
    assert store.pending_count() == 100
    writer.close()


def test_a_batch_keeps_the_first_decision_of_a_repeated_id(store):
    store.record_decision(decision(7, "a"))
    results = store.apply_batch([RecordDecision(decision(7, "b")), RecordDecision(decision(8, "b")),
                                 RecordDecision(Decision("d8", "all", "a", 0.5, 2000.0))])
    assert [r.arm for r in results] == ["a", "b", "b"]
    assert store.counters()["decisions:b"] == 1 and store.pending_count() == 2


def test_a_waiter_that_gave_up_does_not_stop_the_writer(store):
    """A feedback whose deadline passed cancels its future; the write is still applied, and the thread lives on."""
    writer = StoreWriter(store, linger=60.0)
    writer.submit(RecordDecision(decision(1)))
    abandoned = writer.submit(ApplyFeedback("d1", 1.0, 1001.0, 3600.0, update))
    assert abandoned.cancel()  # what asyncio.wait_for does to the future it waited on
    writer.flush()
    assert store.apply_feedback("d1", 1.0, 1002.0, 3600.0, update)[0] is FeedbackOutcome.DUPLICATE  # applied
    writer.submit(RecordDecision(decision(2)))
    writer.flush()  # the writer still works
    assert store.decision("d2") is not None
    writer.close()


def feedback(i):
    return ApplyFeedback(f"d{i}", 1.0, 2000.0 + i, 3600.0, update)


def test_a_lone_urgent_write_never_waits_for_company(store):
    """One feedback after another: each commits alone and at once, although a minute's wait is configured."""
    counting = CountingStore(store)
    writer = StoreWriter(counting, urgent_wait=60.0)
    for i in range(5):
        writer.submit(RecordDecision(decision(i)))
        (outcome, _), = asyncio.run(asyncio.wait_for(writer.apply(feedback(i)), 10))
        assert outcome is FeedbackOutcome.APPLIED
    assert writer.company.expected == 1
    writer.close()


class HeldStore(CountingStore):
    """Holds its first batch until released, so that writes queue up behind it."""

    def __init__(self, store):
        super().__init__(store)
        self.release, self.holding = threading.Event(), threading.Event()

    def apply_batch(self, operations, derive=None):
        if not self.batches:
            self.holding.set()
            self.release.wait(10)
        return super().apply_batch(operations, derive)


class WatchedQueue(queue.SimpleQueue):
    """The writer's queue, telling when the writer waits on it with a deadline: waiting for company."""

    waiting = threading.Event()

    def get(self, block=True, timeout=None):
        if timeout is not None:
            WatchedQueue.waiting.set()
        return super().get(block, timeout)


def test_after_a_shared_commit_an_urgent_write_waits_for_company(store, monkeypatch):
    """Two feedbacks queued behind a commit share the next one; from then on the writer expects two, so a third
    feedback waits for company (the writer sits on its queue with a deadline, the feedback uncommitted) until a
    fourth comes, and both share a commit."""
    monkeypatch.setattr(queue, "SimpleQueue", WatchedQueue)
    WatchedQueue.waiting.clear()
    for i in range(4):
        store.record_decision(decision(i))
    held = HeldStore(store)
    writer = StoreWriter(held, urgent_wait=60.0)
    first = writer.submit(feedback(0), urgent=True)
    assert held.holding.wait(10)
    queued = [writer.submit(feedback(i), urgent=True) for i in (1, 2)]
    held.release.set()
    wait([first, *queued], timeout=10)
    assert held.batches == [1, 2] and writer.company.expected == 2
    assert not WatchedQueue.waiting.is_set()  # so far no commit waited for company
    third = writer.submit(feedback(3), urgent=True)
    assert WatchedQueue.waiting.wait(10)  # the writer took it and waits for a second one
    assert not third.done() and held.batches == [1, 2]
    store.record_decision(decision(4))
    fourth = writer.submit(feedback(4), urgent=True)
    assert [third.result(10)[0], fourth.result(10)[0]] == [FeedbackOutcome.APPLIED] * 2
    assert held.batches == [1, 2, 2]
    writer.close()


def test_commit_gives_the_results_in_order_or_the_first_error(store):
    def broken(stored, decision):
        raise RuntimeError("bad update")

    writer = StoreWriter(store)
    for i in range(4):
        writer.submit(RecordDecision(decision(i)))

    async def main():
        results = await writer.commit(feedback(0), feedback(1))
        with pytest.raises(RuntimeError, match="bad update"):
            await writer.commit(feedback(2), ApplyFeedback("d3", 1.0, 3000.0, 3600.0, broken))
        return results

    assert [outcome for outcome, _ in asyncio.run(main())] == [FeedbackOutcome.APPLIED] * 2
    writer.close()


class GatedStore:
    """A real store whose batches wait until the test opens the gate."""

    def __init__(self, store):
        self.store, self.gate = store, threading.Event()

    def apply_batch(self, operations, derive=None):
        assert self.gate.wait(30)
        return self.store.apply_batch(operations, derive)


def test_a_write_whose_waiter_gave_up_is_still_reported_applied(store):
    """What counts committed writes (the outcomes model's counters) must see a write whose request timed out: it was
    recorded, and the client's retry will be a duplicate."""
    from seldon_market_ab.routers.stores import Outcome, OutcomeStatus, RecordOutcome, StoreUnavailableError

    gated, applied, done = GatedStore(store), [], threading.Event()

    def record(operation, result):
        applied.append((operation, result))
        done.set()

    writer = StoreWriter(gated, applied=record)
    operation = RecordOutcome(Outcome("late", "a", True, 0.01, 1000.0))

    async def give_up():
        with pytest.raises(StoreUnavailableError, match="no commit within"):
            await writer.commit_within(0.05, operation)

    asyncio.run(give_up())
    gated.gate.set()
    assert done.wait(10) and applied == [(operation, OutcomeStatus.RECORDED)]
    assert store.outcome("late") is not None
    writer.close()
