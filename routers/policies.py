"""Bandit policies: pure numpy/scipy, no MLServer, storage or metrics.

The same objects run inside the routers, in the offline replays and in tests. A
policy holds only its configuration; its state is a plain ``dict[arm, ArmStats]``
passed in and returned, so a store can load, update and save it atomically.

Thompson sampling is probability matching: arm ``i`` is chosen with the posterior
probability that it is the best arm. The policies compute that probability by
one-dimensional quadrature, ``P(i best) = ∫ f_i(x) Π_{j≠i} F_j(x) dx`` (exact up to
quadrature error for independent posteriors; there is no closed form beyond two arms),
and draw the arm from it, so the propensity logged with a decision is exactly the
probability that was used.
``monte_carlo_probabilities`` estimates the same numbers by sampling, for checks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import special, stats

QUADRATURE_POINTS = 200  # evenly spaced probability levels per arm


@dataclass(frozen=True)
class ArmStats:
    """Sufficient statistics of one arm's rewards (discounted when the policy discounts)."""

    weight: float = 0.0  # number of rewards
    total: float = 0.0  # sum of rewards
    total_sq: float = 0.0  # sum of squared rewards
    rewards: int = 0  # undiscounted count: warm-up and reporting


State = dict[str, ArmStats]


def state_to_dict(state: State) -> dict:
    return {arm: asdict(s) for arm, s in state.items()}


def state_from_dict(values: dict) -> State:
    return {arm: ArmStats(**s) for arm, s in values.items()}


class BetaBernoulli:
    """Binary rewards (1: the predicted direction was right) with a Beta prior."""

    kind = "bernoulli"

    def __init__(self, prior_alpha: float = 1.0, prior_beta: float = 1.0):
        # >= 1 keeps every posterior density bounded, which the quadrature relies on.
        if prior_alpha < 1 or prior_beta < 1:
            raise ValueError(f"Beta prior parameters must be >= 1, got {prior_alpha}, {prior_beta}")
        self.prior_alpha, self.prior_beta = float(prior_alpha), float(prior_beta)

    def parameters(self, s: ArmStats) -> tuple[float, float]:
        return self.prior_alpha + s.total, self.prior_beta + s.weight - s.total

    def posterior(self, s: ArmStats):
        return stats.beta(*self.parameters(s))

    def pdf(self, s: ArmStats, x: np.ndarray) -> np.ndarray:
        a, b = self.parameters(s)
        x = np.clip(x, 1e-300, 1 - 1e-16)
        return np.exp((a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - special.betaln(a, b))

    def cdf(self, s: ArmStats, x: np.ndarray) -> np.ndarray:
        return special.betainc(*self.parameters(s), np.clip(x, 0, 1))

    def quantile(self, s: ArmStats, q: np.ndarray) -> np.ndarray:
        a, b = self.parameters(s)
        if a + b > 200:  # close to normal; the quadrature grid only needs to be dense where the mass is
            sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
            return np.clip(a / (a + b) + sd * special.ndtri(q), 0, 1)
        return special.betaincinv(a, b, q)

    def check_reward(self, reward: float) -> None:
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"a Bernoulli reward must be in [0, 1], got {reward}")


class NormalGamma:
    """Continuous rewards (the return of the position taken): Normal likelihood with unknown mean and
    variance, Normal-Gamma prior; the posterior of the mean is a Student t."""

    kind = "gaussian"

    def __init__(self, prior_mean: float = 0.0, prior_strength: float = 1.0, prior_std: float = 0.01):
        if prior_strength <= 0 or prior_std <= 0:
            raise ValueError("prior_strength and prior_std must be > 0")
        self.mu0, self.kappa0 = float(prior_mean), float(prior_strength)
        self.alpha0, self.beta0 = 1.0, float(prior_std) ** 2  # prior variance guess prior_std²

    def parameters(self, s: ArmStats) -> tuple[float, float, float]:
        """Degrees of freedom, location and scale of the Student-t posterior of the mean reward."""
        n = s.weight
        kappa = self.kappa0 + n
        mu = (self.kappa0 * self.mu0 + s.total) / kappa
        mean = s.total / n if n > 0 else 0.0
        squares = max(s.total_sq - n * mean * mean, 0.0)
        alpha = self.alpha0 + n / 2
        beta = self.beta0 + squares / 2 + self.kappa0 * n * (mean - self.mu0) ** 2 / (2 * kappa)
        return 2 * alpha, mu, np.sqrt(beta / (alpha * kappa))

    def posterior(self, s: ArmStats):
        df, loc, scale = self.parameters(s)
        return stats.t(df=df, loc=loc, scale=scale)

    def pdf(self, s: ArmStats, x: np.ndarray) -> np.ndarray:
        df, loc, scale = self.parameters(s)
        z = (x - loc) / scale
        log_norm = special.gammaln((df + 1) / 2) - special.gammaln(df / 2) - 0.5 * np.log(df * np.pi)
        return np.exp(log_norm - (df + 1) / 2 * np.log1p(z * z / df)) / scale

    def cdf(self, s: ArmStats, x: np.ndarray) -> np.ndarray:
        df, loc, scale = self.parameters(s)
        return special.stdtr(df, (x - loc) / scale)

    def quantile(self, s: ArmStats, q: np.ndarray) -> np.ndarray:
        df, loc, scale = self.parameters(s)
        return loc + scale * special.stdtrit(df, q)

    def check_reward(self, reward: float) -> None:
        pass


