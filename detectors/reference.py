"""The drift detector's reference: arrays plus JSON beside the model, so loading never unpickles anything.

``reference.npy`` holds the reference feature rows, ``heldout.npy`` rows of the same period kept out of it (for the
i.i.d. false-alarm evidence), ``series.npy`` every row of the period in order, instrument after instrument (the
series tests' windows, ``seldon_market_ab.detectors.calibration``), and ``reference.json`` the feature names, where the
rows came from, each instrument's share of ``series.npy``, the standardisation and PSI bins derived from the reference
rows, the online detector's thresholds, and a SHA-256 of each array. Loading checks all of it: a missing, tampered or
inconsistent reference fails with a clear error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .statistics import psi_edges

REFERENCE_FILE, HELDOUT_FILE, SERIES_FILE = "reference.npy", "heldout.npy", "series.npy"
METADATA_FILE = "reference.json"
ARRAYS = (REFERENCE_FILE, HELDOUT_FILE, SERIES_FILE)
FORMAT = 2


class InvalidReference(ValueError):
    """The reference is missing, tampered with, or does not fit the detector's settings."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Reference:
    rows: np.ndarray  # [n, features] float32, raw feature values
    heldout: np.ndarray  # [m, features] rows of the same period, not in `rows`
    series: np.ndarray  # [k, features] every row of the period, in order, instrument after instrument
    metadata: dict

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.metadata["features"])

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.metadata["mean"], dtype=np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.metadata["std"], dtype=np.float32)

    @property
    def psi_edges(self) -> np.ndarray:
        return np.asarray(self.metadata["psi_edges"], dtype=np.float64)

    def segments(self) -> list[np.ndarray]:
        """``series`` cut into each instrument's consecutive rows: a window never spans two instruments."""
        ends = np.cumsum(list(self.metadata["series_instruments"].values()))
        return np.split(self.series, ends[:-1])

    def standardise(self, rows: np.ndarray) -> np.ndarray:
        """Rows in the reference's standard units; a value the features could not compute becomes the mean (0),
        as the LSTMs' scaler makes it."""
        scaled = (np.asarray(rows, np.float32) - self.mean) / self.std
        scaled[np.isnan(scaled)] = 0.0
        return scaled.astype(np.float32)

    @property
    def online(self) -> dict:
        """``ert``, ``window_sizes`` and ``thresholds`` of the online detector, computed when this was built."""
        return self.metadata["online"]

    @classmethod
    def load(cls, folder: str | Path) -> Reference:
        folder = Path(folder)
        paths = {name: folder / name for name in (*ARRAYS, METADATA_FILE)}
        missing = [name for name, path in paths.items() if not path.exists()]
        if missing:
            raise InvalidReference(f"{folder}: drift reference incomplete, missing {missing}; build it with "
                                   "`market-ab reference`")
        metadata = json.loads(paths[METADATA_FILE].read_text())
        if metadata.get("format") != FORMAT:
            raise InvalidReference(f"{folder}: reference format {metadata.get('format')!r}, expected {FORMAT}; "
                                   "rebuild it with `market-ab reference`")
        for name in ARRAYS:
            if _sha256(paths[name]) != metadata["sha256"][name]:
                raise InvalidReference(f"{folder}/{name} does not match the SHA-256 in {METADATA_FILE}: it was "
                                       "changed after the reference was built; rebuild it with `market-ab reference`")
        arrays = [np.load(paths[name], allow_pickle=False) for name in ARRAYS]
        width = len(metadata["features"])
        if any(a.ndim != 2 or a.shape[1] != width for a in arrays):
            raise InvalidReference(f"{folder}: arrays of shape {[a.shape for a in arrays]} do not all hold {width} "
                                   "features")
        if sum(metadata["series_instruments"].values()) != len(arrays[2]):
            raise InvalidReference(f"{folder}: {SERIES_FILE} holds {len(arrays[2])} rows, the instruments "
                                   f"{metadata['series_instruments']} add up to another number")
        return cls(*arrays, metadata)


def write_reference(folder: str | Path, rows: np.ndarray, heldout: np.ndarray, series: dict[str, np.ndarray],
                    features: tuple[str, ...], source: dict, online: dict) -> Reference:
    """Write the arrays and their metadata; ``series`` maps each instrument to its rows of the period in order,
    ``source`` says where the rows came from (period, instruments, seed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, heldout = np.ascontiguousarray(rows, np.float32), np.ascontiguousarray(heldout, np.float32)
    np.save(folder / REFERENCE_FILE, rows, allow_pickle=False)
    np.save(folder / HELDOUT_FILE, heldout, allow_pickle=False)
    np.save(folder / SERIES_FILE, np.concatenate(list(series.values())).astype(np.float32), allow_pickle=False)
    std = rows.std(axis=0)
    metadata = {
        "format": FORMAT,
        "features": list(features),
        "rows": len(rows),
        "heldout_rows": len(heldout),
        "series_instruments": {name: len(values) for name, values in series.items()},
        "source": source,
        "mean": rows.mean(axis=0).tolist(),
        "std": np.where(std > 0, std, 1.0).tolist(),
        "psi_edges": psi_edges(rows).tolist(),
        "online": online,
        "sha256": {name: _sha256(folder / name) for name in ARRAYS},
    }
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
    return Reference.load(folder)
