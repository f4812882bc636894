"""The drift detector's reference: arrays plus JSON beside the model, so loading never unpickles anything.

``reference.npy`` holds the reference feature rows, ``heldout.npy`` rows of the same period kept out of it
(for the false-alarm evidence), and ``reference.json`` the feature names, where the rows came from, the
standardisation and PSI bins derived from them, the online detector's thresholds, the series calibration,
and a SHA-256 of each array. Loading checks all of it: a missing, tampered or inconsistent reference fails
with a clear error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .statistics import psi_edges

REFERENCE_FILE, HELDOUT_FILE, METADATA_FILE = "reference.npy", "heldout.npy", "reference.json"
FORMAT = 1


class ReferenceError(ValueError):
    """The reference is missing, tampered with, or does not fit the detector's settings."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Reference:
    rows: np.ndarray  # [n, features] float32, raw feature values
    heldout: np.ndarray  # [m, features] rows of the same period, not in `rows`
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

    @property
    def series_calibration(self) -> dict | None:
        """Window statistics of the reference period's consecutive rows (``detectors.calibration``), if built."""
        return self.metadata.get("series_calibration")

    @property
    def online(self) -> dict:
        """``ert``, ``window_sizes`` and ``thresholds`` of the online detector, computed when this was built."""
        return self.metadata["online"]

    @classmethod
    def load(cls, folder: str | Path) -> Reference:
        folder = Path(folder)
        paths = {name: folder / name for name in (REFERENCE_FILE, HELDOUT_FILE, METADATA_FILE)}
        missing = [name for name, path in paths.items() if not path.exists()]
        if missing:
            raise ReferenceError(f"{folder}: drift reference incomplete, missing {missing}; build it with "
                                 "`market-ab reference`")
        metadata = json.loads(paths[METADATA_FILE].read_text())
        if metadata.get("format") != FORMAT:
            raise ReferenceError(f"{folder}: reference format {metadata.get('format')!r}, expected {FORMAT}")
        for name in (REFERENCE_FILE, HELDOUT_FILE):
            if _sha256(paths[name]) != metadata["sha256"][name]:
                raise ReferenceError(f"{folder}/{name} does not match the SHA-256 in {METADATA_FILE}: it was changed "
                                     "after the reference was built; rebuild it with `market-ab reference`")
        rows = np.load(paths[REFERENCE_FILE], allow_pickle=False)
        heldout = np.load(paths[HELDOUT_FILE], allow_pickle=False)
        width = len(metadata["features"])
        if rows.ndim != 2 or rows.shape[1] != width or heldout.ndim != 2 or heldout.shape[1] != width:
            raise ReferenceError(f"{folder}: arrays of shape {rows.shape} and {heldout.shape} do not hold "
                                 f"{width} features")
        return cls(rows, heldout, metadata)


def write_reference(folder: str | Path, rows: np.ndarray, heldout: np.ndarray, features: tuple[str, ...],
                    source: dict, online: dict, series_calibration: dict | None = None) -> Reference:
    """Write the arrays and their metadata; ``source`` says where the rows came from (period, instruments, seed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, heldout = np.ascontiguousarray(rows, np.float32), np.ascontiguousarray(heldout, np.float32)
    np.save(folder / REFERENCE_FILE, rows, allow_pickle=False)
    np.save(folder / HELDOUT_FILE, heldout, allow_pickle=False)
    std = rows.std(axis=0)
    metadata = {
        "format": FORMAT,
        "features": list(features),
        "rows": len(rows),
        "heldout_rows": len(heldout),
        "source": source,
        "mean": rows.mean(axis=0).tolist(),
        "std": np.where(std > 0, std, 1.0).tolist(),
        "psi_edges": psi_edges(rows).tolist(),
        "online": online,
        "series_calibration": series_calibration,
        "sha256": {REFERENCE_FILE: _sha256(folder / REFERENCE_FILE), HELDOUT_FILE: _sha256(folder / HELDOUT_FILE)},
    }
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
    return Reference.load(folder)
