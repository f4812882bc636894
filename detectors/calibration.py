"""Series calibration: thresholds from the reference period's own windows of consecutive rows.

alibi-detect's tests assume a window's rows are independent draws. A window of consecutive trading days is
not: 60-day volatility or the 50-day moving-average ratio barely move within a quarter, so such a window covers
a sliver of their range, and every test flags nearly every such window, inside the reference period too
(``analysis.drift_evidence`` measures it). Series calibration asks instead: is this window more unusual than the
reference period's own windows of the same length?

Each test gives a distance per feature (KS and CVM statistics, PSI). Over windows of consecutive held-out rows
of the reference period, each feature's distance has a median and an interquartile range; a window's score is
its largest robust z-score over the features, ``max_j (d_j - median_j) / iqr_j``, and its p-value is the share
of calibration windows that scored at least as high. A window drifts when its score passes the calibration
scores' ``1 - p_value`` quantile, and the features whose own z-score passes it are the ones flagged. Scaling per
feature keeps the slow features, whose distances are large in every window, from hiding the fast ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .checks import Result

SERIES_TESTS = ("ks", "cvm", "tabular", "psi")  # the tests that give a distance per feature


def robust_scale(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and interquartile range per feature of ``distances [windows, features]`` (a zero range becomes 1).

    >>> center, scale = robust_scale(np.array([[0.0], [1.0], [2.0], [3.0], [4.0]]))
    >>> center.tolist(), scale.tolist()
    ([2.0], [2.0])
    """
    low, center, high = np.quantile(distances, [0.25, 0.5, 0.75], axis=0)
    scale = high - low
    return center, np.where(scale > 0, scale, 1.0)


def calibrate(distances: dict[str, np.ndarray], window_rows: int) -> dict:
    """The JSON-able calibration from each test's per-feature distances ``[windows, features]``."""
    out = {"window_rows": window_rows, "tests": {}}
    for name, values in distances.items():
        center, scale = robust_scale(values)
        scores = ((values - center) / scale).max(axis=1)
        out["tests"][name] = {"center": center.tolist(), "scale": scale.tolist(), "scores": sorted(scores.tolist())}
    return out


@dataclass(frozen=True)
class CalibratedTest:
    center: np.ndarray  # [features]
    scale: np.ndarray  # [features]
    scores: np.ndarray  # [windows], sorted: the calibration windows' scores

    def z(self, distances: np.ndarray) -> np.ndarray:
        return (distances - self.center) / self.scale

    def p_value(self, score: float) -> float:
        """Share of calibration windows scoring at least ``score``, counting this window (never 0).

        >>> CalibratedTest(np.zeros(1), np.ones(1), np.array([1.0, 2.0, 3.0])).p_value(2.5)
        0.5
        """
        at_least = len(self.scores) - np.searchsorted(self.scores, score, side="left")
        return float((1 + at_least) / (1 + len(self.scores)))

    def threshold(self, p_value: float) -> float:
        return float(np.quantile(self.scores, 1 - p_value))


@dataclass(frozen=True)
class SeriesCalibration:
    window_rows: int
    tests: dict[str, CalibratedTest]

    @classmethod
    def from_metadata(cls, calibration: dict) -> SeriesCalibration:
        return cls(calibration["window_rows"], {
            name: CalibratedTest(*(np.asarray(test[key], dtype=np.float64) for key in ("center", "scale", "scores")))
            for name, test in calibration["tests"].items()})

    def apply(self, results: dict[str, Result], p_value: float) -> dict[str, Result]:
        """The same results with verdicts, p-values and flagged features from the calibration windows."""
        out = {}
        for name, result in results.items():
            calibration = self.tests[name]
            z = calibration.z(result.feature_values)
            flagged = z > calibration.threshold(p_value)
            out[name] = replace(result, drift=bool(flagged.any()), p_value=calibration.p_value(float(z.max())),
                                feature_drift=flagged)
        return out
