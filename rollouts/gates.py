"""A rollout's gates, pure: each arm's counts since the rollout began in, a verdict with its figures out.

The statistics are the A/B report's (``analysis/ab_analysis.py``), on the aggregates Prometheus holds rather than
on per-request logs: the error guardrail's Newcombe interval on failure counts, the latency guardrail's
distribution-free lower bound on the candidate's p99 (an order statistic, read from histogram buckets: the bucket's
lower edge, so the bound stays a lower bound), and the mixture SPRT on outcome counts, whose running minimum over
the looks is an always-valid p-value however often the loop looks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scipy import stats

from seldon_market_ab.analysis.ab_analysis import msprt_p, newcombe_interval

from .document import RolloutSpec

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"


@dataclass(frozen=True)
class ArmFigures:
    """One arm's counts since the rollout began."""

    requests: int = 0
    server_errors: int = 0  # answered with a server failure (5xx, INTERNAL, UNAVAILABLE, ...), not a client's 4xx
    outcomes: int = 0
    correct: int = 0
    return_sum: float = 0.0
    latency: tuple[tuple[float, float], ...] = ()  # cumulative histogram buckets (upper bound in s, count), +Inf last

    @property
    def accuracy(self) -> float:
        return self.correct / self.outcomes if self.outcomes else math.nan

    @property
    def mean_return(self) -> float:
        return self.return_sum / self.outcomes if self.outcomes else math.nan


@dataclass(frozen=True)
class GateResult:
    name: str
    verdict: str  # pass, fail or inconclusive
    figures: dict = field(default_factory=dict)
    reason: str = ""


def error_rate(spec: RolloutSpec, baseline: ArmFigures, candidate: ArmFigures) -> GateResult:
    gate, least = spec.gates.error_rate, spec.gates.min_requests
    figures = {"baseline_rate": _rate(baseline.server_errors, baseline.requests),
               "candidate_rate": _rate(candidate.server_errors, candidate.requests), "margin": gate.margin}
    if min(baseline.requests, candidate.requests) < least:
        return GateResult("error_rate", INCONCLUSIVE, figures, f"fewer than {least} requests in an arm")
    low, high = newcombe_interval(baseline.server_errors, baseline.requests, candidate.server_errors,
                                  candidate.requests)
    figures["difference_ci"] = [low, high]
    if low > gate.margin:
        return GateResult("error_rate", FAIL, figures, f"candidate fails {low:+.1%} to {high:+.1%} more often than "
                                                       f"the baseline (margin {gate.margin:.1%})")
    return GateResult("error_rate", PASS, figures)


def latency(spec: RolloutSpec, baseline: ArmFigures, candidate: ArmFigures) -> GateResult:
    gate, least = spec.gates.latency, spec.gates.min_requests
    n_a, n_b = _count(baseline.latency), _count(candidate.latency)
    if min(n_a, n_b) < least:
        return GateResult("latency", INCONCLUSIVE, {"baseline_count": n_a, "candidate_count": n_b},
                          f"fewer than {least} timed requests in an arm")
    baseline_p99 = _bucket_at(baseline.latency, math.ceil(0.99 * n_a))[1]  # the upper edge: generous to the candidate
    limit_ms = 1e3 * baseline_p99 * gate.ratio + gate.slack_ms
    rank = max(int(stats.binom.ppf(0.025, n_b, 0.99)), 1)  # the rank-th smallest is below the p99 with 97.5%
    lower_ms = 1e3 * _bucket_at(candidate.latency, rank)[0]
    figures = {"baseline_p99_ms": 1e3 * baseline_p99, "candidate_p99_lower_bound_ms": lower_ms, "limit_ms": limit_ms}
    if lower_ms > limit_ms:
        return GateResult("latency", FAIL, figures, f"candidate p99 at least {lower_ms:.1f} ms against a limit of "
                                                    f"{limit_ms:.1f} ms")
    return GateResult("latency", PASS, figures)


def accuracy(spec: RolloutSpec, baseline: ArmFigures, candidate: ArmFigures, smallest_p: float) -> GateResult:
    """Fails when the always-valid test finds the candidate less accurate. ``smallest_p``: the running minimum of
    the test's p-value over the earlier looks that found it worse; the result's figures carry the new one."""
    gate = spec.gates.accuracy
    # the strategy's mean return rides along for people to read: the outcomes carry its sum, not its spread, so
    # there is no interval to gate on
    figures = {"baseline_accuracy": baseline.accuracy, "candidate_accuracy": candidate.accuracy,
               "baseline_outcomes": baseline.outcomes, "candidate_outcomes": candidate.outcomes,
               "baseline_mean_return": baseline.mean_return, "candidate_mean_return": candidate.mean_return,
               "always_valid_p": smallest_p}
    if not baseline.outcomes or not candidate.outcomes:
        return GateResult("accuracy", INCONCLUSIVE, figures, "no outcomes in an arm yet")
    difference = candidate.accuracy - baseline.accuracy
    p = smallest_p  # the running minimum over the looks that found the candidate worse
    if difference < 0:
        p = min(p, float(msprt_p(baseline.correct, baseline.outcomes, candidate.correct, candidate.outcomes,
                                 gate.scale)))
    figures.update(always_valid_p=p, difference=difference)
    if p < gate.alpha:
        return GateResult("accuracy", FAIL, figures, f"candidate accuracy {difference:+.1%} against the baseline, "
                                                     f"always-valid p = {p:.3g} < {gate.alpha}")
    return GateResult("accuracy", PASS, figures)


def promotion(spec: RolloutSpec, baseline: ArmFigures, candidate: ArmFigures, smallest_p: float) -> GateResult:
    """The ``promote`` policy's test: ``superior`` (more accurate) or ``noninferior`` (no more than ``margin``
    less accurate), always-valid at the accuracy gate's alpha; pass promotes, inconclusive waits."""
    promote, alpha = spec.promote, spec.gates.accuracy.alpha
    shift = promote.margin if promote.policy == "noninferior" else 0.0
    figures = {"policy": promote.policy, "margin": shift, "always_valid_p": smallest_p}
    if not baseline.outcomes or not candidate.outcomes:
        return GateResult("promotion", INCONCLUSIVE, figures, "no outcomes in an arm yet")
    difference = candidate.accuracy - baseline.accuracy
    p = smallest_p  # the running minimum over the looks that found the candidate better (or not worse by margin)
    if difference + shift > 0:
        p = min(p, float(msprt_p(baseline.correct, baseline.outcomes, candidate.correct, candidate.outcomes,
                                 spec.gates.accuracy.scale, shift)))
    figures.update(always_valid_p=p, difference=difference)
    if p < alpha:
        return GateResult("promotion", PASS, figures, f"candidate accuracy {difference:+.1%} against the baseline, "
                                                      f"{promote.policy} at always-valid p = {p:.3g} < {alpha}")
    return GateResult("promotion", INCONCLUSIVE, figures, f"not yet {promote.policy}: always-valid p = {p:.3g}")


def _rate(errors: int, requests: int) -> float:
    return errors / requests if requests else math.nan


def _count(buckets) -> float:
    return buckets[-1][1] if buckets else 0


def _bucket_at(buckets, rank: int) -> tuple[float, float]:
    """(lower edge, upper edge) of the bucket holding the ``rank``-th smallest observation."""
    lower = 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            return lower, upper
        lower = upper
    return lower, math.inf
