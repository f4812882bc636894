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
from numpy.lib.stride_tricks import sliding_window_view

_EPS = 1e-12
TRADING_DAYS = 252


def _pad(values: np.ndarray, missing: int) -> np.ndarray:
    """Prefix ``missing`` NaN rows along the last axis."""
    pad = np.full(values.shape[:-1] + (missing,), np.nan)
    return np.concatenate([pad, values], axis=-1)


def _rolling(x: np.ndarray, window: int, reduce) -> np.ndarray:
    """``reduce`` over the trailing ``window`` rows; NaN until ``window`` rows exist."""
    if x.shape[-1] < window:
        return np.full(x.shape, np.nan)
    view = sliding_window_view(x, window, axis=-1)
    return _pad(reduce(view, axis=-1), window - 1)


def _mean(x, window):
    return _rolling(x, window, np.mean)


def rolling_std(x, window):
    return _rolling(x, window, np.std)


def _max(x, window):
    return _rolling(x, window, np.max)


def _min(x, window):
    return _rolling(x, window, np.min)


def _sum(x, window):
    return _rolling(x, window, np.sum)


def _ewm(x: np.ndarray, alpha: float, length: int) -> np.ndarray:
    """Exponential average with weights truncated after ``length`` rows (finite lookback)."""
    weights = (1.0 - alpha) ** np.arange(length)[::-1]
    weights /= weights.sum()
    if x.shape[-1] < length:
        return np.full(x.shape, np.nan)
    return _pad(sliding_window_view(x, length, axis=-1) @ weights, length - 1)


def _ema(x, span):
    return _ewm(x, 2.0 / (span + 1.0), 3 * span)


def _wilder(x, period):
    return _ewm(x, 1.0 / period, 3 * period)


def lag(x: np.ndarray, periods: int) -> np.ndarray:
    return _pad(x[..., :-periods], periods)


def _ratio(numerator, denominator):
    return numerator / np.where(np.abs(denominator) < _EPS, np.nan, denominator)


def _true_range(high, low, close):
    previous = lag(close, 1)
    return np.fmax(high - low, np.fmax(np.abs(high - previous), np.abs(low - previous)))


def _keep_nan(values, like):
    """``values`` with NaN wherever ``like`` is NaN (``np.where`` would turn a missing row into a zero)."""
    return values + 0 * like


def _rsi(close, period=14):
    change = np.diff(close, axis=-1, prepend=np.nan)
    gain = _wilder(_keep_nan(np.where(change > 0, change, 0.0), change), period)
    loss = _wilder(_keep_nan(np.where(change < 0, -change, 0.0), change), period)
    return 100.0 * _ratio(gain, gain + loss)


def _adx(high, low, close, period=14):
    up = high - lag(high, 1)
    down = lag(low, 1) - low
    plus_dm = _keep_nan(np.where((up > down) & (up > 0), up, 0.0), up)
    minus_dm = _keep_nan(np.where((down > up) & (down > 0), down, 0.0), down)
    atr = _wilder(_true_range(high, low, close), period)
    plus_di = 100.0 * _ratio(_wilder(plus_dm, period), atr)
    minus_di = 100.0 * _ratio(_wilder(minus_dm, period), atr)
    dx = 100.0 * _ratio(np.abs(plus_di - minus_di), plus_di + minus_di)
    return _wilder(dx, period), plus_di, minus_di


