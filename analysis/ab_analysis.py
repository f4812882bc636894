"""The A/B analysis, pure: from what each arm served to a recommendation a pipeline can act on.

Input: one ``ArmLog`` per arm, each request in arrival order (a global sequence number ``t``), whether its
predicted direction was right, the return of trading on it, its latency, whether it failed, and (for a bandit)
the probability with which it was routed there.

- Per arm: accuracy (Wilson interval), mean strategy return and its Sharpe ratio (Lo's interval), maximum
  drawdown, latency p50/p95/p99, error rate.
- Against the baseline: the accuracy difference (Newcombe's interval), the return difference (Welch), the
  probability to beat the baseline (Beta posteriors), and an always-valid p-value (the mixture sequential
  probability ratio test of Johari et al., evaluated after every request), so that looking early is safe.
- A sample-ratio-mismatch check of the observed split against the configured weights (chi-square).
- Guardrails on p99 latency (a distribution-free lower bound of the candidate's p99 against the baseline's) and
  on the error rate (the lower bound of the difference against a margin).
- Off-policy estimates (IPS, self-normalised IPS, doubly robust) of always choosing each arm, from a bandit's
  logged propensities.
- Business impact from a parameterised model (``BusinessModel``): notional per trade times the return difference,
  less a cost per millisecond of added latency.

The recommendation is ``roll_back`` (a guardrail breached), ``keep_baseline`` (the candidate is worse, the split is
broken, or the planned sample ran out without a verdict), ``promote`` (better, with the always-valid test, and
within the guardrails) or ``continue``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from seldon_market_ab.routers.bandit.replay import ReplayLog, dr_terms, ips_terms, mean_reward_model
from seldon_market_ab.training.evaluation import TRADING_DAYS, Z95, wilson_interval

DECISIONS = ("promote", "keep_baseline", "continue", "roll_back")


@dataclass(frozen=True)
class ArmLog:
    """What one arm served, one entry per request, in arrival order."""

    name: str
    t: np.ndarray  # int [n]: the request's place in the experiment's whole sequence
    correct: np.ndarray  # bool [n]: the predicted direction was right (False when the request failed)
    returns: np.ndarray  # float [n]: the position taken times the next-day return (0 when the request failed)
    latency_ms: np.ndarray  # float [n]
    error: np.ndarray  # bool [n]
    propensity: np.ndarray | None = None  # float [n]: a bandit's probability of this arm for the request

    @classmethod
    def of(cls, name: str, **columns) -> ArmLog:
        n = len(columns["correct"])
        values = {"t": np.arange(n), "returns": np.zeros(n), "latency_ms": np.zeros(n), "error": np.zeros(n, bool),
                  **columns}
        return cls(name, np.asarray(values["t"]), np.asarray(values["correct"], bool),
                   np.asarray(values["returns"], float), np.asarray(values["latency_ms"], float),
                   np.asarray(values["error"], bool),
                   None if values.get("propensity") is None else np.asarray(values["propensity"], float))

    @property
    def n(self) -> int:
        return len(self.correct)


@dataclass(frozen=True)
class DecisionPolicy:
    """The thresholds of the decision, in one place (the report prints them)."""

    alpha: float = 0.05  # level of the always-valid test on accuracy
    mixture_scale: float = 0.05  # mSPRT mixture: the accuracy differences the test is tuned to find
    min_samples: int = 50  # per arm, before any verdict on accuracy or latency
    max_samples: int | None = None  # per arm: reached without a verdict -> keep_baseline
    srm_p: float = 0.001  # a split this unlikely under the configured weights is broken
    latency_p99_ratio: float = 1.25  # the candidate's p99 may be at most this times the baseline's ...
    latency_p99_slack_ms: float = 5.0  # ... plus this
    error_margin: float = 0.01  # the candidate may fail at most this much more often than the baseline


@dataclass(frozen=True)
class BusinessModel:
    """Money from the difference: ``trades`` trades of ``notional`` each, a strategy return per trade, and a cost
    of each millisecond of latency per trade (slippage while the order waits)."""

    notional: float = 10_000.0
    cost_per_ms: float = 0.01  # currency per trade per millisecond
    trades: int = 1_000


@dataclass
class Recommendation:
    decision: str
    reasons: list[str] = field(default_factory=list)


# one arm ------------------------------------------------------------------------------------------------------

def summarise_arm(log: ArmLog) -> dict:
    """
    >>> s = summarise_arm(ArmLog.of("a", correct=[1, 1, 0, 1], returns=[.01, .02, -.01, .01]))
    >>> s["n"], s["accuracy"], round(s["max_drawdown"], 3)
    (4, 0.75, 0.01)
    """
    served = ~log.error
    accuracy_low, accuracy_high = wilson_interval(int(log.correct[served].sum()), int(served.sum()))
    returns = log.returns
    sharpe_value, sharpe_low, sharpe_high = sharpe_interval(returns)
    equity = np.cumsum(returns)
    drawdown = float(np.max(np.maximum.accumulate(np.r_[0.0, equity]) - np.r_[0.0, equity])) if len(returns) else 0.0
    error_low, error_high = wilson_interval(int(log.error.sum()), log.n)
    latency = log.latency_ms[served]
    p50, p95, p99 = (np.percentile(latency, [50, 95, 99]) if len(latency) else [math.nan] * 3)
    return {
        "n": log.n, "served": int(served.sum()),
        "accuracy": float(log.correct[served].mean()) if served.any() else math.nan,
        "accuracy_ci": [accuracy_low, accuracy_high],
        "mean_return": float(returns.mean()) if log.n else math.nan,
        "mean_return_ci": list(_mean_interval(returns)),
        "sharpe": sharpe_value, "sharpe_ci": [sharpe_low, sharpe_high],
        "max_drawdown": drawdown,
        "latency_ms": {"p50": float(p50), "p95": float(p95), "p99": float(p99)},
        "error_rate": float(log.error.mean()) if log.n else math.nan, "error_rate_ci": [error_low, error_high],
    }


def sharpe_interval(returns: np.ndarray) -> tuple[float, float, float]:
    """Annualised Sharpe ratio of per-trade returns (one trade per instrument-day) with Lo's (2002) 95% interval
    for i.i.d. returns: se = sqrt((1 + SR^2 / 2) / n) per trade."""
    returns = np.asarray(returns, float)
    if len(returns) < 2 or returns.std() == 0:
        return (math.nan, math.nan, math.nan)
    per_trade = returns.mean() / returns.std()
    half = Z95 * math.sqrt((1 + per_trade**2 / 2) / len(returns))
    scale = math.sqrt(TRADING_DAYS)
    return (float(per_trade * scale), float((per_trade - half) * scale), float((per_trade + half) * scale))


# two arms ---------------------------------------------------------------------------------------------------

def newcombe_interval(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """95% interval of p2 - p1 from the two Wilson intervals (Newcombe's method 10; his worked example, 56/70
    against 48/80, has the interval 0.0524 to 0.3339).

    >>> low, high = newcombe_interval(48, 80, 56, 70)
    >>> round(low, 4), round(high, 4)
    (0.0524, 0.3339)
    """
    if n1 == 0 or n2 == 0:
        return (math.nan, math.nan)
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1)
    l2, u2 = wilson_interval(k2, n2)
    difference = p2 - p1
    return (difference - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2),
            difference + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2))


def probability_to_beat(k1: int, n1: int, k2: int, n2: int, draws: int = 20_000, seed: int = 0) -> float:
    """P(accuracy 2 > accuracy 1) under uniform priors (Beta posteriors), by a seeded Monte Carlo."""
    rng = np.random.default_rng(seed)
    return float(np.mean(rng.beta(1 + k2, 1 + n2 - k2, draws) > rng.beta(1 + k1, 1 + n1 - k1, draws)))


def always_valid_p(baseline: ArmLog, candidate: ArmLog, scale: float, min_samples: int) -> float:
    """The mixture SPRT's always-valid p-value for a difference in accuracy, after every request in arrival order
    (Johari, Pekelis and Walsh, 2017, with a normal mixture of scale ``scale`` and plug-in variances): the running
    minimum of 1 / likelihood ratio. Under no difference it falls below alpha with probability at most alpha however
    often it is looked at (the calibration in analysis/ab_calibration.py measures how close that holds here).

    >>> rng = np.random.default_rng(1)
    >>> a = ArmLog.of("a", correct=rng.random(2000) < 0.50, t=np.arange(0, 4000, 2))
    >>> b = ArmLog.of("b", correct=rng.random(2000) < 0.60, t=np.arange(1, 4000, 2))
    >>> always_valid_p(a, b, 0.05, 50) < 0.001
    True
    """
    a_served, b_served = ~baseline.error, ~candidate.error
    t = np.r_[baseline.t[a_served], candidate.t[b_served]]
    is_b = np.r_[np.zeros(a_served.sum(), bool), np.ones(b_served.sum(), bool)]
    correct = np.r_[baseline.correct[a_served], candidate.correct[b_served]].astype(float)
    order = np.argsort(t, kind="stable")
    is_b, correct = is_b[order], correct[order]
    n_b, n_a = np.cumsum(is_b), np.cumsum(~is_b)
    k_b, k_a = np.cumsum(correct * is_b), np.cumsum(correct * ~is_b)
    ready = (n_a >= min_samples) & (n_b >= min_samples)
    if not ready.any():
        return 1.0
    return float(msprt_p(k_a[ready], n_a[ready], k_b[ready], n_b[ready], scale).min())


def msprt_p(k_a, n_a, k_b, n_b, scale: float, shift: float = 0.0):
    """The mixture SPRT's p-value (1 / likelihood ratio, capped at 1) of ``p_b - p_a = -shift`` at one look, or at
    each look of arrays of running counts; the always-valid p-value is its running minimum. ``shift`` 0 tests for
    any difference; ``shift = margin`` tests non-inferiority (the candidate ``margin`` worse, or better than that).

    >>> print(f"{float(msprt_p(500, 1000, 600, 1000, 0.05)):.2g}")  # 50% against 60% correct of 1,000 each
    0.00049
    """
    p_a, p_b = np.asarray(k_a) / n_a, np.asarray(k_b) / n_b
    # plug-in variance, kept away from 0 so that a run of identical outcomes is not certainty
    variance = np.maximum(p_a * (1 - p_a), 0.25 / n_a) / n_a + np.maximum(p_b * (1 - p_b), 0.25 / n_b) / n_b
    tau2 = scale**2
    log_ratio = 0.5 * np.log(variance / (variance + tau2)) \
        + (p_b - p_a + shift) ** 2 * tau2 / (2 * variance * (variance + tau2))
    return np.minimum(1.0, np.exp(-log_ratio))


def compare(baseline: ArmLog, candidate: ArmLog, policy: DecisionPolicy = DecisionPolicy()) -> dict:
    a_served, b_served = ~baseline.error, ~candidate.error
    k_a, n_a = int(baseline.correct[a_served].sum()), int(a_served.sum())
    k_b, n_b = int(candidate.correct[b_served].sum()), int(b_served.sum())
    accuracy_difference = (k_b / n_b - k_a / n_a) if n_a and n_b else math.nan
    return {
        "accuracy_difference": accuracy_difference,
        "accuracy_difference_ci": list(newcombe_interval(k_a, n_a, k_b, n_b)),
        "return_difference": float(candidate.returns.mean() - baseline.returns.mean())
        if baseline.n and candidate.n else math.nan,
        "return_difference_ci": list(_welch_interval(baseline.returns, candidate.returns)),
        "probability_to_beat": probability_to_beat(k_a, n_a, k_b, n_b) if n_a and n_b else math.nan,
        "always_valid_p": always_valid_p(baseline, candidate, policy.mixture_scale, policy.min_samples),
        "latency_guardrail": latency_guardrail(baseline, candidate, policy),
        "error_guardrail": error_guardrail(baseline, candidate, policy),
    }


def latency_guardrail(baseline: ArmLog, candidate: ArmLog, policy: DecisionPolicy) -> dict:
    """Breached when even the lower 95% bound of the candidate's p99 (an order statistic: distribution-free) is
    above the baseline's p99 times ``latency_p99_ratio`` plus ``latency_p99_slack_ms``."""
    a, b = np.sort(baseline.latency_ms[~baseline.error]), np.sort(candidate.latency_ms[~candidate.error])
    if len(a) < policy.min_samples or len(b) < policy.min_samples:
        return {"breached": False, "judged": False}
    limit = float(np.percentile(a, 99)) * policy.latency_p99_ratio + policy.latency_p99_slack_ms
    low_rank = int(stats.binom.ppf(0.025, len(b), 0.99))  # the k-th smallest is below the p99 with 97.5% confidence
    lower_bound = float(b[max(low_rank - 1, 0)])
    return {"breached": lower_bound > limit, "judged": True, "candidate_p99_lower_bound_ms": lower_bound,
            "limit_ms": limit}


