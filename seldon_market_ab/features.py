"""The one feature module: training and every runtime compute features here.

Every indicator is a function of a fixed number of past rows only (exponential
averages use truncated weights), so the value at row ``t`` computed on the whole
history equals the value computed on any window that ends at ``t`` and is at
least ``WARMUP + 1`` rows long. That is what removes training/serving skew: a
model trained on full histories sees exactly the features the runtime computes
from a request's window.

Arrays are ``[..., time, 5]`` (open, high, low, close, volume); leading axes are
batch axes, and everything is vectorised over them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import rolling as r

TRADING_DAYS = 252

FEATURE_NAMES: tuple[str, ...] = (
    "ret_1", "logret_1", "logret_5", "logret_10", "logret_20", "gap", "intraday_ret", "range_pct",
    "close_location", "vol_5", "vol_10", "vol_20", "vol_60", "parkinson_vol_20", "rsi_14", "macd", "macd_signal",
    "macd_hist", "bb_pct_b", "bb_width", "atr_pct_14", "stoch_k_14", "stoch_d_3", "williams_r_14", "cci_20",
    "roc_10", "momentum_10_atr", "adx_14", "plus_di_14", "minus_di_14", "sma_ratio_5_20", "sma_ratio_20_50",
    "close_sma_50", "volume_z_20", "obv_change_10",
)


@njit(cache=True, error_model="numpy")
def _true_range(high, low, close):
    previous = r.lag(close, 1)
    return r.fmax(high - low, r.fmax(np.abs(high - previous), np.abs(low - previous)))


@njit(cache=True, error_model="numpy")
def _directional_movement(high, low):
    """+DM and -DM; NaN where the move itself is undefined."""
    up = high - r.lag(high, 1)
    down = r.lag(low, 1) - low
    plus, minus = np.empty(len(high)), np.empty(len(high))
    for t in range(len(high)):
        plus[t] = (up[t] if up[t] > down[t] and up[t] > 0 else 0.0) + 0.0 * up[t]
        minus[t] = (down[t] if down[t] > up[t] and down[t] > 0 else 0.0) + 0.0 * down[t]
    return plus, minus


@njit(cache=True, error_model="numpy")
def _series_features(o, h, lo, c, v, out, first):
    """The features of one instrument's rows ``first ..`` into ``out [time, len(FEATURE_NAMES)]``.

    Rows before ``first`` are left NaN; each intermediate series is computed from the first row its
    consumers read (a windowed consumer of length L reads L - 1 rows further back).
    """
    sqrt_year = np.sqrt(TRADING_DAYS)
    log_c = np.log(c)
    log_v = np.log1p(v)
    logret = r.diff(log_c)
    change = r.diff(c)
    macd = r.ratio(r.ema(c, 12, first - 26) - r.ema(c, 26, first - 26), c)  # the signal line reads 27 rows
    macd_signal = r.ema(macd, 9, first)
    sma20, sd20, sma50 = r.rolling_mean(c, 20, first), r.rolling_std(c, 20, first), r.rolling_mean(c, 50, first)
    atr14 = r.wilder(_true_range(h, lo, c), 14, first - 41)  # the ADX smooths DX over 42 rows
    high14, low14 = r.rolling_max(h, 14, first - 2), r.rolling_min(lo, 14, first - 2)  # %D averages 3 rows
    stoch_k = 100.0 * r.ratio(c - low14, high14 - low14)
    typical = (h + lo + c) / 3.0
    plus_dm, minus_dm = _directional_movement(h, lo)
    plus_di = 100.0 * r.ratio(r.wilder(plus_dm, 14, first - 41), atr14)
    minus_di = 100.0 * r.ratio(r.wilder(minus_dm, 14, first - 41), atr14)
    dx = 100.0 * r.ratio(np.abs(plus_di - minus_di), plus_di + minus_di)
    gain, loss = r.wilder(r.positive_part(change), 14, first), r.wilder(r.positive_part(-change), 14, first)

    columns = (
        np.expm1(logret),  # ret_1
        logret,
        log_c - r.lag(log_c, 5),
        log_c - r.lag(log_c, 10),
        log_c - r.lag(log_c, 20),
        r.ratio(o, r.lag(c, 1)) - 1.0,  # gap
        r.ratio(c, o) - 1.0,  # intraday_ret
        r.ratio(h - lo, c),  # range_pct
        r.ratio(c - lo, h - lo),  # close_location
        r.rolling_std(logret, 5, first) * sqrt_year,
        r.rolling_std(logret, 10, first) * sqrt_year,
        r.rolling_std(logret, 20, first) * sqrt_year,
        r.rolling_std(logret, 60, first) * sqrt_year,
        np.sqrt(r.rolling_mean(np.log(r.ratio(h, lo)) ** 2, 20, first) / (4 * np.log(2.0)) * TRADING_DAYS),
        100.0 * r.ratio(gain, gain + loss),  # rsi_14
        macd,
        macd_signal,
        macd - macd_signal,  # macd_hist
        r.ratio(c - (sma20 - 2 * sd20), 4 * sd20),  # bb_pct_b
        r.ratio(4 * sd20, sma20),  # bb_width
        r.ratio(atr14, c),  # atr_pct_14
        stoch_k,
        r.rolling_mean(stoch_k, 3, first),  # stoch_d_3
        -100.0 * r.ratio(high14 - c, high14 - low14),  # williams_r_14
        r.ratio(typical - r.rolling_mean(typical, 20, first),
                0.015 * r.rolling_mean_absolute_deviation(typical, 20, first)),  # cci_20
        100.0 * (r.ratio(c, r.lag(c, 10)) - 1.0),  # roc_10
        r.ratio(c - r.lag(c, 10), atr14),  # momentum_10_atr
        r.wilder(dx, 14, first),  # adx_14
        plus_di,
        minus_di,
        r.ratio(r.rolling_mean(c, 5, first), sma20) - 1.0,  # sma_ratio_5_20
        r.ratio(sma20, sma50) - 1.0,  # sma_ratio_20_50
        r.ratio(c, sma50) - 1.0,  # close_sma_50
        r.ratio(log_v - r.rolling_mean(log_v, 20, first), r.rolling_std(log_v, 20, first)),  # volume_z_20
        r.ratio(r.rolling_sum(np.sign(logret) * v, 10, first), r.rolling_sum(v, 10, first)),  # obv_change_10
    )
    for j in range(len(columns)):
        out[first:, j] = columns[j][first:]
    out[:first, :] = np.nan


@njit(cache=True, error_model="numpy", nogil=True)  # other threads run while it computes
def _batch_features(ohlcv, out, first):
    for i in range(ohlcv.shape[0]):
        columns = [np.ascontiguousarray(ohlcv[i, :, k]) for k in range(5)]
        _series_features(columns[0], columns[1], columns[2], columns[3], columns[4], out[i], first)


def compute_features(ohlcv: np.ndarray, rows: int | None = None) -> np.ndarray:
    """Features ``[..., time, len(FEATURE_NAMES)]`` from OHLCV ``[..., time, 5]``.

    Parameters
    ----------
    ohlcv : numpy.ndarray
        Open, high, low, close, volume in the last axis, oldest row first, raw prices; any leading
        axes are batch axes.
    rows : int, optional
        Compute only the last ``rows`` rows (the ones a model reads); earlier rows are NaN. Each
        computed row is bit for bit what the whole history gives.

    Returns
    -------
    numpy.ndarray
        float64 features in ``FEATURE_NAMES`` order. Rows before ``WARMUP`` are NaN (their lookback
        is incomplete).

    Examples
    --------
    The contract that removes training/serving skew: the last rows of a request window of
    ``min_window(sequence_length)`` rows equal, bit for bit, the rows computed on the whole history.

    >>> rng = np.random.default_rng(0)
    >>> close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    >>> ohlcv = np.stack([close, close * 1.01, close * 0.99, close, rng.uniform(1e6, 2e6, 300)], axis=-1)
    >>> history = compute_features(ohlcv)
    >>> history.shape == (300, len(FEATURE_NAMES))
    True
    >>> window = ohlcv[-min_window(30):]  # what a client sends for a model with sequence length 30
    >>> np.array_equal(compute_features(window)[-30:], history[-30:])
    True
    >>> bool(np.isnan(history[:WARMUP]).any(axis=1).all() and np.isfinite(history[WARMUP:]).all())
    True
    >>> np.array_equal(compute_features(window, rows=30)[-30:], history[-30:])  # only what the model reads
    True
    """
    ohlcv = np.asarray(ohlcv, dtype=np.float64)
    if ohlcv.ndim < 2 or ohlcv.shape[-1] != 5:
        raise ValueError(f"expected OHLCV of shape [..., time, 5], got {ohlcv.shape}")
    batch = np.ascontiguousarray(ohlcv.reshape(-1, *ohlcv.shape[-2:]))
    out = np.empty(batch.shape[:2] + (len(FEATURE_NAMES),))
    _batch_features(batch, out, 0 if rows is None else max(batch.shape[1] - rows, 0))
    return out.reshape(ohlcv.shape[:-1] + (len(FEATURE_NAMES),))


def _warmup() -> int:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
    spread = np.abs(rng.normal(0, 0.005, 400)) * close
    ohlcv = np.stack([close, close + spread, close - spread, close, rng.uniform(1e6, 2e6, 400)], axis=-1)
    complete = ~np.isnan(compute_features(ohlcv)).any(axis=-1)
    return int(np.argmax(complete))


WARMUP: int = _warmup()
"""Rows of history an indicator needs before its first value."""


def min_window(sequence_length: int) -> int:
    """OHLCV rows a request needs for ``sequence_length`` complete feature rows.

    Examples
    --------
    >>> min_window(30) == WARMUP + 30
    True
    """
    return WARMUP + sequence_length
