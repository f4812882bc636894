"""Rolling-window building blocks, compiled with numba, for ``features`` and ``regimes``.

Every output row is computed from a fixed number of past rows, in a fixed order, with no state
carried from one row to the next (no running sums, no recursive averages). That is what makes a
value bit-for-bit the same whether it is computed on a whole history or on any window that holds
its lookback. A row whose lookback is incomplete, or holds a NaN, is NaN.

Functions take and return one-dimensional float64 arrays. ``start`` is the first row wanted:
rows before it are left NaN, so that serving computes only the rows a model reads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

EPS = 1e-12  # a denominator closer to zero than this makes a ratio undefined (NaN)


@njit(cache=True, error_model="numpy")
def nans(n):
    out = np.empty(n)
    out[:] = np.nan
    return out


@njit(cache=True, error_model="numpy")
def _window_sum(x, first, length):
    """Sum of ``x[first:first + length]`` with four accumulators by position in the window: the same
    order wherever the window lies, and four independent chains for the processor."""
    a0 = a1 = a2 = a3 = 0.0
    k = 0
    while k + 4 <= length:
        a0 += x[first + k]
        a1 += x[first + k + 1]
        a2 += x[first + k + 2]
        a3 += x[first + k + 3]
        k += 4
    while k < length:
        a0 += x[first + k]
        k += 1
    return (a0 + a1) + (a2 + a3)


@njit(cache=True, error_model="numpy")
def _window_dot(x, first, weights):
    a0 = a1 = a2 = a3 = 0.0
    length = len(weights)
    k = 0
    while k + 4 <= length:
        a0 += x[first + k] * weights[k]
        a1 += x[first + k + 1] * weights[k + 1]
        a2 += x[first + k + 2] * weights[k + 2]
        a3 += x[first + k + 3] * weights[k + 3]
        k += 4
    while k < length:
        a0 += x[first + k] * weights[k]
        k += 1
    return (a0 + a1) + (a2 + a3)


@njit(cache=True, error_model="numpy")
def rolling_sum(x, window, start):
    out = nans(len(x))
    for t in range(max(window - 1, start), len(x)):
        out[t] = _window_sum(x, t - window + 1, window)
    return out


@njit(cache=True, error_model="numpy")
def rolling_mean(x, window, start):
    out = nans(len(x))
    for t in range(max(window - 1, start), len(x)):
        out[t] = _window_sum(x, t - window + 1, window) / window
    return out


@njit(cache=True, error_model="numpy")
def rolling_std(x, window, start):
    """Population standard deviation (ddof 0), two passes over each window."""
    out = nans(len(x))
    squares = np.empty(window)
    for t in range(max(window - 1, start), len(x)):
        first = t - window + 1
        mean = _window_sum(x, first, window) / window
        for k in range(window):
            squares[k] = (x[first + k] - mean) * (x[first + k] - mean)
        out[t] = np.sqrt(_window_sum(squares, 0, window) / window)
    return out


@njit(cache=True, error_model="numpy")
def rolling_mean_absolute_deviation(x, window, start):
    """Mean of ``|x - mean(window)|`` over each window (the CCI's deviation)."""
    out = nans(len(x))
    deviations = np.empty(window)
    for t in range(max(window - 1, start), len(x)):
        first = t - window + 1
        mean = _window_sum(x, first, window) / window
        for k in range(window):
            deviations[k] = abs(x[first + k] - mean)
        out[t] = _window_sum(deviations, 0, window) / window
    return out


@njit(cache=True, error_model="numpy")
def rolling_max(x, window, start):
    out = nans(len(x))
    for t in range(max(window - 1, start), len(x)):
        best = x[t - window + 1]
        for k in range(t - window + 1, t + 1):
            if np.isnan(x[k]):
                best = np.nan
                break
            best = max(best, x[k])
        out[t] = best
    return out


@njit(cache=True, error_model="numpy")
def rolling_min(x, window, start):
    out = nans(len(x))
    for t in range(max(window - 1, start), len(x)):
        best = x[t - window + 1]
        for k in range(t - window + 1, t + 1):
            if np.isnan(x[k]):
                best = np.nan
                break
            best = min(best, x[k])
        out[t] = best
    return out


@njit(cache=True, error_model="numpy")
def ewm(x, alpha, length, start):
    """Exponential average with weights truncated after ``length`` rows (a finite lookback)."""
    weights = np.empty(length)
    weights[length - 1] = 1.0  # the newest row; older rows decay by (1 - alpha) each
    for k in range(length - 2, -1, -1):
        weights[k] = weights[k + 1] * (1.0 - alpha)
    weights /= _window_sum(weights, 0, length)
    out = nans(len(x))
    for t in range(max(length - 1, start), len(x)):
        out[t] = _window_dot(x, t - length + 1, weights)
    return out


@njit(cache=True, error_model="numpy")
def ema(x, span, start):
    return ewm(x, 2.0 / (span + 1.0), 3 * span, start)


@njit(cache=True, error_model="numpy")
def wilder(x, period, start):
    return ewm(x, 1.0 / period, 3 * period, start)


@njit(cache=True, error_model="numpy")
def lag(x, periods):
    out = nans(len(x))
    out[periods:] = x[:len(x) - periods]
    return out


@njit(cache=True, error_model="numpy")
def diff(x):
    """``x[t] - x[t - 1]``; the first row is NaN."""
    out = nans(len(x))
    out[1:] = x[1:] - x[:-1]
    return out


@njit(cache=True, error_model="numpy")
def ratio(numerator, denominator):
    out = np.empty(len(numerator))
    for t in range(len(numerator)):
        out[t] = numerator[t] / denominator[t] if abs(denominator[t]) >= EPS else np.nan
    return out


@njit(cache=True, error_model="numpy")
def positive_part(x):
    """``max(x, 0)``, NaN where ``x`` is NaN."""
    out = np.empty(len(x))
    for t in range(len(x)):
        out[t] = x[t] if x[t] > 0 or np.isnan(x[t]) else 0.0
    return out


@njit(cache=True, error_model="numpy")
def fmax(a, b):
    """Element-wise maximum that ignores a NaN on one side (``numpy.fmax``)."""
    out = np.empty(len(a))
    for t in range(len(a)):
        if np.isnan(a[t]):
            out[t] = b[t]
        elif np.isnan(b[t]):
            out[t] = a[t]
        else:
            out[t] = max(a[t], b[t])
    return out
