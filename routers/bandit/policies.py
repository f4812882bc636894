"""Bandit policies with a river-style ``pull``/``update`` pair: pure numpy, no MLServer, storage or metrics.

The same objects run inside the routers, in the offline replays and in tests. A policy
holds only its configuration; its state is a plain ``dict[arm, ArmStats]`` passed in and
returned, so a store can load, update and save it atomically.

Thompson sampling is probability matching: arm ``i`` is chosen with the posterior
probability that it is the best arm (``posteriors.probability_best``), and the arm is drawn
from exactly those probabilities, so the propensity logged with a decision is the
probability that was used. ``monte_carlo_probabilities`` estimates the same numbers by
sampling, for checks.
"""

from __future__ import annotations

import numpy as np

from .posteriors import ArmStats, BetaBernoulli, probability_best

State = dict[str, ArmStats]


def state_to_dict(state: State) -> dict:
    return {arm: {"weight": s.weight, "total": s.total, "total_sq": s.total_sq, "rewards": s.rewards}
            for arm, s in state.items()}


def state_from_dict(values: dict) -> State:
    return {arm: ArmStats(**s) for arm, s in values.items()}


def draw(probabilities: dict[str, float], rng: np.random.Generator) -> tuple[str, float]:
    """One arm drawn at its probability, returned with that probability (the logged propensity).

    One uniform number against the cumulative probabilities (``Generator.choice`` costs ten times more).
    """
    u = rng.random()
    cumulative = 0.0
    for arm, probability in probabilities.items():
        cumulative += probability
        if u < cumulative:
            return arm, probability
    return arm, probability  # rounding left u above the last cumulative sum


class Policy:
    """The base of every policy, and all that the routers use of one: a new policy subclasses it, implements
    ``probabilities``, ``update`` and ``summary``, and runs in a router without touching the runtime.

    ``arms`` are the configured arms; a state is a ``dict[arm, ArmStats]`` (``State``), which the stores keep
    as JSON (``state_to_dict``). A state may also hold arms removed from ``arms`` since: their late rewards are
    still applied.
    """

    arms: tuple[str, ...]

    def initial_state(self) -> State:
        return {arm: ArmStats() for arm in self.arms}

    def probabilities(self, state: State, eligible=None) -> dict[str, float]:
        """The probability of choosing each of ``eligible`` (default: all ``arms``) next: the propensity a decision
        logs. They sum to one."""
        raise NotImplementedError

    def pull(self, state: State, rng: np.random.Generator, eligible=None) -> tuple[str, float]:
        """One arm drawn at its probability, and that probability."""
        return draw(self.probabilities(state, eligible), rng)

    def check_reward(self, reward: float) -> None:
        """Raise ``ValueError`` for a (finite) reward this policy cannot learn from; the routers check every reward
        of a feedback request before they apply any. Default: any finite reward."""

    def update(self, state: State, arm: str, reward: float) -> State:
        """A new state with one more ``reward`` for ``arm``; ``state`` is left as it was."""
        raise NotImplementedError

    def summary(self, state: State) -> dict[str, tuple[float, float, float]]:
        """Each arm's expected reward, with a 95% interval: ``(mean, lower, upper)`` (the routers' gauges)."""
        raise NotImplementedError


