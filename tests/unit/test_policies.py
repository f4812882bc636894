"""The pure bandit policies: convergence, propensities, discounting, minimum share, warm-up."""

import numpy as np
import pytest

from seldon_market_ab.routers.bandit import (
    ArmStats,
    Bandit,
    BetaBernoulli,
    EpsilonGreedy,
    FixedSplit,
    NormalGamma,
    ThompsonSampling,
    state_from_dict,
    state_to_dict,
)

ARMS = ("a", "b", "c")


def run(policy, means, steps, seed, reward=None):
    """Simulate ``steps`` decisions with immediate Bernoulli (or custom) rewards; returns the arms chosen."""
    bandit, rng = Bandit(policy, seed), np.random.default_rng(seed + 1000)
    chosen = []
    for step in range(steps):
        arm, _ = bandit.pull()
        p = means(step)[arm] if callable(means) else means[arm]
        bandit.update(arm, float(rng.random() < p) if reward is None else reward(rng, p))
        chosen.append(arm)
    return np.array(chosen), bandit


def test_best_arm_gets_most_late_traffic_for_most_seeds():
    means = {"a": 0.45, "b": 0.50, "c": 0.60}
    shares = [np.mean(run(ThompsonSampling(ARMS), means, 2000, seed)[0][-500:] == "c") for seed in range(10)]
    assert sum(share >= 0.9 for share in shares) >= 8, shares


def _stats(n, mean, sd=0.0):
    return ArmStats(n, n * mean, n * (sd * sd + mean * mean), int(n))


@pytest.mark.parametrize(("family", "state"), [
    (BetaBernoulli(), {"a": ArmStats(), "b": _stats(1e5, 0.5), "c": _stats(1e5, 0.502)}),
    (BetaBernoulli(), {"a": _stats(1e7, 0.5), "b": _stats(1e7, 0.50001), "c": ArmStats()}),
    (NormalGamma(prior_std=0.01), {"a": ArmStats(), "b": _stats(1e5, 0.001, 0.01), "c": _stats(1e5, 0.00101, 0.01)}),
    (NormalGamma(prior_std=0.01), {"a": _stats(2, 0.01, 0.02), "b": _stats(30, 0.002, 0.01), "c": _stats(1, -0.01)}),
], ids=["beta-prior-vs-1e5", "beta-1e7", "normal-gamma-prior-vs-1e5", "normal-gamma-heavy-tails"])
def test_propensities_hold_for_narrow_and_heavy_tailed_posteriors(family, state):
    """One posterior thousands of times narrower than another, or a Student t with two degrees of freedom."""
    policy = ThompsonSampling(ARMS, family)
    exact = policy.probabilities(state)
    sampled = policy.monte_carlo_probabilities(state, np.random.default_rng(5), 1_000_000)
    for arm in ARMS:
        assert exact[arm] == pytest.approx(sampled[arm], abs=0.003), (exact, sampled)


@pytest.mark.parametrize("family", [BetaBernoulli(), BetaBernoulli(2, 5), NormalGamma(prior_std=0.02)],
                         ids=["beta", "beta-2-5", "normal-gamma"])
def test_propensities_sum_to_one_and_match_monte_carlo(family):
    policy = ThompsonSampling(ARMS, family)
    rng = np.random.default_rng(0)
    state = policy.initial_state()
    for arm, n, p in (("a", 40, 0.5), ("b", 400, 0.55), ("c", 5, 0.7)):
        for _ in range(n):
            state = policy.update(state, arm, float(rng.random() < p) if family.kind == "bernoulli"
                                  else rng.normal(p / 100, 0.01))
    for eligible in (None, ("a", "b"), ("c",)):
        exact = policy.probabilities(state, eligible)
        assert sum(exact.values()) == pytest.approx(1.0, abs=1e-12)
        sampled = policy.monte_carlo_probabilities(state, np.random.default_rng(1), 400_000, eligible)
        for arm in exact:
            assert exact[arm] == pytest.approx(sampled[arm], abs=0.005), (arm, exact, sampled)