FAMILIES = {"bernoulli": BetaBernoulli, "gaussian": NormalGamma}


def draw(probabilities: dict[str, float], rng: np.random.Generator) -> tuple[str, float]:
    """One arm drawn at its probability, returned with that probability (the logged propensity)."""
    arms = list(probabilities)
    index = rng.choice(len(arms), p=list(probabilities.values()))
    return arms[index], probabilities[arms[index]]


class Policy:
    """What every policy offers: ``initial_state``, ``probabilities``, ``pull`` and ``update``."""

    arms: tuple[str, ...]

    def initial_state(self) -> State:
        return {arm: ArmStats() for arm in self.arms}

    def probabilities(self, state: State, eligible=None) -> dict[str, float]:
        raise NotImplementedError

    def pull(self, state: State, rng: np.random.Generator, eligible=None) -> tuple[str, float]:
        return draw(self.probabilities(state, eligible), rng)

    def update(self, state: State, arm: str, reward: float) -> State:
        raise NotImplementedError


class ThompsonSampling(Policy):
    """Thompson sampling over ``arms`` with optional discounting, a minimum share and a uniform warm-up.

    - ``discount`` γ in (0, 1]: before each update every arm's statistics are multiplied by γ, so evidence
      has a half-life of ln 2 / -ln γ updates and an arm that got worse is forgotten (γ = 1: stationary).
    - ``min_share`` m: every eligible arm keeps at least probability m (needs m × arms <= 1).
    - ``warmup_rewards`` N: uniform choice until every eligible arm has N rewards.
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
        self.family.check_reward(reward)
        γ = self.discount
        out = {a: replace(s, weight=s.weight * γ, total=s.total * γ, total_sq=s.total_sq * γ) if γ < 1 else s
               for a, s in state.items()}
        s = out[arm]
        out[arm] = replace(s, weight=s.weight + 1, total=s.total + reward, total_sq=s.total_sq + reward * reward,
                           rewards=s.rewards + 1)
        return out

    def summary(self, state: State) -> dict[str, tuple[float, float, float]]:
        """Posterior mean and 95% interval of each arm's expected reward."""
        out = {}
        for arm in self.arms:
            posterior = self.family.posterior(state[arm])
            low, high = posterior.ppf([0.025, 0.975])
            out[arm] = (float(posterior.mean()), float(low), float(high))
        return out

    def monte_carlo_probabilities(self, state: State, rng, samples: int = 200_000, eligible=None) -> dict:
        arms = self._eligible(eligible)
        draws = np.stack([self.family.posterior(state[a]).rvs(samples, random_state=rng) for a in arms])
        counts = np.bincount(draws.argmax(axis=0), minlength=len(arms))
        return dict(zip(arms, counts / samples, strict=True))


def _quadrature_levels(points: int) -> np.ndarray:
    """Probability levels: evenly spaced, plus log-spaced far tails."""
    tails = np.logspace(-12, -3, 19)
    return np.unique(np.concatenate([tails, (np.arange(points) + 0.5) / points, 1 - tails]))


QUADRATURE_LEVELS = _quadrature_levels(QUADRATURE_POINTS)


def probability_best(family, arm_stats: list[ArmStats]) -> np.ndarray:
    """``P(arm i has the largest draw)`` for independent posteriors, ``∫ f_i(x) Π_{j≠i} F_j(x) dx``.

    The grid is the union of every arm's quantiles, so it is dense wherever any posterior has mass,
    however narrow (thousands of rewards) or heavy-tailed (a Student t with few) it is.
    """
    if len(arm_stats) == 1:
        return np.ones(1)
    x = np.unique(np.concatenate([family.quantile(s, QUADRATURE_LEVELS) for s in arm_stats]))
    pdf = np.stack([family.pdf(s, x) for s in arm_stats])
    cdf = np.stack([family.cdf(s, x) for s in arm_stats])
    others = np.stack([np.prod(np.delete(cdf, i, axis=0), axis=0) for i in range(len(arm_stats))])
    best = np.trapz(pdf * others, x, axis=1)
    return best / best.sum()


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
        s = state[arm]
        return {**state, arm: replace(s, weight=s.weight + 1, total=s.total + reward,
                                      total_sq=s.total_sq + reward * reward, rewards=s.rewards + 1)}


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
    """A policy with its own state and random generator: the river-style ``pull``/``update`` pair."""

    def __init__(self, policy, seed: int = 0):
        self.policy, self.state, self.rng = policy, policy.initial_state(), np.random.default_rng(seed)

    def pull(self, eligible=None) -> tuple[str, float]:
        return self.policy.pull(self.state, self.rng, eligible)

    def update(self, arm: str, reward: float) -> None:
        self.state = self.policy.update(self.state, arm, reward)
