"""Posteriors of one arm's expected reward, and the probability that each arm is the best.

Pure numpy/scipy. ``probability_best`` is what Thompson sampling chooses with: arm ``i`` is
the best with probability ``P(i best) = ∫ f_i(x) Π_{j≠i} F_j(x) dx`` for independent
posteriors (there is no closed form beyond two arms), computed by one-dimensional quadrature
on a grid made of every arm's quantiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

QUADRATURE_POINTS = 200  # evenly spaced probability levels per arm
_INTERVAL = np.array([0.025, 0.975])


@dataclass(frozen=True)
class ArmStats:
    """Sufficient statistics of one arm's rewards (discounted when the policy discounts)."""

    weight: float = 0.0  # number of rewards
    total: float = 0.0  # sum of rewards
    total_sq: float = 0.0  # sum of squared rewards
    rewards: int = 0  # undiscounted count: warm-up and reporting

    def rewarded(self, reward: float) -> ArmStats:
        """These statistics and one more reward (built directly: ``dataclasses.replace`` costs more, per reward)."""
        return ArmStats(self.weight + 1, self.total + reward, self.total_sq + reward * reward, self.rewards + 1)

    def discounted(self, factor: float) -> ArmStats:
        return ArmStats(self.weight * factor, self.total * factor, self.total_sq * factor, self.rewards)


class BetaBernoulli:
    """Binary rewards (1: the predicted direction was right) with a Beta prior.

    Examples
    --------
    >>> family = BetaBernoulli(prior_alpha=1, prior_beta=1)
    >>> family.parameters(ArmStats(weight=10, total=7))  # Beta(1 + 7, 1 + 3)
    (8.0, 4.0)
    """

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

    def densities(self, arm_stats: list[ArmStats], x: np.ndarray) -> np.ndarray:
        """Each arm's posterior density on ``x``: one row per arm, computed for all arms at once."""
        a, b = _columns(self.parameters(s) for s in arm_stats)
        x = np.clip(x, 1e-300, 1 - 1e-16)
        return np.exp((a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - special.betaln(a, b))

    def quantiles(self, arm_stats: list[ArmStats], q: np.ndarray) -> np.ndarray:
        """Approximate quantiles (normal, clipped to [0, 1]), one row per arm: they only place the quadrature
        grid, which needs to be dense where the mass is, not exact; the density and distribution function used
        on it are exact. (``betaincinv`` would double the cost of a propensity for no accuracy measured in the
        tests.)"""
        a, b = _columns(self.parameters(s) for s in arm_stats)
        sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        return np.clip(a / (a + b) + sd * special.ndtri(q), 0, 1)

    def summary(self, s: ArmStats) -> tuple[float, float, float]:
        """Posterior mean and 95% interval of the expected reward (special functions, no distribution object)."""
        a, b = self.parameters(s)
        low, high = special.betaincinv(a, b, _INTERVAL)
        return a / (a + b), float(low), float(high)

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

    def densities(self, arm_stats: list[ArmStats], x: np.ndarray) -> np.ndarray:
        df, loc, scale = _columns(self.parameters(s) for s in arm_stats)
        z = (x - loc) / scale
        log_norm = special.gammaln((df + 1) / 2) - special.gammaln(df / 2) - 0.5 * np.log(df * np.pi)
        return np.exp(log_norm - (df + 1) / 2 * np.log1p(z * z / df)) / scale

    def quantiles(self, arm_stats: list[ArmStats], q: np.ndarray) -> np.ndarray:
        df, loc, scale = _columns(self.parameters(s) for s in arm_stats)
        return loc + scale * special.stdtrit(df, q)

    def summary(self, s: ArmStats) -> tuple[float, float, float]:
        df, loc, scale = self.parameters(s)
        low, high = loc + scale * special.stdtrit(df, _INTERVAL)
        return float(loc), float(low), float(high)

    def check_reward(self, reward: float) -> None:
        pass


FAMILIES = {"bernoulli": BetaBernoulli, "gaussian": NormalGamma}


def _columns(parameters) -> tuple[np.ndarray, ...]:
    """Per-arm parameter tuples as one column per parameter (shape ``[arms, 1]``), to broadcast against a grid:
    every arm's density in one numpy call instead of one call per arm."""
    return tuple(np.array(list(parameters), dtype=np.float64).T[:, :, None])


def _quadrature_levels(points: int) -> np.ndarray:
    """Probability levels: evenly spaced, plus log-spaced far tails."""
    tails = np.logspace(-12, -3, 19)
    return np.unique(np.concatenate([tails, (np.arange(points) + 0.5) / points, 1 - tails]))


QUADRATURE_LEVELS = _quadrature_levels(QUADRATURE_POINTS)


def probability_best(family, arm_stats: list[ArmStats]) -> np.ndarray:
    """``P(arm i has the largest draw)`` for independent posteriors, ``∫ f_i(x) Π_{j≠i} F_j(x) dx``.

    The grid is the union of every arm's quantiles, so it is dense wherever any posterior has mass,
    however narrow (thousands of rewards) or heavy-tailed (a Student t with few) it is. Each distribution
    function ``F_j`` is the running trapezoid integral of its density on that same grid: as accurate as the
    outer integral (checked against Monte Carlo in the tests) and a tenth of the cost of ``betainc``, which
    slows down as the counts grow.

    Parameters
    ----------
    family : BetaBernoulli or NormalGamma
        The reward model: gives each arm's posterior density and quantiles.
    arm_stats : list of ArmStats
        Each arm's sufficient statistics.

    Returns
    -------
    numpy.ndarray
        One probability per arm, summing to one.

    Examples
    --------
    Seven successes in ten against three in ten, uniform priors:

    >>> probability_best(BetaBernoulli(), [ArmStats(10, 7), ArmStats(10, 3)]).round(3)
    array([0.957, 0.043])
    """
    if len(arm_stats) == 1:
        return np.ones(1)
    x = np.sort(family.quantiles(arm_stats, QUADRATURE_LEVELS), axis=None)  # a repeated point adds nothing
    pdf = family.densities(arm_stats, x)
    half_steps = np.diff(x) / 2  # trapezoids, for the distribution functions and for the outer integral
    cdf = np.zeros_like(pdf)
    np.cumsum((pdf[:, 1:] + pdf[:, :-1]) * half_steps, axis=1, out=cdf[:, 1:])
    cdf /= cdf[:, -1:]
    log_cdf = np.log(np.maximum(cdf, 1e-300))
    integrand = pdf * np.exp(log_cdf.sum(axis=0) - log_cdf)  # f_i Π_{j≠i} F_j on the grid, for every i at once
    best = ((integrand[:, 1:] + integrand[:, :-1]) * half_steps).sum(axis=1)
    return best / best.sum()
