"""Feature standardisation, fit on training rows only and stored in ``metadata.json``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StandardScaler:
    mean: np.ndarray
    scale: np.ndarray
    clip: float = 8.0  # bounds the influence of a single extreme day

    @classmethod
    def fit(cls, rows: np.ndarray, clip: float = 8.0) -> StandardScaler:
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, np.shape(rows)[-1])
        scale = rows.std(axis=0)
        return cls(rows.mean(axis=0), np.where(scale > 0, scale, 1.0), clip)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Standardise and clip. A feature undefined for a window (the volume z-score of constant volume,
        say) becomes the training mean (0); training rows never have one."""
        scaled = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        scaled[np.isnan(scaled)] = 0.0  # (np.nan_to_num does the same, four times slower)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "clip": self.clip}

    @classmethod
    def from_dict(cls, values: dict) -> StandardScaler:
        return cls(np.asarray(values["mean"], dtype=np.float64), np.asarray(values["scale"], dtype=np.float64),
                   float(values["clip"]))
