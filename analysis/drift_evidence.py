"""Evidence for the drift detector on real market history, measured in one run with fixed seeds.

1. False alarms: windows of consecutive trading days at random positions in the reference period, both indices,
   judged by the shipped detector (and, for comparison, by alibi-detect's tests on i.i.d. p-values); and windows
   of each instrument judged against a calibration built without that instrument (held out).
2. Power: shifts injected into calm stretches after the reference period (``seldon_market_ab.analysis.drift_shifts``):
   volatility x1.5 to x6, a drift in the trend, a close-only feed, a stale feed, volume in other units; the share
   flagged per cell, and how the statistics we chose between compare on the same windows.
3. Autumn 2008 (October to December, inside the reference period) as one request of 60 to 65 rows per index.
4. Detection: trailing windows ending on each trading day around five stress episodes, per instrument: the share
   flagged before and after the onset, and the delay in trading days.
5. Timeline: the verdict at every month end of the test period (2012-2018) beside each model's realised accuracy
   that month and the next, and the accuracy difference between flagged and unflagged months with a bootstrap
   interval over instrument-months.
6. Cost of a verdict, in process, and of calibrating a new window size.

    python -m seldon_market_ab.analysis.drift_evidence   # a few minutes: docs/drift-evidence.{json,md} and plots
    market-ab readme                    # renders the drift docs from the JSON
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from seldon_market_ab.detectors.calibration import (
    TRIM,
    SeriesCalibration,
    ShiftTest,
    View,
    broken_rows,
    rank_p_values,
    summaries,
)
from seldon_market_ab.detectors.checks import DriftChecks
from seldon_market_ab.detectors.reference import Reference
from seldon_market_ab.detectors.settings import IID_TESTS, DriftSettings
from seldon_market_ab.detectors.statistics import ensemble, ks_statistics
from seldon_market_ab.evidence import write_evidence
from seldon_market_ab.features import FEATURE_NAMES, WARMUP, compute_features
from seldon_market_ab.training.data import INSTRUMENTS, load_instrument
from seldon_market_ab.training.dataset import MarketDataset, SplitDates
from seldon_market_ab.training.drift_reference import FOLDER
from seldon_market_ab.training.evaluation import wilson_interval
from seldon_market_ab.training.variants import VARIANTS

from . import drift_shifts
from .router_evidence import model_correctness

SHIPPED = DriftSettings()  # the shipped detector's settings: series tests, any of them flags
P_VALUE, IID_K = SHIPPED.p_value, 2
INDICES = ("sp500", "nasdaq")
EPISODES = {  # onset: the first trading day of the sell-off
    "autumn 2008": "2008-09-15",  # Lehman Brothers' bankruptcy
    "August 2011": "2011-08-01",  # the US debt-ceiling crisis and downgrade
    "August 2015": "2015-08-20",  # the sell-off after the yuan devaluation
    "February 2018": "2018-02-02",  # the volatility spike ("Volmageddon")
    "late 2018": "2018-10-03",  # the fourth-quarter sell-off
}
CRISIS = ("2008-10-01", "2008-12-31")
CRISIS_ROWS = range(60, 66)
BEFORE, AFTER = 20, 60  # trading days of windows before and from the onset
TIMELINE = ("2012-01-01", "2018-12-31")
CALM_FROM = "2010-06-01"  # calm stretches start after the reference period and its features' warm-up
FEED_DAYS = "days broken before the window's end"
BOOTSTRAP = 2000
SHIFTS = {  # family: (label of a size, what the size means, [(size, function of prices and the window's first row)])
    "volatility": ("x{}", "daily moves, times", [(f, lambda p, o, f=f: drift_shifts.volatility(p, f, o))
                                                 for f in (1, 1.5, 2, 3, 4, 6)]),
    "trend": ("{:+.0%}", "log return a year, added", [(a, lambda p, o, a=a: drift_shifts.drift(p, a, o))
                                                      for a in (-1.0, -0.5, -0.25, 0.25, 0.5, 1.0)]),
    "close-only feed": ("{} d", FEED_DAYS, [(d, lambda p, o, d=d: drift_shifts.close_only(p, len(p) - d))
                                            for d in (1, 5, 20, 60)]),
    "stale feed": ("{} d", FEED_DAYS, [(d, lambda p, o, d=d: drift_shifts.stale(p, len(p) - d))
                                       for d in (1, 5, 20, 60)]),
    "stuck bar": ("{} d", FEED_DAYS, [(d, lambda p, o, d=d: drift_shifts.stuck_bar(p, len(p) - d))
                                      for d in (1, 5, 20, 60)]),
    "volume x1000": ("{} d", FEED_DAYS, [(d, lambda p, o, d=d: drift_shifts.volume_scale(p, 1000, len(p) - d))
                                         for d in (1, 5, 20, 60)]),
    "volume x10": ("{} d", FEED_DAYS, [(d, lambda p, o, d=d: drift_shifts.volume_scale(p, 10, len(p) - d))
                                       for d in (1, 20)]),
}
COMPARED_CELLS = (("volatility", 2), ("volatility", 4), ("volatility", 6), ("trend", -0.5),
                  ("close-only feed", 20), ("stale feed", 20))


def share(flags) -> dict:
    flags = np.asarray(flags, dtype=float)
    low, high = wilson_interval(float(flags.sum()), len(flags))
    return {"share": float(flags.mean()) if len(flags) else float("nan"), "low": low, "high": high, "n": len(flags)}


class Instruments:
    """Every instrument's prices, feature rows and dates, computed once."""

    def __init__(self):
        self.dates, self.prices, self.rows = {}, {}, {}
        for name in INSTRUMENTS:
            frame = load_instrument(name)
            self.dates[name], self.prices[name] = frame.index, frame.to_numpy()
            self.rows[name] = compute_features(self.prices[name])

    def trailing(self, name: str, end: int, rows: int) -> np.ndarray:
        return self.rows[name][end - rows + 1:end + 1]

    def reference_ends(self, name: str, rows: int) -> np.ndarray:
        """Positions where a window of ``rows`` days inside the reference period ends."""
        dates = self.dates[name]
        inside = np.flatnonzero(dates < pd.Timestamp(SplitDates().validation_start))
        return inside[inside >= WARMUP + rows - 1]