def error_guardrail(baseline: ArmLog, candidate: ArmLog, policy: DecisionPolicy) -> dict:
    """Breached when the lower 95% bound of (candidate error rate - baseline error rate) exceeds ``error_margin``."""
    low, high = newcombe_interval(int(baseline.error.sum()), baseline.n, int(candidate.error.sum()), candidate.n)
    judged = baseline.n >= policy.min_samples and candidate.n >= policy.min_samples
    return {"breached": bool(judged and low > policy.error_margin), "judged": judged,
            "difference_ci": [low, high], "margin": policy.error_margin}


# the split ------------------------------------------------------------------------------------------------------

def sample_ratio_mismatch(counts: dict[str, int], weights: dict[str, float], threshold: float = 0.001) -> dict:
    """Chi-square goodness of fit of the observed split to the configured weights.

    >>> sample_ratio_mismatch({"a": 700, "b": 300}, {"a": 70, "b": 30})["mismatch"]
    False
    >>> sample_ratio_mismatch({"a": 500, "b": 500}, {"a": 70, "b": 30})["mismatch"]
    True
    """
    names = list(weights)
    observed = np.array([counts.get(n, 0) for n in names], float)
    expected_share = np.array([weights[n] for n in names], float) / sum(weights.values())
    total = observed.sum()
    if total == 0 or len(names) < 2:
        return {"mismatch": False, "p_value": 1.0, "observed": dict(zip(names, observed.tolist(), strict=True))}
    p_value = float(stats.chisquare(observed, expected_share * total).pvalue)
    return {"mismatch": p_value < threshold, "p_value": p_value, "threshold": threshold,
            "observed_share": dict(zip(names, (observed / total).tolist(), strict=True)),
            "expected_share": dict(zip(names, expected_share.tolist(), strict=True))}


