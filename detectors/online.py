"""The online detector (alibi-detect's ``CVMDriftOnline``) with thresholds computed once, when the reference is built.

Configuring the online detector simulates thousands of null streams to find the thresholds that give the
expected run time between false alarms (seconds here; ``MMDDriftOnline`` took 38 s). The thresholds depend
only on the reference size, the window sizes, the expected run time and the number of features, so they are
computed with the reference and stored in ``reference.json``; loading reuses them.

``_configure_thresholds``, ``_update_state``, ``thresholds``, ``xs`` and ``drift_preds`` are alibi-detect
internals (checked against the pinned 0.13.0 in ``tests/unit/test_drift_reference.py``); this module is the only
place that touches them.
"""

from __future__ import annotations

import numpy as np
from alibi_detect.cd import CVMDriftOnline

N_BOOTSTRAPS = 10_000
KEPT_VERDICTS = 1000


def online_thresholds(rows: np.ndarray, ert: float, window_sizes: list[int], seed: int = 0) -> dict:
    """Simulate the thresholds for a reference of ``rows``' shape (slow: seconds); JSON-able."""
    np.random.seed(seed)  # alibi-detect simulates with numpy's global generator
    detector = CVMDriftOnline(rows, ert=ert, window_sizes=window_sizes, n_bootstraps=N_BOOTSTRAPS, verbose=False)
    return {"ert": ert, "window_sizes": list(window_sizes), "n_bootstraps": N_BOOTSTRAPS, "reference_rows": len(rows),
            "features": rows.shape[1], "thresholds": np.asarray(detector.thresholds).ravel().tolist()}


class StoredThresholdsCVMDriftOnline(CVMDriftOnline):
    """``CVMDriftOnline`` that takes its thresholds instead of simulating them."""

    def __init__(self, rows: np.ndarray, configuration: dict):
        self._stored = np.asarray(configuration["thresholds"], dtype=np.float64).reshape(-1, 1)
        super().__init__(rows, ert=configuration["ert"], window_sizes=configuration["window_sizes"],
                         n_bootstraps=configuration["n_bootstraps"], verbose=False)

    def _configure_thresholds(self) -> None:
        self.thresholds = self._stored

    def _update_state(self, x_t: np.ndarray) -> None:
        super()._update_state(x_t)
        # alibi-detect keeps the whole stream and every past verdict, and copies them on each row: memory and
        # time that grow without bound on a server. Only the last max(window_sizes) rows are ever read.
        self.xs = self.xs[-self.max_ws:]
        self.drift_preds = self.drift_preds[-KEPT_VERDICTS:]


def online_detector(rows: np.ndarray, configuration: dict) -> CVMDriftOnline:
    if (configuration["reference_rows"], configuration["features"]) != rows.shape:
        raise ValueError(f"online thresholds were computed for a reference of {configuration['reference_rows']} x "
                         f"{configuration['features']}, not {rows.shape[0]} x {rows.shape[1]}")
    return StoredThresholdsCVMDriftOnline(rows, configuration)