@dataclass
class Detector:
    """The shipped detector's verdict, in process: the series tests, any of them flags."""

    series: SeriesCalibration

    @classmethod
    def on(cls, reference: Reference, segments: list[np.ndarray] | None = None,
           largest: int = SHIPPED.max_window_size) -> Detector:
        return cls(SeriesCalibration(reference.segments() if segments is None else segments, reference.standardise,
                                     SHIPPED.window_size, largest))

    def results(self, rows: np.ndarray) -> dict:
        return self.series.run(rows, SHIPPED.tests, P_VALUE)

    def __call__(self, rows: np.ndarray) -> bool:
        return ensemble({name: r.drift for name, r in self.results(rows).items()}, SHIPPED.votes)


# 1. false alarms --------------------------------------------------------------------------------------------

def false_alarms(reference: Reference, detector: Detector, data: Instruments, rows: int, windows: int,
                 seed: int = 0) -> dict:
    """Ordinary windows of each instrument, ``windows / 2`` each; the goal pools the indices'. Intervals resample
    instrument-years: windows at random positions overlap, so they are not independent draws."""
    checks = DriftChecks(reference, IID_TESTS, P_VALUE, seed=seed)
    rng = np.random.default_rng(seed)
    records = []  # (instrument, year, verdict, {test: verdict}, i.i.d. verdict)
    for name in INSTRUMENTS:
        for end in tqdm(rng.choice(data.reference_ends(name, rows), windows // len(INDICES), replace=False),
                        desc=f"ordinary windows, {name}", mininterval=2):
            window = data.trailing(name, int(end), rows)
            results = detector.results(window)
            iid = name in INDICES and ensemble({n: r.drift for n, r in checks.run(window).items()}, IID_K)
            records.append((name, data.dates[name][int(end)].year,
                            ensemble({n: r.drift for n, r in results.items()}, SHIPPED.votes),
                            {n: r.drift for n, r in results.items()}, iid))
    indices = [r for r in records if r[0] in INDICES]
    clusters = [(r[0], r[1]) for r in indices]
    return {"rows": rows, "nominal": P_VALUE, "instruments": list(INDICES),
            "ordinary": {"ensemble": clustered([r[2] for r in indices], clusters),
                         "tests": {n: clustered([r[3][n] for r in indices], clusters) for n in SHIPPED.tests},
                         "iid_ensemble": clustered([r[4] for r in indices], clusters)},
            "by_instrument": {name: clustered([r[2] for r in records if r[0] == name],
                                              [r[1] for r in records if r[0] == name]) for name in INSTRUMENTS},
            "held_out": held_out(reference, rows, windows, rng)}


def clustered(flags, clusters, draws: int = BOOTSTRAP, seed: int = 0) -> dict:
    """A share with a 95% Wilson interval at its effective sample size: the count divided by the design effect, the
    variance of a bootstrap that resamples whole clusters (instrument-years) over the binomial variance (at least
    1). Windows near each other overlap, so ``n`` of them carry less than ``n`` draws' worth of evidence."""
    flags, keys = np.asarray(flags, dtype=float), [str(c) for c in clusters]
    groups = [np.flatnonzero(np.asarray(keys) == key) for key in dict.fromkeys(keys)]
    sums, sizes = np.array([flags[g].sum() for g in groups]), np.array([len(g) for g in groups])
    picks = np.random.default_rng(seed).integers(0, len(groups), size=(draws, len(groups)))
    shares = sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    p, n = float(flags.mean()), len(flags)
    binomial = p * (1 - p) / n
    design = max(1.0, float(shares.var()) / binomial) if binomial > 0 else 1.0
    low, high = wilson_interval(p * n / design, n / design)
    return {"share": p, "low": low, "high": high, "n": n, "clusters": len(groups), "design_effect": design}


def held_out(reference: Reference, rows: int, windows: int, rng: np.random.Generator) -> dict:
    """Windows of the odd years judged by a detector calibrated on the even years' alone, and the other way round
    (every instrument's rows cut into calendar years, so no window spans two): the calibration out of sample,
    within the same period."""
    from seldon_market_ab.training.drift_reference import training_period_rows

    series, instruments, days = training_period_rows()
    years = pd.DatetimeIndex(days).year.to_numpy()
    blocks = {}  # (instrument, year) -> rows, in order
    for key in dict.fromkeys(zip(instruments, years, strict=True)):
        blocks[key] = series[(instruments == key[0]) & (years == key[1])]
    out, verdicts = {}, []
    for parity, label in ((0, "odd years, calibrated on the even"), (1, "even years, calibrated on the odd")):
        detector = Detector.on(reference, [b for (_, year), b in blocks.items() if year % 2 == parity], rows)
        judged = [((name, year), b) for (name, year), b in blocks.items() if year % 2 != parity
                  and name in INDICES and len(b) >= rows]
        flags, clusters = [], []
        for i in rng.choice(len(judged), windows // 2):
            (name, year), block = judged[i]
            start = int(rng.integers(0, len(block) - rows + 1))
            flags.append(detector(block[start:start + rows]))
            clusters.append((name, year))
        out[label] = clustered(flags, clusters)
        verdicts += list(zip(flags, clusters, strict=True))
    return {"both": clustered([f for f, _ in verdicts], [c for _, c in verdicts]), **out}


def broken_days(data: Instruments, detector: Detector) -> dict:
    """Every day of the shipped data, reference period or not, that the feed test calls broken, and why."""
    out = {}
    for name in INSTRUMENTS:
        rows = data.rows[name][WARMUP:]
        broken = broken_rows(rows, detector.series.volume_limit)
        out[name] = [{"date": str(data.dates[name][WARMUP + i])[:10],
                      "features": [FEATURE_NAMES[j] for j in np.flatnonzero(broken[i])]}
                     for i in np.flatnonzero(broken.any(axis=1))]
    return out


# 2. power ---------------------------------------------------------------------------------------------------

def calm_stretches(data: Instruments, detector: Detector, rows: int, count: int, seed: int = 0) -> list:
    """``count`` windows starting on or after ``CALM_FROM``, drawn at random among the calm ones (every day's
    20-day volatility below the instrument's median) whose data a working feed sent (no broken row)."""
    vol = FEATURE_NAMES.index("vol_20")
    candidates = []
    for name in INSTRUMENTS:
        median = np.nanmedian(data.rows[name][:, vol])
        for start in np.flatnonzero(data.dates[name] >= pd.Timestamp(CALM_FROM)):
            end = int(start) + rows - 1
            if end >= len(data.dates[name]):
                break
            window = data.trailing(name, end, rows)
            if (window[:, vol] < median).all() and not broken_rows(window, detector.series.volume_limit).any():
                candidates.append((name, end))
    rng = np.random.default_rng(seed)
    return [candidates[i] for i in rng.choice(len(candidates), count, replace=False)]


def shifted_windows(data: Instruments, stretches: list, rows: int, shift) -> list[np.ndarray]:
    """The feature rows of each stretch's window after ``shift(prices, first row of the window)``."""
    out = []
    for name, end in stretches:
        prices = data.prices[name][end - rows + 1 - WARMUP:end + 1]
        out.append(compute_features(shift(prices, WARMUP))[-rows:])
    return out


def power(data: Instruments, detector: Detector, stretches: list, rows: int) -> tuple[dict, dict]:
    """The share flagged per cell (and per test), intervals resampling the stretches' instrument-years (nearby
    stretches overlap); and each cell's windows, for the comparison of statistics."""
    cells, windows = [], {}
    clusters = [(name, data.dates[name][end].year) for name, end in stretches]
    for family, (label, unit, sizes) in tqdm(SHIFTS.items(), desc="injected shifts"):
        for size, shift in sizes:
            shifted = shifted_windows(data, stretches, rows, shift)
            results = [detector.results(w) for w in shifted]
            cells.append({"family": family, "size": size, "label": label.format(size), "unit": unit,
                          "flagged": clustered([ensemble({n: r.drift for n, r in res.items()}, SHIPPED.votes)
                                                for res in results], clusters),
                          "tests": {test: clustered([res[test].drift for res in results], clusters)
                                    for test in SHIPPED.tests}})
            windows[(family, size)] = shifted
    calm = {"from": CALM_FROM, "stretches": len(stretches),
            "instruments": {name: sum(1 for n, _ in stretches if n == name) for name in INSTRUMENTS}}
    return {"rows": rows, "calm": calm, "cells": cells}, windows


# the statistics we chose between ---------------------------------------------------------------------------

class LargestKSDistance:
    """The statistic the series calibration used before: each feature's KS distance to the reference rows as a
    robust z-score over the period's windows (median and interquartile range), the largest of them."""

    def __init__(self, reference: Reference, rows: int, stride: int = 5):
        self.reference, self._sorted = reference, np.sort(reference.standardise(reference.rows), axis=0)
        distances = np.array([self._distances(s[start:start + rows]) for s in reference.segments()
                              for start in range(0, len(s) - rows + 1, stride)])
        low, self.center, high = np.quantile(distances, [0.25, 0.5, 0.75], axis=0)
        self.scale = np.where(high - low > 0, high - low, 1.0)
        self.scores = np.sort(self._score(distances))

    def _distances(self, rows: np.ndarray) -> np.ndarray:
        return ks_statistics(self._sorted, self.reference.standardise(rows))

    def _score(self, distances: np.ndarray) -> np.ndarray:
        return ((distances - self.center) / self.scale).max(axis=-1)

    def p_value(self, rows: np.ndarray) -> float:
        return rank_p_values(self.scores, float(self._score(self._distances(rows))))


class Candidate:
    """A shift statistic on the window summaries: one view, or the shipped test with both."""

    def __init__(self, reference: Reference, rows: int, columns: slice | None = None, trim: float = 0.0):
        self.reference = reference
        windows = np.concatenate([summaries(reference.standardise(s), rows) for s in reference.segments()])
        self.test = ShiftTest.fit(windows) if columns is None else View.fit(windows, columns, trim)

    def p_value(self, rows: np.ndarray) -> float:
        summary = summaries(self.reference.standardise(rows), len(rows))[0]
        if isinstance(self.test, ShiftTest):
            return self.test.p_value(summary)[0]
        return float(self.test.p_values(summary[None])[0])


def compared(reference: Reference, data: Instruments, windows: dict, rows: int, null_windows: int,
             seed: int = 0) -> list[dict]:
    """Each candidate statistic at the same level on the same windows: ordinary ones, autumn 2008 on both
    indices, and injected shifts (the statistic alone, without the feed test)."""
    features = len(FEATURE_NAMES)
    candidates = {
        "largest per-feature KS distance, robust z (before)": LargestKSDistance(reference, rows),
        "means and log spreads, plain fit (one view)": Candidate(reference, rows, slice(None)),
        "means and log spreads, trimmed fit": Candidate(reference, rows, slice(None), TRIM),
        "means, trimmed fit (the other view)": Candidate(reference, rows, slice(0, features), TRIM),
        "both views, the smaller p-value calibrated (shipped)": Candidate(reference, rows),
    }
    rng = np.random.default_rng(seed)
    ordinary = [data.trailing(name, int(end), rows) for name in INDICES
                for end in rng.choice(data.reference_ends(name, rows), null_windows // len(INDICES), replace=False)]
    crisis = {name: data.trailing(name, int(np.searchsorted(data.dates[name], pd.Timestamp(CRISIS[1]), "right")) - 1,
                                  rows) for name in INDICES}
    out = []
    for label, candidate in tqdm(candidates.items(), desc="statistics compared"):
        out.append({
            "statistic": label,
            "ordinary": share([candidate.p_value(w) <= P_VALUE for w in ordinary]),
            "crisis_p_values": {name: candidate.p_value(w) for name, w in crisis.items()},
            "power": {f"{family} {size}": share([candidate.p_value(w) <= P_VALUE for w in windows[(family, size)]])
                      for family, size in COMPARED_CELLS},
        })
    return out


# 3. autumn 2008 as one request ------------------------------------------------------------------------------

def crisis_requests(detector: Detector, data: Instruments) -> dict:
    """October to December 2008 (inside the reference period) as one request per index, of 60 to 65 rows
    ending on the quarter's last day."""
    out = {"ends": CRISIS[1], "indices": {}}
    for name in INDICES:
        end = int(np.searchsorted(data.dates[name], pd.Timestamp(CRISIS[1]), "right")) - 1
        quarter = int(end - np.searchsorted(data.dates[name], pd.Timestamp(CRISIS[0])) + 1)
        sizes = {}
        for rows in sorted({*CRISIS_ROWS, quarter}):
            results = detector.results(data.trailing(name, end, rows))
            sizes[str(rows)] = {"drift": ensemble({n: r.drift for n, r in results.items()}, SHIPPED.votes),
                                "p_values": {n: r.p_value for n, r in results.items()},
                                "features": [FEATURE_NAMES[j] for j in
                                             np.argsort(results["shift"].feature_p_values)[:5]]}
        out["indices"][name] = {"quarter_rows": quarter, "sizes": sizes}
    return out


# 4. detection -----------------------------------------------------------------------------------------------

def detection(reference: Reference, detector: Detector, data: Instruments, rows: int,
              episodes: dict[str, str] = EPISODES) -> dict:
    checks = DriftChecks(reference, IID_TESTS, P_VALUE)
    out = {}
    for episode, onset in tqdm(episodes.items(), desc="episodes"):
        out[episode] = {"onset": onset}
        for name in INSTRUMENTS:
            dates = data.dates[name]
            start = int(np.searchsorted(dates, pd.Timestamp(onset)))
            if start - BEFORE - rows < 0 or start + AFTER > len(dates):
                continue  # the instrument's history does not cover the episode
            days = range(start - BEFORE, start + AFTER)
            iid_flags, series_flags = [], []
            for end in days:
                window = data.trailing(name, end, rows)
                iid_flags.append(ensemble({n: r.drift for n, r in checks.run(window).items()}, IID_K))
                series_flags.append(detector(window))
            out[episode][name] = {mode: _episode_summary(flags) for mode, flags in
                                  (("iid", iid_flags), ("series", series_flags))}
            out[episode][name]["dates"] = [str(dates[d])[:10] for d in (days[0], days[-1])]
    return out


def _episode_summary(flags: list[bool]) -> dict:
    before, after = np.asarray(flags[:BEFORE]), np.asarray(flags[BEFORE:])
    delay = int(np.argmax(after)) if after.any() else None
    return {"before": share(before), "after": share(after), "delay_days": delay,
            "flags": "".join("1" if f else "0" for f in flags)}


# 5. timeline ------------------------------------------------------------------------------------------------

def timeline(reference: Reference, detector: Detector, data: Instruments, rows: int, models_dir: Path,
             seed: int = 0) -> dict:
    lengths = {v.sequence_length for v in VARIANTS.values()}
    test = MarketDataset(sequence_length=lengths.pop())["test"]
    correct = model_correctness(models_dir, list(VARIANTS), test)  # [samples, models]
    months = pd.PeriodIndex(pd.DatetimeIndex(test.date), freq="M")
    checks = DriftChecks(reference, IID_TESTS, P_VALUE)
    records = []
    for name in tqdm(INSTRUMENTS, desc="timeline"):
        dates = data.dates[name]
        inside = (dates >= pd.Timestamp(TIMELINE[0])) & (dates <= pd.Timestamp(TIMELINE[1]))
        by_month = pd.Series(np.flatnonzero(inside), index=dates[inside].to_period("M")).groupby(level=0).max()
        for month, end in by_month.items():
            window = data.trailing(name, int(end), rows)
            mine = test.instrument == name
            this, following = mine & (months == month), mine & (months == month + 1)
            records.append({
                "instrument": name, "month": str(month),
                "series": bool(detector(window)),
                "iid": bool(ensemble({n: r.drift for n, r in checks.run(window).items()}, IID_K)),
                "samples": int(this.sum()), "next_samples": int(following.sum()),
                "accuracy": correct[this].mean(axis=0).tolist() if this.any() else None,
                "next_accuracy": correct[following].mean(axis=0).tolist() if following.any() else None,
                "correct": correct[this].sum(axis=0).tolist(), "next_correct": correct[following].sum(axis=0).tolist(),
            })
    comparison = {mode: {key: accuracy_difference(records, mode, key, seed) for key in ("same", "next")}
                  for mode in ("series", "iid")}
    return {"models": list(VARIANTS), "months": records, "comparison": comparison}


def accuracy_difference(records: list[dict], mode: str, key: str, seed: int) -> dict:
    """Accuracy in flagged minus unflagged instrument-months, per model, pooled over each month's predictions,
    with a bootstrap interval that resamples instrument-months (days within a month are not independent)."""
    correct_key, samples_key = ("correct", "samples") if key == "same" else ("next_correct", "next_samples")
    usable = [r for r in records if r[samples_key] > 0]
    flagged = np.array([r[mode] for r in usable])
    out = {"flagged_months": int(flagged.sum()), "unflagged_months": int((~flagged).sum()), "models": {}}
    if flagged.all() or not flagged.any():
        return out  # nothing to compare
    correct = np.array([r[correct_key] for r in usable], dtype=float)  # [months, models]
    samples = np.array([r[samples_key] for r in usable], dtype=float)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(flagged), np.flatnonzero(~flagged)]

    def difference(pick):
        a, b = (correct[g].sum(axis=0) / samples[g].sum() for g in pick)
        return a - b

    point = difference(groups)
    draws = np.array([difference([rng.choice(g, len(g)) for g in groups]) for _ in range(BOOTSTRAP)])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    for j, model in enumerate(VARIANTS):
        out["models"][model] = {
            "flagged": float(correct[groups[0], j].sum() / samples[groups[0]].sum()),
            "unflagged": float(correct[groups[1], j].sum() / samples[groups[1]].sum()),
            "difference": float(point[j]), "low": float(low[j]), "high": float(high[j]),
            "flagged_predictions": int(samples[groups[0]].sum()),
            "unflagged_predictions": int(samples[groups[1]].sum())}
    return out


# 6. cost ----------------------------------------------------------------------------------------------------

def cost(reference: Reference, data: Instruments, repeats: int, rows: int, seed: int = 0) -> dict:
    """Milliseconds of the shipped verdict on ``rows`` days sent as prices (the features of each day's window
    computed first, as the runtime does), in process, and of calibrating a window size on first use."""
    detector = Detector.on(reference)
    detector.series.tests(rows)  # calibrated before it is timed (its own figure below)
    compute_features(data.prices["sp500"][:WARMUP + 2][None], rows=1)  # compiled before it is timed
    rng = np.random.default_rng(seed)
    features, verdict = [], []
    for end in rng.choice(data.reference_ends("sp500", rows), repeats, replace=False):
        ends = np.arange(end - rows + 1, end + 1)
        windows = np.stack([data.prices["sp500"][e - WARMUP:e + 1] for e in ends])
        started = time.perf_counter()
        computed = compute_features(windows, rows=1)[:, -1, :]
        middle = time.perf_counter()
        detector(computed)
        features.append(middle - started)
        verdict.append(time.perf_counter() - middle)
    calibrations = {}
    for size in (SHIPPED.window_size, 120, SHIPPED.max_window_size):
        fresh = Detector.on(reference)
        started = time.perf_counter()
        fresh.series.tests(size)
        calibrations[str(size)] = time.perf_counter() - started
    total = np.add(features, verdict)
    return {"rows": rows, "repeats": repeats,
            "features_ms": float(1000 * np.median(features)), "tests_ms": float(1000 * np.median(verdict)),
            "verdict_ms": float(1000 * np.median(total)), "verdict_p90_ms": float(1000 * np.percentile(total, 90)),
            "calibration_ms": {size: 1000 * seconds for size, seconds in calibrations.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--null-windows", type=int, default=400, help="ordinary windows, half on each index")
    parser.add_argument("--stretches", type=int, default=60, help="calm stretches per injected shift")
    parser.add_argument("--cost-repeats", type=int, default=50)
    parser.add_argument("--episodes", default=",".join(EPISODES), help="comma-separated, of: " + ", ".join(EPISODES))
    args = parser.parse_args(argv)
    reference = Reference.load(args.models_dir / FOLDER)
    rows = SHIPPED.window_size
    data, detector = Instruments(), Detector.on(reference)
    episodes = {name: EPISODES[name] for name in args.episodes.split(",")}
    started = time.perf_counter()
    stretches = calm_stretches(data, detector, rows, args.stretches)
    injected, windows = power(data, detector, stretches, rows)
    results = {
        "reference": {"rows": len(reference.rows), "source": reference.metadata["source"],
                      "series_rows": reference.metadata["series_instruments"], "window_rows": rows,
                      "max_window_rows": SHIPPED.max_window_size},
        "settings": {"p_value": P_VALUE, "tests": list(SHIPPED.tests), "votes": SHIPPED.votes,
                     "iid_tests": list(IID_TESTS), "iid_k": IID_K},
        "false_alarms": false_alarms(reference, detector, data, rows, args.null_windows),
        "broken_days": broken_days(data, detector),
        "power": injected,
        "compared": compared(reference, data, windows, rows, args.null_windows),
        "crisis": crisis_requests(detector, data),
        "detection": detection(reference, detector, data, rows, episodes),
        "timeline": timeline(reference, detector, data, rows, args.models_dir),
        "cost": cost(reference, data, args.cost_repeats, rows),
    }
    results["seconds"] = round(time.perf_counter() - started, 1)
    from .drift_report import plot, render_markdown

    write_evidence(args.out, "drift-evidence", results, render_markdown)
    plot(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
