"""Real daily OHLCV that ships inside installed packages: nothing is downloaded.

S&P 500 and NASDAQ Composite (1999-2018) and the VIX close (2014-2018) come from
``arch.data``; GOOG (2004-2013) comes from ``backtesting.test``.
"""

from __future__ import annotations

import warnings
from functools import cache

import pandas as pd

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")
INSTRUMENTS = ("sp500", "nasdaq", "goog")


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.rename(columns=str.lower)[list(OHLCV_COLUMNS)].astype("float64")
    frame.index = pd.DatetimeIndex(frame.index).tz_localize(None).normalize()
    frame.index.name = "date"
    # Fill forward only: back-filling would copy the future into the past.
    return frame.sort_index().ffill().dropna()


def load_instrument(name: str) -> pd.DataFrame:
    """Daily OHLCV of one instrument, oldest row first, columns ``OHLCV_COLUMNS``."""
    return _load_instrument(name).copy()


@cache
def _load_instrument(name: str) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "sp500":
            from arch.data import sp500

            frame = sp500.load()
        elif name == "nasdaq":
            from arch.data import nasdaq

            frame = nasdaq.load()
        elif name == "goog":
            from backtesting.test import GOOG

            frame = GOOG
        else:
            raise ValueError(f"unknown instrument {name!r}; expected one of {INSTRUMENTS}")
    return _normalise(frame)


@cache
def load_vix() -> pd.Series:
    """Daily VIX close, 2014-2018."""
    from arch.data import vix

    series = vix.load()["vix"].astype("float64")
    series.index = pd.DatetimeIndex(series.index).normalize()
    return series.sort_index().dropna()  # the source is on a business-day calendar: holidays are NaN


def load_all() -> dict[str, pd.DataFrame]:
    return {name: load_instrument(name) for name in INSTRUMENTS}


SOURCES = {
    "sp500": "`arch.data.sp500` (^GSPC daily OHLCV)",
    "nasdaq": "`arch.data.nasdaq` (^IXIC daily OHLCV)",
    "goog": "`backtesting.test.GOOG` (daily OHLCV)",
    "vix": "`arch.data.vix` (VIX close; holidays dropped; the regime router's optional `vix` input)",
}


def describe() -> dict[str, dict]:
    """Rows and date range of every series, as the loader returns them (the README's data table)."""
    series = {**load_all(), "vix": load_vix()}
    return {name: {"source": SOURCES[name], "rows": len(values), "first": str(values.index[0].date()),
                   "last": str(values.index[-1].date())} for name, values in series.items()}
