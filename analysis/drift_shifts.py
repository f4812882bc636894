"""Shifts injected into real OHLCV, to measure what the drift detector can see: pure numpy, one function each.

Every function takes prices ``[time, 5]`` (open, high, low, close, volume) and ``onset``, the first row the shift
touches, and returns new prices; rows before ``onset`` are unchanged. Prices are rebuilt from log returns, so a
shifted stretch is still a price series a feed could send (high the highest of the day, low the lowest).

>>> prices = np.array([[10, 11, 9, 10, 100], [10, 12, 9, 11, 100], [11, 12, 10, 10, 100]], float)
>>> close_only(prices, 1)[1:, :4].tolist()
[[11.0, 11.0, 11.0, 11.0], [10.0, 10.0, 10.0, 10.0]]
>>> stale(prices, 1)[1:].tolist()
[[10.0, 10.0, 10.0, 10.0, 100.0], [10.0, 10.0, 10.0, 10.0, 100.0]]
>>> stuck_bar(prices, 1)[2].tolist() == prices[0].tolist()
True
>>> bool(np.allclose(volatility(prices, 1.0, 1), prices))
True
"""

from __future__ import annotations

import numpy as np

OPEN, HIGH, LOW, CLOSE, VOLUME = range(5)
TRADING_DAYS = 252


def _rebuild(prices: np.ndarray, onset: int, returns: np.ndarray, spreads: np.ndarray) -> np.ndarray:
    """Closes from ``onset`` on rebuilt from daily log ``returns``; open, high and low from their log ``spreads``
    ``[time, 3]`` to the close."""
    out = prices.copy()
    close = prices[onset - 1, CLOSE] * np.exp(np.cumsum(returns))
    out[onset:, CLOSE] = close
    out[onset:, [OPEN, HIGH, LOW]] = close[:, None] * np.exp(spreads)
    return out


def _parts(prices: np.ndarray, onset: int) -> tuple[np.ndarray, np.ndarray]:
    """Daily log returns of the close from ``onset`` on, and the log spreads of open, high and low to the close."""
    log = np.log(prices[:, :4])
    returns = np.diff(log[:, CLOSE])[onset - 1:]
    spreads = log[onset:, [OPEN, HIGH, LOW]] - log[onset:, [CLOSE]]
    return returns, spreads


def volatility(prices: np.ndarray, factor: float, onset: int) -> np.ndarray:
    """Daily moves ``factor`` times as large from ``onset`` on: returns scaled about their mean (the trend stays),
    and the day's range about the close scaled with them."""
    returns, spreads = _parts(prices, onset)
    mean = returns.mean()
    return _rebuild(prices, onset, mean + factor * (returns - mean), factor * spreads)


def drift(prices: np.ndarray, annual_return: float, onset: int) -> np.ndarray:
    """``annual_return`` (log, per year of 252 trading days) added to the trend from ``onset`` on."""
    returns, spreads = _parts(prices, onset)
    return _rebuild(prices, onset, returns + annual_return / TRADING_DAYS, spreads)


def close_only(prices: np.ndarray, onset: int) -> np.ndarray:
    """A feed that sends only the close: open, high and low equal to it from ``onset`` on."""
    out = prices.copy()
    out[onset:, [OPEN, HIGH, LOW]] = out[onset:, [CLOSE]]
    return out


def stale(prices: np.ndarray, onset: int) -> np.ndarray:
    """A feed stuck on one quote from ``onset`` on: the last close before it as open, high, low and close, with
    that day's volume."""
    out = prices.copy()
    out[onset:, [OPEN, HIGH, LOW, CLOSE]] = prices[onset - 1, CLOSE]
    out[onset:, VOLUME] = prices[onset - 1, VOLUME]
    return out


def stuck_bar(prices: np.ndarray, onset: int) -> np.ndarray:
    """A feed that repeats the last whole bar before ``onset`` (open, high, low, close and volume)."""
    out = prices.copy()
    out[onset:] = prices[onset - 1]
    return out


def volume_scale(prices: np.ndarray, factor: float, onset: int) -> np.ndarray:
    """Volume in other units (``factor`` times) from ``onset`` on."""
    out = prices.copy()
    out[onset:, VOLUME] *= factor
    return out
