"""The drift detector's reference: feature rows of the training period, computed by the serving feature code.

Every instrument's rows from the end of the feature warm-up to the start of validation (the LSTMs' training
period) are pooled in instrument and date order and cut into ``REFERENCE_ROWS`` consecutive blocks; one row
drawn at random from each block (fixed seed) joins the reference, and the rest are kept as held-out rows of the
same period for the false-alarm evidence. Drawing per block spreads the reference evenly over the period:
features such as 60-day volatility move slowly, and a plain random draw can over-represent a stretch of them
by chance (one such draw differed from its own held-out rows at p = 0.0001, and KS then flagged 18% of null
windows instead of about 1%).

Every row of the period, in order, is stored too: the series tests judge a window against the period's own
windows of the same size, fitted when the detector first meets that size (``seldon_market_ab.detectors.calibration``).
The online detector's thresholds are simulated here, once, and stored with the reference
(``seldon_market_ab.detectors.online``); they depend only on the reference's shape, since Cramér-von Mises is
rank-based.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from seldon_market_ab.detectors.drift import DriftRuntime
from seldon_market_ab.detectors.online import online_thresholds
from seldon_market_ab.detectors.reference import Reference, write_reference
from seldon_market_ab.detectors.settings import DriftSettings
from seldon_market_ab.features import FEATURE_NAMES, WARMUP, compute_features
from seldon_market_ab.metadata import settings_fields

from .data import INSTRUMENTS, load_instrument
from .dataset import SplitDates

FOLDER = "drift-detector"
REFERENCE_ROWS = 1000
ONLINE_ERT = 250  # expected rows between false alarms of the online detector (about a trading year)
ONLINE_WINDOW_SIZES = (20,)  # about a trading month
WINDOW_ROWS = 60  # the shipped detector's window: about a quarter of trading days
SEED = 0


def training_period_rows(dates: SplitDates = SplitDates()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature rows ``[n, features]`` of every instrument's training period, their instrument and date."""
    rows, instruments, days = [], [], []
    for name in INSTRUMENTS:
        frame = load_instrument(name)
        features = compute_features(frame.to_numpy())
        keep = np.zeros(len(frame), bool)
        keep[WARMUP:] = True
        keep &= frame.index < pd.Timestamp(dates.validation_start)
        keep &= np.isfinite(features).all(axis=1)
        rows.append(features[keep])
        instruments.append(np.full(keep.sum(), name))
        days.append(frame.index.to_numpy()[keep])
    return np.concatenate(rows).astype(np.float32), np.concatenate(instruments), np.concatenate(days)


def reference_positions(pool_rows: int, reference_rows: int, seed: int) -> np.ndarray:
    """One position drawn at random from each of ``reference_rows`` consecutive blocks of the pool.

    >>> reference_positions(10, 5, seed=0) // 2
    array([0, 1, 2, 3, 4])
    """
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(block) for block in np.array_split(np.arange(pool_rows), reference_rows)])


def model_settings(reference: Reference) -> dict:
    """The detector's model-settings.json, with the inputs and outputs it serves for ``reference`` and these
    settings (its metadata, ``seldon_market_ab.metadata``)."""
    extra = {"window_size": WINDOW_ROWS}
    signature = DriftRuntime.signature(DriftSettings.from_extra(extra, FOLDER), reference)
    return {
        "name": FOLDER,
        "implementation": "seldon_market_ab.detectors.drift.DriftRuntime",
        "parameters": {"uri": "./", "version": "1", "extra": extra},
        **settings_fields(signature, "1"),
    }


def build_reference(models_dir: str | Path, reference_rows: int = REFERENCE_ROWS, seed: int = SEED) -> Reference:
    """Write ``models_dir/drift-detector``: the reference, held-out rows, the period's rows in order, online
    thresholds and model settings."""
    folder = Path(models_dir) / FOLDER
    rows, instruments, days = training_period_rows()
    chosen = reference_positions(len(rows), reference_rows, seed)
    heldout = np.setdiff1d(np.arange(len(rows)), chosen)
    reference = rows[chosen]
    started = time.perf_counter()
    online = online_thresholds(reference, ONLINE_ERT, list(ONLINE_WINDOW_SIZES), seed)
    online["seconds"] = round(time.perf_counter() - started, 1)
    source = {
        "period": f"first row after the {WARMUP}-row feature warm-up to {SplitDates().validation_start} (exclusive)",
        "instruments": {name: int((instruments == name).sum()) for name in INSTRUMENTS},
        "first_date": str(days.min())[:10], "last_date": str(days.max())[:10],
        "pool_rows": int(len(rows)), "sampling": "one row at random from each block of consecutive rows",
        "seed": seed,
    }
    series = {name: rows[instruments == name] for name in INSTRUMENTS}
    written = write_reference(folder, reference, rows[heldout], series, FEATURE_NAMES, source, online)
    (folder / "model-settings.json").write_text(json.dumps(model_settings(written), indent=2) + "\n")
    return written