def _indicators(ohlcv: np.ndarray) -> dict[str, np.ndarray]:
    o, h, lo, c, v = (ohlcv[..., i].astype(np.float64) for i in range(5))
    log_c = np.log(c)
    log_v = np.log1p(v)
    logret = np.diff(log_c, axis=-1, prepend=np.nan)
    ret = np.expm1(logret)

    ema12, ema26 = _ema(c, 12), _ema(c, 26)
    macd = _ratio(ema12 - ema26, c)
    macd_signal = _ema(macd, 9)
    sma20, sd20 = _mean(c, 20), rolling_std(c, 20)
    atr14 = _wilder(_true_range(h, lo, c), 14)
    high14, low14 = _max(h, 14), _min(lo, 14)
    stoch_k = 100.0 * _ratio(c - low14, high14 - low14)
    typical = (h + lo + c) / 3.0
    typical_sma = _mean(typical, 20)
    mean_dev = _rolling(typical, 20, lambda w, axis: np.mean(np.abs(w - w.mean(axis=axis, keepdims=True)), axis=axis))
    adx, plus_di, minus_di = _adx(h, lo, c, 14)
    signed_volume = np.sign(logret) * v

    return {
        "ret_1": ret,
        "logret_1": logret,
        "logret_5": log_c - lag(log_c, 5),
        "logret_10": log_c - lag(log_c, 10),
        "logret_20": log_c - lag(log_c, 20),
        "gap": _ratio(o, lag(c, 1)) - 1.0,
        "intraday_ret": _ratio(c, o) - 1.0,
        "range_pct": _ratio(h - lo, c),
        "close_location": _ratio(c - lo, h - lo),
        "vol_5": rolling_std(logret, 5) * np.sqrt(TRADING_DAYS),
        "vol_10": rolling_std(logret, 10) * np.sqrt(TRADING_DAYS),
        "vol_20": rolling_std(logret, 20) * np.sqrt(TRADING_DAYS),
        "vol_60": rolling_std(logret, 60) * np.sqrt(TRADING_DAYS),
        "parkinson_vol_20": np.sqrt(_mean(np.log(_ratio(h, lo)) ** 2, 20) / (4 * np.log(2)) * TRADING_DAYS),
        "rsi_14": _rsi(c, 14),
        "macd": macd,
        "macd_signal": macd_signal,
        "macd_hist": macd - macd_signal,
        "bb_pct_b": _ratio(c - (sma20 - 2 * sd20), 4 * sd20),
        "bb_width": _ratio(4 * sd20, sma20),
        "atr_pct_14": _ratio(atr14, c),
        "stoch_k_14": stoch_k,
        "stoch_d_3": _mean(stoch_k, 3),
        "williams_r_14": -100.0 * _ratio(high14 - c, high14 - low14),
        "cci_20": _ratio(typical - typical_sma, 0.015 * mean_dev),
        "roc_10": 100.0 * (_ratio(c, lag(c, 10)) - 1.0),
        "momentum_10_atr": _ratio(c - lag(c, 10), atr14),
        "adx_14": adx,
        "plus_di_14": plus_di,
        "minus_di_14": minus_di,
        "sma_ratio_5_20": _ratio(_mean(c, 5), sma20) - 1.0,
        "sma_ratio_20_50": _ratio(sma20, _mean(c, 50)) - 1.0,
        "close_sma_50": _ratio(c, _mean(c, 50)) - 1.0,
        "volume_z_20": _ratio(log_v - _mean(log_v, 20), rolling_std(log_v, 20)),
        "obv_change_10": _ratio(_sum(signed_volume, 10), _sum(v, 10)),
    }


FEATURE_NAMES: tuple[str, ...] = tuple(_indicators(np.ones((200, 5))).keys())


def compute_features(ohlcv: np.ndarray) -> np.ndarray:
    """Features ``[..., time, len(FEATURE_NAMES)]`` from OHLCV ``[..., time, 5]``.

    Parameters
    ----------
    ohlcv : numpy.ndarray
        Open, high, low, close, volume in the last axis, oldest row first, raw prices; any leading
        axes are batch axes.

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
    """
    ohlcv = np.asarray(ohlcv, dtype=np.float64)
    if ohlcv.ndim < 2 or ohlcv.shape[-1] != 5:
        raise ValueError(f"expected OHLCV of shape [..., time, 5], got {ohlcv.shape}")
    indicators = _indicators(ohlcv)
    return np.stack([indicators[name] for name in FEATURE_NAMES], axis=-1)


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
