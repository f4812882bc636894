"""Both state stores honour one contract: atomic, idempotent feedback and outcomes that are never lost."""

import math
import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import pytest

from seldon_market_ab.routers.bandit import ThompsonSampling, state_from_dict, state_to_dict
from seldon_market_ab.routers.stores import (
    ArmHealth,
    Decision,
    FeedbackOutcome,
    Outcome,
    OutcomeStatus,
    RecordOutcome,
    open_store,
)

POLICY = ThompsonSampling(("a", "b"))
TTL = 3600.0


def update(stored, decision, reward):
    state = state_from_dict(stored) if stored else POLICY.initial_state()
    return state_to_dict(POLICY.update(state, decision.arm, reward))


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("redis_url")


@pytest.fixture
def store(store_url):
    store = open_store(store_url, namespace=f"test-{uuid.uuid4().hex[:8]}")
    yield store
    store.close()


def decide(store, decision_id, arm="a", context="all", created=1000.0):
    decision = Decision(decision_id, context, arm, 0.5, created)
    store.record_decision(decision)
    return decision


def feed(store, decision_id, reward, now=1010.0):
    return store.apply_feedback(decision_id, reward, now, TTL, lambda s, d: update(s, d, reward))


def test_feedback_outcomes(store):
    decide(store, "d1", "a")
    decide(store, "d2", "b")
    assert store.pending_count() == 2
    assert feed(store, "d1", 1.0)[0] is FeedbackOutcome.APPLIED
    assert feed(store, "d1", 1.0)[0] is FeedbackOutcome.DUPLICATE
    assert feed(store, "d1", 0.0)[0] is FeedbackOutcome.CONFLICT
    assert feed(store, "nope", 1.0) == (FeedbackOutcome.UNKNOWN, None)
    assert feed(store, "d2", 0.0, now=1000.0 + TTL + 1)[0] is FeedbackOutcome.EXPIRED
    state = state_from_dict(store.load_states()["all"])
    assert (state["a"].rewards, state["a"].total, state["b"].rewards) == (1, 1.0, 0)
    assert store.pending_count() == 1
    counters = store.counters()
    assert counters["decisions:a"] == 1 and counters["feedback:applied"] == 1 and counters["feedback:duplicate"] == 1
    assert counters["feedback:conflict"] == 1 and counters["feedback:unknown"] == 1


def test_contexts_are_separate(store):
    decide(store, "x", "a", context="bull")
    decide(store, "y", "b", context="bear")
    feed(store, "x", 1.0)
    feed(store, "y", 0.0)
    states = store.load_states()
    assert set(states) == {"bull", "bear"}
    assert state_from_dict(states["bull"])["a"].rewards == 1 and state_from_dict(states["bear"])["a"].rewards == 0


def test_expire_forgets_old_decisions(store):
    decide(store, "old", created=0.0)
    decide(store, "new", created=5000.0)
    assert store.expire(now=5000.0, ttl=TTL) == 1
    assert store.decision("old") is None and store.decision("new") is not None
    assert store.pending_count() == 1
    assert feed(store, "old", 1.0)[0] is FeedbackOutcome.UNKNOWN


def test_a_repeated_request_id_keeps_its_first_decision(store):
    first = decide(store, "same", "a")
    assert store.record_decision(Decision("same", "all", "b", 0.5, 2000.0)) == first
    assert store.decision("same").arm == "a" and store.pending_count() == 1
    assert store.counters()["decisions:a"] == 1 and "decisions:b" not in store.counters()


def test_health_round_trip(store):
    assert store.load_health() == {}
    store.update_health("a", lambda h: replace(h, unhealthy_until=math.inf))
    store.update_health("b", lambda h: replace(h, consecutive_errors=h.consecutive_errors + 2))
    health = store.load_health()
    assert not health["a"].healthy(now=1e12) and health["b"] == ArmHealth(2, 0.0)


def _feed_many(url, namespace, ids, barrier):
    store = open_store(url, namespace)
    barrier.wait(timeout=60)  # every process has its connection open: now they race
    outcomes = [feed(store, i, 1.0)[0].value for i in ids]
    store.close()
    return outcomes


def test_concurrent_processes_apply_every_reward_exactly_once(store_url):
    namespace = f"race-{uuid.uuid4().hex[:8]}"
    store = open_store(store_url, namespace)
    ids = [f"d{i}" for i in range(120)]
    for i, decision_id in enumerate(ids):
        decide(store, decision_id, "ab"[i % 2])
    # Four processes each send every id: each reward must land once, the rest are duplicates.
    with multiprocessing.Manager() as manager, ProcessPoolExecutor(4) as pool:
        barrier = manager.Barrier(4)
        results = list(pool.map(_feed_many, [store_url] * 4, [namespace] * 4, [ids, ids[::-1], ids, ids[::-1]],
                                [barrier] * 4))
    outcomes = [o for result in results for o in result]
    assert outcomes.count("applied") == len(ids) and outcomes.count("duplicate") == 3 * len(ids)
    state = state_from_dict(store.load_states()["all"])
    assert state["a"].rewards == state["b"].rewards == 60 and state["a"].total == 60.0
    assert store.pending_count() == 0
    store.close()


def record(store, request_id, model="a", correct=True, strategy_return=0.01, created=1000.0):
    return store.apply(RecordOutcome(Outcome(request_id, model, correct, strategy_return, created)))


def test_outcomes_count_once_per_request_id(store):
    assert record(store, "r1", "a", True, 0.02) is OutcomeStatus.RECORDED
    assert record(store, "r2", "a", False, -0.01) is OutcomeStatus.RECORDED
    assert record(store, "r3", "b", True, None) is OutcomeStatus.RECORDED
    assert record(store, "r1", "a", True, 0.02, created=2000.0) is OutcomeStatus.DUPLICATE  # a retry: counted once
    assert record(store, "r2", "a", True, -0.01) is OutcomeStatus.CONFLICT  # other values: the first stands
    assert record(store, "r3", "b", True, 0.5) is OutcomeStatus.CONFLICT
    counters = store.counters()
    assert counters["outcomes:a"] == 2 and counters["outcomes_correct:a"] == 1
    assert counters["outcome_return:a"] == pytest.approx(0.01)
    assert counters["outcomes:b"] == 1 and counters["outcomes_correct:b"] == 1 and "outcome_return:b" not in counters
    assert store.outcome("r2") == Outcome("r2", "a", False, -0.01, 1000.0) and store.outcome("nope") is None


def test_a_batch_of_outcomes_with_one_id_twice_records_it_once(store):
    outcome = Outcome("same", "a", True, 0.01, 1000.0)
    results = store.apply_batch([RecordOutcome(outcome), RecordOutcome(outcome),
                                 RecordOutcome(Outcome("same", "b", True, 0.01, 1000.0))])
    assert results == [OutcomeStatus.RECORDED, OutcomeStatus.DUPLICATE, OutcomeStatus.CONFLICT]
    assert store.counters()["outcomes:a"] == 1 and "outcomes:b" not in store.counters()


def test_expire_forgets_old_outcomes_and_keeps_their_counts(store):
    record(store, "old", created=0.0)
    record(store, "new", created=5000.0)
    assert store.expire(now=5000.0, ttl=TTL) == 1
    assert store.outcome("old") is None and store.outcome("new") is not None
    assert store.counters()["outcomes:a"] == 2