def sample_ratio_mismatch_over_time(routed: list[str], expected: list[dict[str, float]],
                                    threshold: float = 0.001) -> dict:
    """The same check for a split that changes over time (a rollout): each request's expected shares are the
    weights in force when it was routed, so an arm's expected count is the sum of its shares over the requests. A
    request answered by an arm whose weight was 0 is a mismatch outright.

    >>> shares = [{"a": 0.9, "b": 0.1}] * 500 + [{"a": 0.5, "b": 0.5}] * 500
    >>> sample_ratio_mismatch_over_time(["a"] * 700 + ["b"] * 300, shares)["mismatch"]
    False
    >>> sample_ratio_mismatch_over_time(["a"] * 500 + ["b"] * 500, shares)["mismatch"]
    True
    """
    names = sorted({name for shares in expected for name in shares})
    observed = np.array([sum(1 for arm in routed if arm == name) for name in names], float)
    wanted = np.array([sum(shares.get(name, 0.0) for shares in expected) for name in names])
    total = observed.sum()
    if total == 0 or len(names) < 2:
        return {"mismatch": False, "p_value": 1.0, "observed": dict(zip(names, observed.tolist(), strict=True))}
    possible = wanted > 0
    impossible = sum(1 for arm, shares in zip(routed, expected, strict=True) if not shares.get(arm))
    if impossible:
        p_value = 0.0
    elif possible.sum() < 2:  # one arm could be chosen, and was: nothing to test
        p_value = 1.0
    else:
        p_value = float(stats.chisquare(observed[possible], wanted[possible] / wanted[possible].sum() * total).pvalue)
    return {"mismatch": p_value < threshold, "p_value": p_value, "threshold": threshold,
            "observed_share": dict(zip(names, (observed / total).tolist(), strict=True)),
            "expected_share": dict(zip(names, (wanted / wanted.sum()).tolist(), strict=True))}


