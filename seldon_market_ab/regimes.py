"""Market regimes, defined once: training weights the specialists with them and the
regime router routes with them.

A row's regime uses only the trailing window of closes: annualised realised
volatility over ``volatility_window`` days (or the VIX, when one is given) decides
``high_volatility``; otherwise the log return over ``trend_window`` days decides
``bull``, ``bear`` or ``sideways``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numba import njit

from . import rolling
from .features import TRADING_DAYS

REGIMES: tuple[str, ...] = ("high_volatility", "bull", "bear", "sideways")


@dataclass(frozen=True)
class RegimeThresholds:
    volatility: float = 0.25  # annualised realised volatility
    vix: float = 25.0  # VIX level, used instead of realised volatility when given
    bull_trend: float = 0.04  # log return over the trend window
    bear_trend: float = -0.04
    volatility_window: int = 20
    trend_window: int = 50

    @classmethod
    def from_mapping(cls, values: dict | None) -> RegimeThresholds:
        values = dict(values or {})
        known = set(asdict(cls()))
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown regime thresholds {sorted(unknown)}; expected some of {sorted(known)}")
        types = {name: type(value) for name, value in asdict(cls()).items()}
        return cls(**{name: types[name](value) for name, value in values.items()})

    @property
    def lookback(self) -> int:
        """Closes a window needs to classify its last row."""
        return max(self.volatility_window, self.trend_window) + 1


@njit(cache=True, error_model="numpy")
def _indicators(close, volatility_window, trend_window):
    log_close = np.log(close)
    volatility = rolling.rolling_std(rolling.diff(log_close), volatility_window, 0) * np.sqrt(TRADING_DAYS)
    return volatility, log_close - rolling.lag(log_close, trend_window)


def regime_indicators(close: np.ndarray, thresholds: RegimeThresholds = RegimeThresholds()):
    """Realised volatility and trend per row of ``close [..., time]`` (NaN during warm-up)."""
    close = np.asarray(close, dtype=np.float64)
    rows = np.ascontiguousarray(close.reshape(-1, close.shape[-1]))
    pairs = [_indicators(row, thresholds.volatility_window, thresholds.trend_window) for row in rows]
    volatility = np.stack([p[0] for p in pairs]).reshape(close.shape)
    trend = np.stack([p[1] for p in pairs]).reshape(close.shape)
    return volatility, trend


def classify(volatility, trend, vix=None, thresholds: RegimeThresholds = RegimeThresholds()) -> np.ndarray:
    """Regime index into ``REGIMES`` for each element; -1 where an indicator is missing."""
    volatility, trend = np.asarray(volatility, dtype=float), np.asarray(trend, dtype=float)
    if vix is not None:
        volatile = np.asarray(vix, dtype=float) > thresholds.vix
    else:
        volatile = volatility > thresholds.volatility
    regime = np.select(
        [volatile, trend > thresholds.bull_trend, trend < thresholds.bear_trend],
        [REGIMES.index("high_volatility"), REGIMES.index("bull"), REGIMES.index("bear")],
        default=REGIMES.index("sideways"),
    )
    missing = np.isnan(trend) | (np.isnan(volatility) if vix is None else np.isnan(np.asarray(vix, dtype=float)))
    return np.where(missing, -1, regime)


def regime_series(close: np.ndarray, vix=None, thresholds: RegimeThresholds = RegimeThresholds()) -> np.ndarray:
    """Regime index of every row of ``close [..., time]``."""
    volatility, trend = regime_indicators(close, thresholds)
    return classify(volatility, trend, vix, thresholds)