class ThompsonSampling(Policy):
    """Thompson sampling over ``arms`` with optional discounting, a minimum share and a uniform warm-up.

    Parameters
    ----------
    arms : sequence of str
        Distinct arm names.
    family : BetaBernoulli or NormalGamma, optional
        The reward model and its prior (default: Bernoulli rewards, uniform Beta(1, 1) prior).
    discount : float in (0, 1]
        Before each update every arm's statistics are multiplied by γ = ``discount``, so evidence has a
        half-life of ln 2 / -ln γ updates and an arm that got worse is forgotten (1: stationary).
    min_share : float in [0, 1 / len(arms)]
        Every eligible arm keeps at least this probability (which also bounds inverse-propensity weights).
    warmup_rewards : int
        Uniform choice until every eligible arm has this many rewards.

    Examples
    --------
    >>> policy = ThompsonSampling(("baseline", "enhanced"))
    >>> state = policy.initial_state()
    >>> policy.probabilities(state)
    {'baseline': 0.5, 'enhanced': 0.5}
    >>> for arm, reward in [("enhanced", 1.0), ("enhanced", 1.0), ("baseline", 0.0)]:
    ...     state = policy.update(state, arm, reward)
    >>> {arm: round(p, 3) for arm, p in policy.probabilities(state).items()}
    {'baseline': 0.1, 'enhanced': 0.9}
    >>> arm, propensity = policy.pull(state, np.random.default_rng(0))
    >>> arm, round(propensity, 3)
    ('enhanced', 0.9)
    """

    def __init__(self, arms, family=None, discount: float = 1.0, min_share: float = 0.0, warmup_rewards: int = 0):
        self.arms = tuple(arms)
        if len(self.arms) < 1 or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must be distinct and non-empty, got {list(arms)}")
        if not 0 < discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {discount}")
        if min_share < 0 or min_share * len(self.arms) > 1:
            raise ValueError(f"min_share must be in [0, 1/arms], got {min_share}")
        self.family = family or BetaBernoulli()
        self.discount, self.min_share, self.warmup_rewards = float(discount), float(min_share), int(warmup_rewards)

    def _eligible(self, eligible) -> tuple[str, ...]:
        chosen = tuple(a for a in self.arms if eligible is None or a in eligible)
        if not chosen:
            raise ValueError("no eligible arm")
        return chosen

    def probabilities(self, state: State, eligible=None) -> dict[str, float]:
        """Propensity of each eligible arm for the next decision."""
        arms = self._eligible(eligible)
        if any(state[a].rewards < self.warmup_rewards for a in arms):
            best = np.full(len(arms), 1.0 / len(arms))
        else:
            best = probability_best(self.family, [state[a] for a in arms])
        floor = min(self.min_share, 1.0 / len(arms))
        mixed = floor + (1.0 - floor * len(arms)) * best
        return dict(zip(arms, mixed / mixed.sum(), strict=True))

    def update(self, state: State, arm: str, reward: float) -> State:
        if arm not in state:  # an arm removed from the configuration may still receive late feedback
            raise ValueError(f"unknown arm {arm!r}; arms are {list(state)}")
        reward = float(reward)
        self.check_reward(reward)
        γ = self.discount
        out = {a: s.discounted(γ) for a, s in state.items()} if γ < 1 else dict(state)
        out[arm] = out[arm].rewarded(reward)
        return out

    def check_reward(self, reward: float) -> None:
        self.family.check_reward(reward)

    def summary(self, state: State) -> dict[str, tuple[float, float, float]]:
        """Posterior mean and 95% interval of each arm's expected reward."""
        return {arm: self.family.summary(state[arm]) for arm in self.arms}

    def monte_carlo_probabilities(self, state: State, rng, samples: int = 200_000, eligible=None) -> dict:
        arms = self._eligible(eligible)
        draws = np.stack([self.family.posterior(state[a]).rvs(samples, random_state=rng) for a in arms])
        counts = np.bincount(draws.argmax(axis=0), minlength=len(arms))
        return dict(zip(arms, counts / samples, strict=True))


class EpsilonGreedy(Policy):
    """Baseline: the arm with the best mean reward, a uniform arm with probability ``epsilon``."""

    def __init__(self, arms, epsilon: float = 0.1):
        self.arms, self.epsilon = tuple(arms), float(epsilon)

    def probabilities(self, state: State, eligible=None) -> dict[str, float]:
        arms = [a for a in self.arms if eligible is None or a in eligible]
        means = np.array([state[a].total / state[a].weight if state[a].weight else np.inf for a in arms])
        best = np.flatnonzero(means == means.max())
        p = np.full(len(arms), self.epsilon / len(arms))
        p[best] += (1 - self.epsilon) / len(best)
        return dict(zip(arms, p, strict=True))

    def update(self, state: State, arm: str, reward: float) -> State:
        return {**state, arm: state[arm].rewarded(reward)}


class FixedSplit(Policy):
    """Baseline: a static A/B split with fixed weights; learns nothing."""

    def __init__(self, weights: dict[str, float]):
        total = sum(weights.values())
        self.arms = tuple(weights)
        self.weights = {a: w / total for a, w in weights.items()}

    def probabilities(self, state: State, eligible=None) -> dict[str, float]:
        return dict(self.weights)

    def update(self, state: State, arm: str, reward: float) -> State:
        return state


class Bandit:
    """A policy with its own state and random generator: the river-style ``pull``/``update`` pair.

    Examples
    --------
    >>> bandit = Bandit(ThompsonSampling(("a", "b")), seed=1)
    >>> rng = np.random.default_rng(2)
    >>> for _ in range(500):
    ...     arm, _ = bandit.pull()
    ...     bandit.update(arm, float(rng.random() < {"a": 0.3, "b": 0.7}[arm]))
    >>> bandit.state["b"].rewards > 400  # most pulls went to the better arm
    True
    """

    def __init__(self, policy, seed: int = 0):
        self.policy, self.state, self.rng = policy, policy.initial_state(), np.random.default_rng(seed)

    def pull(self, eligible=None) -> tuple[str, float]:
        return self.policy.pull(self.state, self.rng, eligible)

    def update(self, arm: str, reward: float) -> None:
        self.state = self.policy.update(self.state, arm, reward)
