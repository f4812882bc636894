"""A router runtime driven in process with an injected clock: time-to-live, the expiry sweep and cooldowns,
without sleeping; and with a second policy, which runs on the declared ``Policy`` base without touching the runtime.
(The same runtime class MLServer loads; tests over the wire are in test_routers.py.)"""

import asyncio
import json

import numpy as np
import pytest
from mlserver.settings import ModelParameters, ModelSettings
from prometheus_client import REGISTRY

from seldon_market_ab.client import build_request, decode_outputs
from seldon_market_ab.protocol import InvalidInput
from seldon_market_ab.routers.bandit import Policy, state_from_dict
from seldon_market_ab.routers.decisions import WHOLE_ROUTER
from seldon_market_ab.routers.settings import RouterSettings
from seldon_market_ab.routers.state import DERIVE_WHILE_DECIDING_SECONDS, EXPIRY_SWEEP_SECONDS
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


def load(runtime, name, tmp_path, **settings):
    """``runtime`` loaded in process with thompson-router's settings file, ``settings`` over it, and a fake clock."""
    extra = json.loads((MODELS / "thompson-router" / "model-settings.json").read_text())["parameters"]["extra"]
    extra.update(settings, state_dir=str(tmp_path / "state"))
    router = runtime(ModelSettings(name=name, implementation=runtime,
                                   parameters=ModelParameters(uri=str(tmp_path), extra=extra)))
    router.clock = Clock(1_000.0)
    asyncio.run(router.load())
    return router


@pytest.fixture
def router(tmp_path):
    router = load(ThompsonRouter, "thompson-router", tmp_path, decision_ttl_seconds=TTL,
                  unhealthy_cooldown_seconds=COOLDOWN, max_consecutive_errors=1, min_share=0.0, warmup_rewards=0,
                  seed=0)
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
    snapshot = router.state.store.snapshot()
    assert snapshot.derived[WHOLE_ROUTER]["probabilities"] == router.state.policy.probabilities(
        router.state.policy_state(snapshot.states[WHOLE_ROUTER]))
    router.clock.now += DERIVE_WHILE_DECIDING_SECONDS + 0.001
    assert feedback(router, "d1") == "applied"
    snapshot = router.state.store.snapshot()
    assert snapshot.derived == {}  # the entry derived before is not this state's
    expected = router.state.policy.probabilities(router.state.policy_state(snapshot.states[WHOLE_ROUTER]))
    for i in range(3, 8):
        answer = infer(router, {"ohlcv": WINDOW}, f"d{i}")
        assert answer["propensity"][0] == pytest.approx(expected[answer["arm"][0]])
    assert feedback(router, "d2") == "applied"  # deciding again: the writer derives again
    snapshot = router.state.store.snapshot()
    assert set(snapshot.derived) == {WHOLE_ROUTER}


def test_the_expiry_sweep_forgets_old_decisions_at_most_every_interval(router):
    decide(router, "old")  # the first decision after load sweeps (nothing yet) and schedules the next sweep
    router.clock.now += TTL + 1
    decide(router, "newer")  # before the next sweep: "old" is past its time-to-live but still kept
    router.state.writer.flush()  # decisions are committed by the writer thread, after the reply
    assert router.state.store.decision("old") is not None and router.state.store.pending_count() == 2
    router.clock.now = 1_000.0 + EXPIRY_SWEEP_SECONDS
    decide(router, "newest")  # sweeps: everything older than the time-to-live goes
    router.state.writer.flush()
    assert router.state.store.decision("old") is None and router.state.store.decision("newer") is None
    assert router.state.store.pending_count() == 1
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


class Proportional(Policy):
    """A second policy, on the declared base alone (no ``family``): each arm in proportion to 1 + its summed rewards,
    which must be >= 0 (so 2.0, which a Bernoulli Thompson router refuses, is taken, and -1.0 is not)."""

    def __init__(self, arms):
        self.arms = tuple(arms)

    def probabilities(self, state, eligible=None):
        weights = {arm: 1.0 + state[arm].total for arm in self.arms if eligible is None or arm in eligible}
        return {arm: weight / sum(weights.values()) for arm, weight in weights.items()}

    def check_reward(self, reward):
        if reward < 0:
            raise ValueError(f"a proportional reward must be >= 0, got {reward}")

    def update(self, state, arm, reward):
        return {**state, arm: state[arm].rewarded(reward)}

    def summary(self, state):
        return {arm: (state[arm].total, 0.0, state[arm].total) for arm in self.arms}


class ProportionalSettings(RouterSettings):
    def policy(self) -> Policy:
        return Proportional(self.arms)


class ProportionalRouter(ThompsonRouter):
    settings_class = ProportionalSettings


def test_a_second_policy_runs_in_the_router_through_decisions_and_feedback(tmp_path):
    """Propensities, reward checks, updates and gauges all come from the policy: the runtime asks nothing else."""
    router = load(ProportionalRouter, "proportional-router", tmp_path, arms="a,b", default_arm="a", min_share=0.0,
                  warmup_rewards=0, seed=0)
    try:
        policy = router.state.policy
        assert isinstance(policy, Proportional) and not hasattr(policy, "family")
        first = infer(router, {"ohlcv": WINDOW}, "p-0")
        arm = first["arm"][0]
        assert first["propensity"][0] == pytest.approx(0.5)
        assert feedback(router, "p-0", reward=2.0) == "applied"
        with pytest.raises(InvalidInput, match="a proportional reward must be >= 0"):
            feedback(router, "p-0", reward=-1.0)
        expected = policy.update(policy.initial_state(), arm, 2.0)
        stored = router.state.store.snapshot()
        assert state_from_dict(stored.states[WHOLE_ROUTER]) == expected
        assert stored.derived[WHOLE_ROUTER]["probabilities"] == policy.probabilities(expected)  # 3/4 and 1/4
        for i in range(1, 20):
            answer = infer(router, {"ohlcv": WINDOW}, f"p-{i}")
            assert answer["propensity"][0] == pytest.approx(policy.probabilities(expected)[answer["arm"][0]])
        mean = REGISTRY.get_sample_value("market_ab_router_posterior_mean",
                                         {"router": "proportional-router", "context": WHOLE_ROUTER, "arm": arm})
        assert mean == policy.summary(expected)[arm][0] == 2.0
    finally:
        asyncio.run(router.unload())


def test_the_policy_key_names_every_policy_setting_and_nothing_else():
    """What a router derived from a state is read only by routers whose policy settings are the same."""
    base = RouterSettings.from_extra({"arms": "a,b"})
    changed = {"arms": "a,c", "reward": "gaussian", "prior_alpha": 2, "prior_beta": 2, "prior_mean": 0.5,
               "prior_std": 0.02, "prior_strength": 2, "discount": 0.9, "min_share": 0.1, "warmup_rewards": 5}
    assert set(changed) == set(RouterSettings.policy_fields)
    for name, value in changed.items():
        assert RouterSettings.from_extra({"arms": "a,b", name: value}).policy_key() != base.policy_key(), name
    others = {"seed": 3, "min_window": 9, "default_arm": "b", "decision_ttl_seconds": 5, "max_consecutive_errors": 9}
    assert RouterSettings.from_extra({"arms": "a,b", **others}).policy_key() == base.policy_key()