def test_pull_draws_arms_at_their_logged_propensity():
    policy = ThompsonSampling(ARMS, min_share=0.05)
    state = policy.initial_state()
    for arm, reward in [("a", 1), ("a", 1), ("b", 0), ("c", 1), ("c", 0)]:
        state = policy.update(state, arm, reward)
    rng = np.random.default_rng(3)
    draws = [policy.pull(state, rng) for _ in range(8_000)]
    expected = policy.probabilities(state)
    for arm in ARMS:
        logged = {p for a, p in draws if a == arm}
        assert logged == {expected[arm]}
        assert np.mean([a == arm for a, _ in draws]) == pytest.approx(expected[arm], abs=0.02)  # 4 sd


def test_discounting_forgets_an_arm_that_got_worse():
    def means(step):
        return {"a": 0.75 if step < 1500 else 0.25, "b": 0.5}

    def late_share_of_b(discount):
        shares = []
        for seed in range(4):
            chosen, _ = run(ThompsonSampling(("a", "b"), discount=discount), means, 2500, seed)
            shares.append(np.mean(chosen[2000:] == "b"))
        return np.mean(shares)

    forgetting, stationary = late_share_of_b(0.98), late_share_of_b(1.0)
    assert forgetting > 0.8
    assert forgetting > stationary + 0.2, (forgetting, stationary)


def test_minimum_share_is_kept():
    policy = ThompsonSampling(ARMS, min_share=0.1)
    state = policy.initial_state()
    for _ in range(3000):
        state = policy.update(state, "c", 1.0)
        state = policy.update(state, "a", 0.0)
    probabilities = policy.probabilities(state)
    assert min(probabilities.values()) == pytest.approx(0.1, abs=1e-9)
    assert probabilities["c"] == pytest.approx(0.8, abs=1e-3)  # b keeps a sliver of chance of being best


def test_uniform_warm_up_until_every_arm_has_enough_rewards():
    policy = ThompsonSampling(ARMS, warmup_rewards=3)
    state = policy.initial_state()
    for _ in range(3):
        state = policy.update(state, "a", 1.0)
        state = policy.update(state, "b", 0.0)
    assert policy.probabilities(state) == pytest.approx({arm: 1 / 3 for arm in ARMS})
    for _ in range(3):
        state = policy.update(state, "c", 0.0)
    assert policy.probabilities(state)["a"] > 0.9


def test_gaussian_rewards_find_the_arm_that_earns_more():
    def reward(rng, mean):
        return float(rng.normal(mean, 0.01))

    chosen, bandit = run(ThompsonSampling(("x", "y"), NormalGamma(prior_std=0.01)), {"x": 0.0, "y": 0.004},
                         1500, seed=4, reward=reward)
    assert np.mean(chosen[-500:] == "y") > 0.9
    summary = bandit.policy.summary(bandit.state)
    assert summary["y"][1] < 0.004 < summary["y"][2]  # the true mean lies in the 95% interval


def test_rejects_bad_settings_and_rewards():
    with pytest.raises(ValueError, match="distinct"):
        ThompsonSampling(("a", "a"))
    with pytest.raises(ValueError, match="discount"):
        ThompsonSampling(ARMS, discount=0)
    with pytest.raises(ValueError, match="min_share"):
        ThompsonSampling(ARMS, min_share=0.5)
    with pytest.raises(ValueError, match=">= 1"):
        BetaBernoulli(0.5, 0.5)
    policy = ThompsonSampling(ARMS)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        policy.update(policy.initial_state(), "a", 2.0)
    with pytest.raises(ValueError, match="unknown arm"):
        policy.update(policy.initial_state(), "z", 1.0)


def test_state_round_trips_through_json_dicts():
    policy = ThompsonSampling(ARMS, discount=0.99)
    state = policy.update(policy.update(policy.initial_state(), "a", 1.0), "b", 0.0)
    assert state_from_dict(state_to_dict(state)) == state
    assert state["a"].weight == pytest.approx(0.99) and state["a"].rewards == 1
    assert isinstance(state["c"], ArmStats)


def test_baseline_policies():
    greedy = EpsilonGreedy(ARMS, epsilon=0.1)
    state = greedy.update(greedy.update(greedy.update(greedy.initial_state(), "a", 1), "b", 0), "c", 0)
    assert greedy.probabilities(state) == pytest.approx({"a": 0.1 / 3 + 0.9, "b": 0.1 / 3, "c": 0.1 / 3})
    split = FixedSplit({"a": 70, "b": 30})
    assert split.probabilities(split.initial_state()) == {"a": 0.7, "b": 0.3}
