"""The i.i.d. drift tests, on alibi-detect, run on one window of feature rows against the reference.

They assume a window's rows are independent draws, which consecutive market days are not: they serve the detector's
``calibration: iid`` (rows drawn at random, or a comparison on purpose), and the evidence that shows why the shipped
detector uses the series tests instead (``seldon_market_ab.detectors.calibration``). Every test sees standardised rows
(the reference's mean and standard deviation; an undefined value becomes the reference mean, as the LSTMs' scaler does):
the univariate tests do not care, and MMD's kernel needs a common scale. Cramér-von Mises gets its ties broken
(``statistics.break_ties``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from alibi_detect.cd import ClassifierDrift, CVMDrift, KSDrift, MMDDrift, TabularDrift
from alibi_detect.utils.statstest import fdr

from .reference import Reference
from .statistics import bin_shares, break_ties, psi, psi_p_values

TESTS = ("ks", "cvm", "tabular", "mmd", "psi", "classifier")


@dataclass(frozen=True)
class Result:
    drift: bool
    p_value: float  # the smallest (per-feature tests) or only p-value
    distance: float  # the largest per-feature distance, MMD², the classifier's AUC-like distance, or the largest PSI
    seconds: float
    feature_p_values: np.ndarray | None = None  # [features], per-feature tests only
    feature_values: np.ndarray | None = None  # [features]: KS distance, CVM statistic or PSI
    feature_drift: np.ndarray | None = None  # [features] bool: the features this test flags


class DriftChecks:
    """The configured tests, built once on the reference."""

    def __init__(self, reference: Reference, tests: tuple[str, ...], p_value: float = 0.05,
                 correction: str = "bonferroni", mmd_permutations: int = 100, seed: int = 0):
        unknown = set(tests) - set(TESTS)
        if unknown:
            raise ValueError(f"unknown drift tests {sorted(unknown)}; expected some of {list(TESTS)}")
        self.reference, self.tests, self.p_value, self.correction = reference, tuple(tests), p_value, correction
        ref = self.standardise(reference.rows)
        self._ones = np.ones(ref.shape[1], dtype=np.float32)
        torch.manual_seed(seed)
        self._detectors = {}
        if "ks" in tests:
            self._detectors["ks"] = KSDrift(ref, p_val=p_value, correction=correction)
        if "cvm" in tests:
            self._detectors["cvm"] = CVMDrift(break_ties(ref, self._ones, seed), p_val=p_value, correction=correction)
        if "tabular" in tests:
            with warnings.catch_warnings():  # "no categorical feature given": right, none is categorical
                warnings.simplefilter("ignore", UserWarning)
                self._detectors["tabular"] = TabularDrift(ref, p_val=p_value, correction=correction)
        if "mmd" in tests:
            self._detectors["mmd"] = MMDDrift(ref, backend="pytorch", p_val=p_value, n_permutations=mmd_permutations,
                                              device="cpu")
        if "classifier" in tests:
            width = ref.shape[1]
            model = torch.nn.Sequential(torch.nn.Linear(width, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
            self._detectors["classifier"] = ClassifierDrift(ref, model, backend="pytorch", p_val=p_value,
                                                            preds_type="logits", n_folds=3, train_size=None,
                                                            epochs=2, seed=seed,
                                                            device="cpu")
        self._expected_shares = bin_shares(reference.rows, reference.psi_edges)
        self._seed = seed

    def _corrected_threshold(self, p_values: np.ndarray) -> float:
        """The per-feature threshold after the multiple-testing correction, as alibi-detect's own tests apply it."""
        if self.correction == "bonferroni":
            return self.p_value / len(p_values)
        significant, threshold = fdr(p_values, q_val=self.p_value)
        return float(threshold) if significant else 0.0

    def standardise(self, rows: np.ndarray) -> np.ndarray:
        return self.reference.standardise(rows)

    def run(self, rows: np.ndarray) -> dict[str, Result]:
        """Every configured test on ``rows [n, features]`` (raw feature values)."""
        scaled = self.standardise(rows)
        out = {}
        for name in self.tests:
            started = time.perf_counter()
            if name == "psi":
                values = psi(self._expected_shares, bin_shares(rows, self.reference.psi_edges))
                p_values = psi_p_values(values, len(rows), len(self.reference.rows))
                flagged = p_values < self._corrected_threshold(p_values)
                out[name] = Result(bool(flagged.any()), float(p_values.min()), float(values.max()),
                                   time.perf_counter() - started, p_values, values, flagged)
                continue
            x = break_ties(scaled, self._ones, self._seed + 1) if name == "cvm" else scaled
            data = self._detectors[name].predict(x)["data"]
            p_values, distances = np.atleast_1d(data["p_val"]), np.atleast_1d(data["distance"])
            per_feature = len(p_values) > 1
            # alibi-detect's corrected per-feature threshold; an array when FDR found nothing significant
            threshold = np.asarray(data.get("threshold", self.p_value))
            flagged = p_values < threshold if threshold.ndim == 0 else np.zeros(len(p_values), bool)
            out[name] = Result(bool(data["is_drift"]), float(p_values.min()), float(distances.max()),
                               time.perf_counter() - started,
                               p_values.astype(np.float64) if per_feature else None,
                               distances.astype(np.float64) if per_feature else None,
                               flagged if per_feature else None)
        return out
