"""A router runtime driven in process with an injected clock: time-to-live, the expiry sweep and cooldowns,
without sleeping. (The same runtime class MLServer loads; tests over the wire are in test_routers.py.)"""

import asyncio
import json

import numpy as np
import pytest
from mlserver.settings import ModelParameters, ModelSettings

from seldon_market_ab.client import build_request, decode_outputs
from seldon_market_ab.routers.runtime import DERIVE_WHILE_DECIDING_SECONDS, EXPIRY_SWEEP_SECONDS, WHOLE_ROUTER
from seldon_market_ab.routers.thompson import ThompsonRouter
from seldon_market_ab.training.dataset import ohlcv_windows

from ..conftest import MIN_WINDOW, MODELS

TTL = 100.0
COOLDOWN = 50.0


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def router(tmp_path):
    extra = json.loads((MODELS / "thompson-router" / "model-settings.json").read_text())["parameters"]["extra"]
    extra.update(decision_ttl_seconds=TTL, unhealthy_cooldown_seconds=COOLDOWN, max_consecutive_errors=1,
                 min_share=0.0, warmup_rewards=0, seed=0, state_dir=str(tmp_path / "state"))
    settings = ModelSettings(name="thompson-router", implementation=ThompsonRouter,
                             parameters=ModelParameters(uri=str(tmp_path), extra=extra))
    router = ThompsonRouter(settings)
    router.clock = Clock(1_000.0)
    asyncio.run(router.load())
    yield router
    asyncio.run(router.unload())


WINDOW = ohlcv_windows("sp500", [4200], MIN_WINDOW)


def infer(router, inputs, request_id=None) -> dict:
    return decode_outputs(asyncio.run(router.predict(build_request(inputs, request_id))))


def decide(router, decision_id) -> str:
    return infer(router, {"ohlcv": WINDOW}, decision_id)["arm"][0]


def feedback(router, decision_id, reward=1.0, error=None) -> str:
    inputs = {"decision_id": np.array([decision_id], dtype=object), "reward": np.array([reward])}
    if error is not None:
        inputs["error"] = np.array([int(error)], np.int32)
    return infer(router, inputs)["status"][0]


def test_feedback_is_applied_up_to_the_time_to_live_and_expired_after(router):
    decide(router, "in-time")
    decide(router, "too-late")
    router.clock.now += TTL
    assert feedback(router, "in-time") == "applied"
    router.clock.now += 0.001
    assert feedback(router, "too-late") == "expired"
    assert feedback(router, "too-late") == "expired"  # and it stays so: nothing was applied


def test_the_writer_derives_propensities_only_while_the_router_decides(router):
    """Deriving the propensities of a new state costs more than a reward; a stream of feedback alone (a day's
    truth sent in bulk) skips it, and the next decision derives for itself, with the same result."""
    for i in range(3):
        decide(router, f"d{i}")
    assert feedback(router, "d0") == "applied"
    snapshot = router.store.snapshot()
    assert snapshot.derived[WHOLE_ROUTER]["probabilities"] == router.policy.probabilities(
        router.state(snapshot.states[WHOLE_ROUTER]))
    router.clock.now += DERIVE_WHILE_DECIDING_SECONDS + 0.001
    assert feedback(router, "d1") == "applied"
    snapshot = router.store.snapshot()
    assert snapshot.derived == {}  # the entry derived before is not this state's
    expected = router.policy.probabilities(router.state(snapshot.states[WHOLE_ROUTER]))
    for i in range(3, 8):
        answer = infer(router, {"ohlcv": WINDOW}, f"d{i}")
        assert answer["propensity"][0] == pytest.approx(expected[answer["arm"][0]])
    assert feedback(router, "d2") == "applied"  # deciding again: the writer derives again
    snapshot = router.store.snapshot()
    assert set(snapshot.derived) == {WHOLE_ROUTER}


def test_the_expiry_sweep_forgets_old_decisions_at_most_every_interval(router):
    decide(router, "old")  # the first decision after load sweeps (nothing yet) and schedules the next sweep
    router.clock.now += TTL + 1
    decide(router, "newer")  # before the next sweep: "old" is past its time-to-live but still kept
    router.writer.flush()  # decisions are committed by the writer thread, after the reply
    assert router.store.decision("old") is not None and router.store.pending_count() == 2
    router.clock.now = 1_000.0 + EXPIRY_SWEEP_SECONDS
    decide(router, "newest")  # sweeps: everything older than the time-to-live goes
    router.writer.flush()
    assert router.store.decision("old") is None and router.store.decision("newer") is None
    assert router.store.pending_count() == 1
    assert feedback(router, "old") == "unknown"  # reported, never silently dropped
    assert feedback(router, "newest") == "applied"


def test_a_cooldown_ends_with_time(router):
    arm = decide(router, "fails")
    assert feedback(router, "fails", reward=0.0, error=True) == "applied"  # one error takes it out here
    chosen = {decide(router, f"during-{i}") for i in range(40)}
    assert arm not in chosen
    router.clock.now += COOLDOWN
    chosen = {decide(router, f"after-{i}") for i in range(80)}
    assert arm in chosen
