"""Series calibration: a window is judged against the reference period's own windows of the same size.

alibi-detect's tests assume a window's rows are independent draws. A window of consecutive trading days is not:
60-day volatility or the 50-day moving-average ratio barely move within a quarter, so every such window covers a
sliver of their range, and an i.i.d. test flags nearly every window taken from a market, inside the reference
period too (``seldon_market_ab.analysis.drift_evidence`` measures it). The series tests ask instead: is this window more
unusual than the reference period's own windows of consecutive rows of the same length? Both reduce a window to one
statistic and give it the share of reference windows that scored at least as high as its p-value.

- ``shift``: the window's summary (each feature's mean and log standard deviation over its rows, in the
  reference's standard units) against the summaries of every window of the period, as Mahalanobis distances
  in two views. One takes every column, its location and scatter fitted with Ledoit-Wolf shrinkage on all the
  windows: it sees a market that moves differently. The other takes the means alone, fitted on their bulk (the
  most distant tenth left out, twice over, as a robust estimator does), so that the period's own crashes
  neither widen the scatter nor hide themselves: it ranks them as the extremes they were. Each view's distance
  gets its rank p-value, and the smaller of the two is ranked against the reference windows' own smaller ones,
  so the test still flags ``p_value`` of the period's windows. Combining every feature's evidence is what gives
  the test its power: the largest per-feature distance, used before, was near its maximum in almost every window
  of slow features and so said little (``seldon_market_ab.analysis.drift_evidence`` compares them). Each feature also
  gets a p-value of its own, from the ranks of its mean and its spread among the reference windows: that says which
  features moved.
- ``feed``: rows that no working feed produced in the reference period: a value the features cannot compute
  (no price change for 14 days, the same volume 20 days running), a day with no range (high equal to low: a
  feed that sends the close alone, or one stuck on a quote), or a volume step larger than any day of the period
  (a change of units). The period has none, so one such row is unusual.

A size is fitted on first use, in about a tenth of a second, from the reference period's rows (``series.npy``),
and kept.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from sklearn.covariance import ledoit_wolf

from seldon_market_ab.features import FEATURE_NAMES

from .checks import Result

SERIES_TESTS = ("shift", "feed")
SPREAD_FLOOR = 0.05  # standard units added to a spread before its logarithm: a constant feature stays finite
TRIM, TRIM_ROUNDS = 0.1, 2  # the share of windows the means view leaves out of its fit, and how many refits
MIN_WINDOWS = 100  # a size needs at least this many reference windows to be calibrated
CACHED_SIZES = 8
RANGE, VOLUME_Z = FEATURE_NAMES.index("range_pct"), FEATURE_NAMES.index("volume_z_20")


def summaries(rows: np.ndarray, size: int) -> np.ndarray:
    """``[windows, 2 * features]``: each feature's mean, then the logarithm of its standard deviation plus
    ``SPREAD_FLOOR``, over every window of ``size`` consecutive ``rows`` (standard units), from cumulative sums.

    >>> rows = np.array([[0.0], [2.0], [4.0], [4.0]])
    >>> summaries(rows, 2).round(3).tolist()
    [[1.0, 0.049], [3.0, 0.049], [4.0, -2.996]]
    """
    rows = np.asarray(rows, np.float64)
    zero = np.zeros((1, rows.shape[1]))
    sums, squares = np.concatenate([zero, np.cumsum(rows, 0)]), np.concatenate([zero, np.cumsum(rows ** 2, 0)])
    mean = (sums[size:] - sums[:-size]) / size
    variance = np.maximum((squares[size:] - squares[:-size]) / size - mean ** 2, 0.0)
    return np.concatenate([mean, np.log(np.sqrt(variance) + SPREAD_FLOOR)], axis=1)


def broken_rows(rows: np.ndarray, volume_limit: float) -> np.ndarray:
    """``[n, features]`` bool: the values of ``rows`` (raw features) that a working feed does not produce: one the
    features cannot compute (NaN), a range of zero, a volume z-score beyond ``volume_limit``.

    >>> rows = np.zeros((3, len(FEATURE_NAMES))); rows[:, RANGE] = [0.01, 0.0, 0.02]
    >>> rows[2, VOLUME_Z], rows[0, 0] = 4.3, np.nan
    >>> [FEATURE_NAMES[j] for j in np.argwhere(broken_rows(rows, 4.1))[:, 1]]
    ['ret_1', 'range_pct', 'volume_z_20']
    """
    broken = np.isnan(rows)
    broken[:, RANGE] |= rows[:, RANGE] == 0
    broken[:, VOLUME_Z] |= np.abs(rows[:, VOLUME_Z]) > volume_limit
    return broken


def rank_p_values(sorted_values: np.ndarray, value: float | np.ndarray) -> float | np.ndarray:
    """Share of ``sorted_values`` at least ``value``, counting the value itself (never 0).

    >>> rank_p_values(np.array([1.0, 2.0, 3.0]), 2.5)
    0.5
    """
    at_least = len(sorted_values) - np.searchsorted(sorted_values, value, side="left")
    share = (1 + at_least) / (1 + len(sorted_values))
    return float(share) if np.ndim(share) == 0 else share


@dataclass(frozen=True)
class View:
    """One Mahalanobis view of the windows' summaries: some of their columns, the location and scatter fitted
    with Ledoit-Wolf shrinkage, leaving out the ``trim`` most distant windows ``rounds`` times (0: a plain fit)."""

    columns: slice
    center: np.ndarray
    precision: np.ndarray
    scores: np.ndarray  # [windows] sorted: the reference windows' distances

    @classmethod
    def fit(cls, windows: np.ndarray, columns: slice = slice(None), trim: float = 0.0,
            rounds: int = TRIM_ROUNDS) -> View:
        windows = windows[:, columns]
        kept = np.ones(len(windows), bool)
        for _ in range(rounds + 1 if trim else 1):
            center = windows[kept].mean(axis=0)
            covariance, _ = ledoit_wolf(windows[kept] - center, assume_centered=True)
            precision = np.linalg.inv(covariance)
            scores = _mahalanobis(windows, center, precision)
            kept = scores <= np.quantile(scores, 1 - trim)
        return cls(columns, center, precision, np.sort(scores))

    def distances(self, summaries_: np.ndarray) -> np.ndarray:
        return _mahalanobis(summaries_[:, self.columns], self.center, self.precision)

    def p_values(self, summaries_: np.ndarray) -> np.ndarray:
        return rank_p_values(self.scores, self.distances(summaries_))


def _mahalanobis(rows: np.ndarray, center: np.ndarray, precision: np.ndarray) -> np.ndarray:
    deviation = rows - center
    return np.einsum("ij,jk,ik->i", deviation, precision, deviation)


@dataclass(frozen=True)
class ShiftTest:
    """Two views of a window's summary, and the smaller of their p-values ranked against the reference windows'
    own smaller ones (Tippett's combination, calibrated on the windows rather than assuming the views independent)."""

    views: tuple[View, ...]
    smallest: np.ndarray  # [windows] sorted: each reference window's smaller view p-value
    columns: np.ndarray  # [windows, 2 * features] the reference windows' summaries, each column sorted

    @classmethod
    def fit(cls, windows: np.ndarray) -> ShiftTest:
        """``windows``: the reference windows' summaries. One view takes every column against all of them: a
        market that moves differently; the other the means alone against their bulk: the period's own crashes
        ranked as the extremes they were."""
        features = windows.shape[1] // 2
        views = (View.fit(windows), View.fit(windows, slice(0, features), TRIM))
        smallest = np.min([view.p_values(windows) for view in views], axis=0)
        return cls(views, np.sort(smallest), np.sort(windows, axis=0))

    def p_value(self, summary: np.ndarray) -> tuple[float, float]:
        """The window's p-value, and its smaller view p-value (the statistic that p-value ranks)."""
        smallest = float(min(view.p_values(summary[None])[0] for view in self.views))
        at_most = np.searchsorted(self.smallest, smallest, side="right")
        return float((1 + at_most) / (1 + len(self.smallest))), smallest

    def run(self, summary: np.ndarray, p_value: float) -> Result:
        started = time.perf_counter()
        p, smallest = self.p_value(summary)
        features = len(summary) // 2
        feature_p = self.feature_p_values(summary)
        drift = p <= p_value
        quartiles = self.columns[[len(self.columns) // 4, len(self.columns) // 2, 3 * len(self.columns) // 4],
                                 :features]
        spread = quartiles[2] - quartiles[0]
        z = (summary[:features] - quartiles[1]) / np.where(spread > 0, spread, 1.0)
        # the features that moved: those passing Bonferroni, or else the one that moved most (a feature's rank
        # p-value cannot fall below 4 / (windows + 1), which a strict level divided by 35 features can undercut)
        named = feature_p <= p_value / features
        if drift and not named.any():
            named[np.argmin(feature_p)] = True
        return Result(bool(drift), p, -float(np.log10(smallest)), time.perf_counter() - started, feature_p, z,
                      drift & named)

    def feature_p_values(self, summary: np.ndarray) -> np.ndarray:
        """Per feature: the two-sided rank p-values of its mean and of its spread among the reference windows',
        the smaller one, doubled for the two (Bonferroni)."""
        windows = len(self.columns)
        below = np.array([np.searchsorted(c, v, side="right") for c, v in zip(self.columns.T, summary, strict=True)])
        above = windows - np.array([np.searchsorted(c, v, side="left")
                                    for c, v in zip(self.columns.T, summary, strict=True)])
        two_sided = np.minimum(1.0, 2 * (1 + np.minimum(below, above)) / (1 + windows))
        features = len(summary) // 2
        return np.minimum(1.0, 2 * np.minimum(two_sided[:features], two_sided[features:]))


@dataclass(frozen=True)
class FeedTest:
    volume_limit: float  # the largest |volume_z_20| of the reference period
    counts: np.ndarray  # [windows] sorted: broken rows per reference window

    @classmethod
    def fit(cls, segments: list[np.ndarray], size: int, volume_limit: float) -> FeedTest:
        counts = []
        for rows in segments:
            broken = np.concatenate([[0], np.cumsum(broken_rows(rows, volume_limit).any(axis=1))])
            counts.append(broken[size:] - broken[:-size])
        return cls(volume_limit, np.sort(np.concatenate(counts)))

    def run(self, rows: np.ndarray, p_value: float) -> Result:
        started = time.perf_counter()
        broken = broken_rows(rows, self.volume_limit)
        count = int(broken.any(axis=1).sum())
        p = rank_p_values(self.counts, count) if count else 1.0
        drift = p <= p_value
        return Result(bool(drift), p, float(count), time.perf_counter() - started, None,
                      broken.sum(axis=0).astype(np.float64), drift & broken.any(axis=0))


class SeriesCalibration:
    """The series tests of every window size from ``smallest`` to ``largest`` rows, each fitted on first use
    from the reference period's consecutive rows (``segments``: one array of raw feature rows per instrument,
    never a window across two) and kept (the ``CACHED_SIZES`` most recent)."""

    def __init__(self, segments: list[np.ndarray], standardise, smallest: int, largest: int):
        self._raw = [np.asarray(s, np.float64) for s in segments]
        self._standard = [np.asarray(standardise(s), np.float64) for s in segments]
        self.standardise, self.smallest, self.largest = standardise, smallest, largest
        self.volume_limit = float(max(np.abs(s[:, VOLUME_Z]).max() for s in self._raw))
        windows = sum(max(len(s) - largest + 1, 0) for s in segments)
        if windows < MIN_WINDOWS:
            raise ValueError(f"the reference period holds {windows} windows of {largest} rows; at least "
                             f"{MIN_WINDOWS} are needed to calibrate that size")
        self._fitted: OrderedDict[int, tuple[ShiftTest, FeedTest]] = OrderedDict()

    def tests(self, size: int) -> tuple[ShiftTest, FeedTest]:
        if not self.smallest <= size <= self.largest:
            raise ValueError(f"windows of {size} rows are not calibrated: {self.smallest} to {self.largest}")
        if size not in self._fitted:
            windows = np.concatenate([summaries(s, size) for s in self._standard if len(s) >= size])
            self._fitted[size] = (ShiftTest.fit(windows), FeedTest.fit(self._raw, size, self.volume_limit))
            while len(self._fitted) > CACHED_SIZES:
                self._fitted.popitem(last=False)
        self._fitted.move_to_end(size)
        return self._fitted[size]

    def run(self, rows: np.ndarray, tests: tuple[str, ...], p_value: float) -> dict[str, Result]:
        """The configured series tests on ``rows [n, features]`` (raw feature values)."""
        shift, feed = self.tests(len(rows))
        out = {}
        for name in tests:
            if name == "shift":
                out[name] = shift.run(summaries(self.standardise(rows), len(rows))[0], p_value)
            else:  # in the precision the reference was stored in, so its own largest value is not beyond itself
                out[name] = feed.run(np.asarray(rows, np.float32).astype(np.float64), p_value)
        return out