# bandits: off-policy estimates ----------------------------------------------------------------------------------

def off_policy(logs: list[ArmLog], reward: str = "correct") -> dict:
    """IPS, self-normalised IPS and doubly-robust estimates (with normal 95% intervals) of the reward of always
    choosing each arm, from the requests a bandit routed with logged propensities.

    An arm's value is identifiable only if every request could have gone to it: a request routed elsewhere with
    propensity 1 (a deterministic router's choice) gave that arm probability 0, and nothing in the log says what it
    would have answered. ``support`` is the share of requests not known to have excluded the arm; below 1 the arm
    is not identifiable: IPS and SNIPS are left out (they would count those requests as zero reward), and DR stands
    on its reward model alone for the excluded share (``dr_model_share``). The log holds only the chosen arm's
    propensity, so with more than two arms a request sent elsewhere with a propensity below 1 may still have given
    this arm none (an arm out of health); the Thompson router's ``min_share`` keeps every eligible arm above it."""
    arms = tuple(log.name for log in logs)
    t = np.concatenate([log.t for log in logs])
    order = np.argsort(t, kind="stable")
    chosen = np.concatenate([np.full(log.n, i) for i, log in enumerate(logs)])[order]
    propensity = np.concatenate([log.propensity for log in logs])[order]
    rewards = np.concatenate([getattr(log, reward).astype(float) for log in logs])[order]
    replay_log = ReplayLog(arms, chosen, propensity, rewards)
    model = mean_reward_model(replay_log)
    out = {}
    for i, arm in enumerate(arms):
        target = np.zeros((len(chosen), len(arms)))
        target[:, i] = 1.0
        ips, dr = ips_terms(replay_log, target), dr_terms(replay_log, target, model)
        weights = target[np.arange(len(chosen)), chosen] / propensity
        excluded = (chosen != i) & (propensity >= 1.0)  # certainly sent elsewhere: this arm had no chance
        support = 1.0 - float(excluded.mean()) if len(chosen) else 0.0
        identifiable = bool(len(chosen)) and not excluded.any()
        out[arm] = {"identifiable": identifiable, "support": support, "dr_model_share": 1.0 - support,
                    "ips": _mean_and_interval(ips) if identifiable else None, "dr": _mean_and_interval(dr),
                    "snips": float(ips.sum() / weights.sum()) if identifiable and weights.sum() else None,
                    "chosen": int((chosen == i).sum())}
    return out


