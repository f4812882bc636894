"""The offline replay and the off-policy estimators, and the evidence the docs show."""

import json

import numpy as np
import pytest

from seldon_market_ab.analysis import router_evidence
from seldon_market_ab.routers.bandit import FixedSplit, ThompsonSampling
from seldon_market_ab.routers.bandit.replay import dr_terms, ips_terms, mean_reward_model, replay

from ..conftest import REPO


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


def test_evidence_script_runs_end_to_end(tmp_path):
    assert router_evidence.main(["--seeds", "2", "--horizon", "300", "--replay-seeds", "1",
                                 "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "router-evidence.json").read_text())
    assert set(results) == {"simulation", "replay", "regimes"}
    assert results["replay"]["n"] > 3000 and len(results["regimes"]["by_regime"]) == 4
    assert (tmp_path / "router-simulation.png").stat().st_size > 10_000
    assert (tmp_path / "router-replay.png").stat().st_size > 10_000


def test_stored_evidence_is_from_a_full_run():
    """The docs render docs/router-evidence.json (tests/e2e/test_readme.py); it must come from a full run."""
    results = router_evidence.load_results(REPO / "docs" / "router-evidence.json")
    assert results["simulation"]["seeds"] >= 20 and results["simulation"]["horizon"] >= 5000
    assert results["replay"]["n"] > 3000
