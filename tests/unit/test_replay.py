"""The offline replay and the off-policy estimators, and the evidence the docs show."""


import numpy as np
import pytest

from seldon_market_ab.routers.bandit import FixedSplit, ThompsonSampling
from seldon_market_ab.routers.bandit.replay import dr_terms, ips_terms, mean_reward_model, replay


class Recorder(FixedSplit):
    """A fixed split that records which rewards it was told about, and when."""

    def __init__(self):
        super().__init__({"a": 1, "b": 1})
        self.seen = []

    def probabilities(self, state, eligible=None):
        self.seen.append(("decide", len([s for s in self.seen if s[0] == "update"])))
        return super().probabilities(state, eligible)

    def update(self, state, arm, reward):
        self.seen.append(("update", reward))
        return state


@pytest.mark.parametrize("delay", [0, 1, 2])
def test_rewards_arrive_after_the_batch_delay_batches_later(delay):
    recorder = Recorder()
    rewards = np.arange(12, dtype=float).reshape(6, 2)  # 6 rounds, 3 batches of 2
    replay(recorder, rewards, batches=np.repeat([0, 1, 2], 2), delay=delay)
    updates_known_at_decisions = [n for kind, n in recorder.seen if kind == "decide"]
    # batch b is decided from one state (computed once) knowing the rewards of batches < b - delay
    assert updates_known_at_decisions == [2 * max(0, b - delay) for b in range(3)]


def test_ips_and_dr_recover_a_known_value_from_uniform_logs():
    rng = np.random.default_rng(0)
    rewards = (rng.random((20_000, 3)) < [0.4, 0.5, 0.7]).astype(float)
    log = replay(FixedSplit({"a": 1, "b": 1, "c": 1}), rewards, delay=0, seed=1)
    target = np.tile([0.0, 0.0, 1.0], (len(rewards), 1))  # always c
    truth = rewards[:, 2].mean()
    for terms in (ips_terms(log, target), dr_terms(log, target, mean_reward_model(log))):
        assert abs(terms.mean() - truth) < 3 * terms.std() / np.sqrt(len(terms))


def test_thompson_replay_logs_propensities_it_used():
    rewards = (np.random.default_rng(2).random((300, 2)) < [0.3, 0.7]).astype(float)
    log = replay(ThompsonSampling(("a", "b")), rewards, delay=1, seed=3)
    assert ((log.propensity > 0) & (log.propensity <= 1)).all()
    assert log.share("b")[-100:].mean() > 0.8