# money --------------------------------------------------------------------------------------------------------

def business_impact(baseline: dict, candidate: dict, difference: dict, model: BusinessModel = BusinessModel()) -> dict:
    """What switching to the candidate would have made over ``model.trades`` trades, with the interval of the
    return difference (latency cost uses the mean latency difference)."""
    latency_cost = model.cost_per_ms * (candidate["latency_ms"]["p50"] - baseline["latency_ms"]["p50"])
    low, high = difference["return_difference_ci"]
    per_trade = [model.notional * value - latency_cost for value in (difference["return_difference"], low, high)]
    return {"trades": model.trades, "notional": model.notional, "cost_per_ms": model.cost_per_ms,
            "total": per_trade[0] * model.trades, "total_ci": [per_trade[1] * model.trades,
                                                               per_trade[2] * model.trades],
            "latency_cost": latency_cost * model.trades}


# the decision -------------------------------------------------------------------------------------------------

def recommend(baseline: ArmLog, candidates: list[ArmLog], weights: dict[str, float] | None = None,
              policy: DecisionPolicy = DecisionPolicy()) -> tuple[Recommendation, dict]:
    """The recommendation for the best candidate against the baseline, and the figures it rests on."""
    comparisons = {c.name: compare(baseline, c, policy) for c in candidates}
    srm = sample_ratio_mismatch({log.name: log.n for log in [baseline, *candidates]}, weights, policy.srm_p) \
        if weights else None
    reasons, decision = [], "continue"
    breached = [(name, kind) for name, c in comparisons.items() for kind in ("latency", "error")
                if c[f"{kind}_guardrail"]["breached"]]
    better = [name for name, c in comparisons.items()
              if c["always_valid_p"] < policy.alpha and c["accuracy_difference"] > 0]
    worse = [name for name, c in comparisons.items()
             if c["always_valid_p"] < policy.alpha and c["accuracy_difference"] < 0]
    if breached:
        decision = "roll_back"
        for name, kind in breached:
            guard = comparisons[name][f"{kind}_guardrail"]
            reasons.append(f"{name}: {kind} guardrail breached (" + (
                f"p99 at least {guard['candidate_p99_lower_bound_ms']:.1f} ms against a limit of "
                f"{guard['limit_ms']:.1f} ms" if kind == "latency" else
                f"error rate {guard['difference_ci'][0]:+.1%} to {guard['difference_ci'][1]:+.1%} above the "
                f"baseline's, margin {guard['margin']:.0%}") + ")")
    elif srm and srm["mismatch"]:
        decision = "keep_baseline"
        reasons.append(f"sample ratio mismatch (p = {srm['p_value']:.2g}): the observed split "
                       f"{_shares(srm['observed_share'])} is not the configured {_shares(srm['expected_share'])}, so "
                       "the arms did not see comparable traffic; fix the split and run again")
    elif better:
        best = max(better, key=lambda name: comparisons[name]["accuracy_difference"])
        c = comparisons[best]
        decision = "promote"
        reasons.append(f"{best}: accuracy {c['accuracy_difference']:+.1%} "
                       f"[{c['accuracy_difference_ci'][0]:+.1%}, {c['accuracy_difference_ci'][1]:+.1%}] against "
                       f"{baseline.name}, always-valid p = {c['always_valid_p']:.3g} < {policy.alpha}, within the "
                       "guardrails")
    elif worse and len(worse) == len(candidates):
        decision = "keep_baseline"
        reasons += [f"{name}: accuracy {comparisons[name]['accuracy_difference']:+.1%} against {baseline.name}, "
                    f"always-valid p = {comparisons[name]['always_valid_p']:.3g}" for name in worse]
    elif policy.max_samples and min(log.n for log in [baseline, *candidates]) >= policy.max_samples:
        decision = "keep_baseline"
        reasons.append(f"the planned {policy.max_samples} requests per arm were served without evidence of a "
                       f"difference (always-valid p >= {policy.alpha})")
    else:
        smallest = min(c["always_valid_p"] for c in comparisons.values()) if comparisons else 1.0
        reasons.append(f"no verdict yet: smallest always-valid p = {smallest:.3g} (needs < {policy.alpha}), "
                       f"{min(log.n for log in [baseline, *candidates])} requests in the smallest arm")
    return Recommendation(decision, reasons), {"comparisons": comparisons, "srm": srm}


# helpers ------------------------------------------------------------------------------------------------------

def _mean_interval(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, float)
    if len(values) < 2:
        return (math.nan, math.nan)
    half = Z95 * values.std(ddof=1) / math.sqrt(len(values))
    return (float(values.mean() - half), float(values.mean() + half))


def _mean_and_interval(values: np.ndarray) -> dict:
    low, high = _mean_interval(values)
    return {"value": float(np.mean(values)) if len(values) else math.nan, "ci": [low, high]}


def _welch_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """95% interval of mean(b) - mean(a) (Welch-Satterthwaite)."""
    if len(a) < 2 or len(b) < 2:
        return (math.nan, math.nan)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    if va + vb == 0:
        return (float(b.mean() - a.mean()),) * 2
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    return (float(b.mean() - a.mean() - half), float(b.mean() - a.mean() + half))


def _shares(shares: dict[str, float]) -> str:
    return " / ".join(f"{name} {share:.0%}" for name, share in shares.items())
