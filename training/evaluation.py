"""Honest evaluation on a held-out period: classification quality, the trading result of
following the predicted direction, the always-up baseline, sample sizes and 95% intervals.

Intervals: Wilson for accuracies; a seeded percentile bootstrap (``N_BOOTSTRAP``
resamples) for AUC, log-loss, Brier and the accuracy edge over always-up (resampling
instrument-days) and for Sharpe ratios (resampling portfolio days). Resampling ignores
autocorrelation and, when instruments are pooled, their same-day correlation, so the
intervals are if anything too narrow.
"""

from __future__ import annotations

import math

import numpy as np

N_BOOTSTRAP = 1000
Z95 = 1.959963984540054
TRADING_DAYS = 252


def wilson_interval(successes: float, n: int) -> tuple[float, float]:
    """Wilson score interval (95%) of a proportion.

    Examples
    --------
    >>> low, high = wilson_interval(52, 100)
    >>> round(low, 4), round(high, 4)
    (0.4232, 0.6154)
    >>> wilson_interval(0, 0)
    (nan, nan)
    """
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denominator
    return (centre - half, centre + half)


def auc(label: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half).

    Examples
    --------
    >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> auc([0, 1, 1], [0.5, 0.5, 0.9])  # a tie counts half
    0.75
    """
    label = np.asarray(label).astype(bool)
    positives, negatives = label.sum(), (~label).sum()
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = _average_ranks(np.asarray(score))
    return float((ranks[label].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    first = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # ranks are 1-based
    ranks = np.empty(len(values))
    ranks[order] = average[group]
    return ranks


def log_loss(label, probability) -> float:
    p = np.clip(probability, 1e-7, 1 - 1e-7)
    return float(-np.mean(label * np.log(p) + (1 - label) * np.log(1 - p)))


def brier(label, probability) -> float:
    return float(np.mean((probability - label) ** 2))


def sharpe(daily_returns) -> float:
    """Annualised Sharpe ratio of daily returns (no risk-free rate); NaN when they never vary.

    Examples
    --------
    >>> returns = [0.01, -0.005, 0.002, 0.004]
    >>> sharpe(returns) == np.mean(returns) / np.std(returns) * np.sqrt(252)
    True
    >>> sharpe([0.01, 0.01])
    nan
    """
    std = np.std(daily_returns)
    return float(np.mean(daily_returns) / std * math.sqrt(TRADING_DAYS)) if std > 0 else math.nan


def _bootstrap(statistic, arrays, rng) -> tuple[float, float]:
    n = len(arrays[0])
    values = [statistic(*(a[idx] for a in arrays)) for idx in rng.integers(0, n, size=(N_BOOTSTRAP, n))]
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return (float(low), float(high))


def _daily_mean(values: np.ndarray, date: np.ndarray) -> np.ndarray:
    """Equal-weight average across instruments of each day's return, in date order."""
    days, position = np.unique(date, return_inverse=True)
    return np.bincount(position, weights=values) / np.bincount(position)


def evaluate_group(probability, label, next_return, date, seed: int = 0) -> dict:
    """Every figure for one group of instrument-days, each with its sample size and interval.

    Trading figures follow an equal-weight portfolio of the group's instruments:
    each day, long the instruments predicted up and short those predicted down.
    """
    probability = np.asarray(probability, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    date = np.asarray(date)
    rng = np.random.default_rng(seed)
    n = len(label)
    direction = (probability > 0.5).astype(np.float64)
    correct = (direction == label).astype(np.float64)
    strategy = _daily_mean(np.where(direction == 1, next_return, -next_return), date)
    market = _daily_mean(np.asarray(next_return, dtype=np.float64), date)

    return {
        "n": n,
        "accuracy": float(correct.mean()),
        "accuracy_ci": wilson_interval(correct.sum(), n),
        "always_up_accuracy": float(label.mean()),
        "always_up_accuracy_ci": wilson_interval(label.sum(), n),
        "edge_over_always_up": float(correct.mean() - label.mean()),
        "edge_over_always_up_ci": _bootstrap(lambda c, y: c.mean() - y.mean(), (correct, label), rng),
        "predicted_up_share": float(direction.mean()),
        "auc": auc(label, probability),
        "auc_ci": _bootstrap(auc, (label, probability), rng),
        "log_loss": log_loss(label, probability),
        "log_loss_ci": _bootstrap(log_loss, (label, probability), rng),
        "brier": brier(label, probability),
        "brier_ci": _bootstrap(brier, (label, probability), rng),
        "strategy_return": float(np.prod(1 + strategy) - 1),
        "strategy_sharpe": sharpe(strategy),
        "strategy_sharpe_ci": _bootstrap(sharpe, (strategy,), rng),
        "trading_days": len(strategy),
        "buy_and_hold_return": float(np.prod(1 + market) - 1),
        "buy_and_hold_sharpe": sharpe(market),
        "buy_and_hold_sharpe_ci": _bootstrap(sharpe, (market,), rng),
    }


def evaluate(probability, label, next_return, instrument, date, seed: int = 0) -> dict:
    """Per instrument and ``overall`` (all instrument-days pooled)."""
    instrument = np.asarray(instrument)
    arrays = [np.asarray(a) for a in (probability, label, next_return, date)]
    out = {"overall": evaluate_group(*arrays, seed=seed)}
    for name in dict.fromkeys(instrument):
        mask = instrument == name
        out[str(name)] = evaluate_group(*(a[mask] for a in arrays), seed=seed)
    return out


def paired_accuracy_difference(correct_a, correct_b, date, seed: int = 0) -> dict:
    """Accuracy of ``a`` minus ``b`` on the same instrument-days, with a bootstrap interval that resamples days
    (instruments on one day move together, so a day is the unit).

    >>> out = paired_accuracy_difference([1, 1, 0, 1], [1, 0, 0, 0], ["d1", "d1", "d2", "d3"])
    >>> out["difference"], out["n"], out["days"]
    (0.5, 4, 3)
    """
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    days, position = np.unique(np.asarray(date), return_inverse=True)
    per_day = np.stack([np.bincount(position, weights=a - b), np.bincount(position)])  # [2, days]
    rng = np.random.default_rng(seed)
    draws = per_day[:, rng.integers(0, len(days), size=(N_BOOTSTRAP, len(days)))].sum(axis=2)
    low, high = np.percentile(draws[0] / draws[1], [2.5, 97.5])
    return {"difference": float((a - b).mean()), "ci": (float(low), float(high)), "n": int(len(a)),
            "days": int(len(days))}
