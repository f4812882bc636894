"""Drift statistics that alibi-detect does not have: the population stability index, and the ensemble vote.

Pure numpy and scipy, so the same functions serve the runtime, the evidence script and the tests.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2

PSI_BINS = 10
PSI_MODERATE, PSI_MAJOR = 0.1, 0.25  # the usual bands: below 0.1 stable, 0.1 to 0.25 moderate, above major
PSI_FLOOR = 1e-4  # an empty bin counts as this share, so that the logarithm stays finite
PSEUDO_COUNT = 0.5  # added to every bin's count (Jeffreys' prior)


def psi_edges(reference: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    """Inner bin edges ``[bins - 1, features]``: the reference's quantiles, so each bin holds an equal share.

    Examples
    --------
    >>> psi_edges(np.arange(100.0)[:, None], bins=4).ravel().tolist()
    [24.75, 49.5, 74.25]
    """
    return np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1], axis=0)


def bin_shares(rows: np.ndarray, edges: np.ndarray, pseudo_count: float = PSEUDO_COUNT) -> np.ndarray:
    """Share of ``rows [n, features]`` in each bin ``[bins, features]`` (NaN rows are left out), with
    ``pseudo_count`` added to every bin: an empty bin in a small window would otherwise dominate the index.

    >>> bin_shares(np.array([[0.0], [0.0], [2.0]]), np.array([[1.0]]), pseudo_count=0).ravel().tolist()
    [0.6666666666666666, 0.3333333333333333]
    """
    bins = len(edges) + 1
    shares = np.empty((bins, rows.shape[1]))
    for j in range(rows.shape[1]):
        column = rows[:, j][~np.isnan(rows[:, j])]
        counts = np.bincount(np.searchsorted(edges[:, j], column, side="right"), minlength=bins) + pseudo_count
        shares[:, j] = counts / max(counts.sum(), 1)
    return shares


def psi(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Population stability index per feature, ``Σ (a - e) ln(a / e)`` over bins, from bin shares.

    Examples
    --------
    >>> e = np.full((4, 1), 0.25)
    >>> float(psi(e, e)[0])
    0.0
    >>> round(float(psi(e, np.array([[0.1], [0.2], [0.3], [0.4]]))[0]), 3)
    0.228
    """
    e, a = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    return np.sum((a - e) * np.log(a / e), axis=0)


def psi_p_values(values: np.ndarray, window_rows: int, reference_rows: int, bins: int = PSI_BINS) -> np.ndarray:
    """P-values of PSI per feature: scaled by ``n m / (n + m)``, the index (a symmetric Kullback-Leibler divergence
    between bin shares) is asymptotically chi-square with ``bins - 1`` degrees of freedom when nothing drifted.

    The fixed 0.1 / 0.25 bands ignore the sample size: 60 rows in 10 bins give an expected PSI near 0.15 with no
    drift at all. The bands stay as a description; the verdict uses these p-values.

    Examples
    --------
    >>> p = psi_p_values(np.array([0.05, 0.5]), window_rows=250, reference_rows=1000)
    >>> [round(float(v), 4) for v in p]
    [0.3505, 0.0]
    """
    return chi2.sf(values * window_rows * reference_rows / (window_rows + reference_rows), bins - 1)


def ks_statistics(reference_sorted: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Two-sample Kolmogorov-Smirnov statistic per feature, ``max |F_ref - F_window|`` over the pooled values:
    what alibi-detect's ``KSDrift`` reports as the distance (scipy's ``ks_2samp``), without a scipy call per feature
    (the evidence's comparison with the statistic the series calibration used before).

    >>> ks_statistics(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([[2.5], [3.5]])).tolist()
    [0.75]
    """
    n, m = len(reference_sorted), len(window)
    window = np.sort(window, axis=0)
    out = np.empty(window.shape[1])
    for j in range(window.shape[1]):
        pooled = np.concatenate([reference_sorted[:, j], window[:, j]])
        out[j] = np.abs(np.searchsorted(reference_sorted[:, j], pooled, side="right") / n
                        - np.searchsorted(window[:, j], pooled, side="right") / m).max()
    return out


def ensemble(verdicts: dict[str, bool], k: int) -> bool:
    """Drift when at least ``k`` of the tests say so.

    Examples
    --------
    >>> ensemble({"ks": True, "cvm": True, "mmd": False}, k=2)
    True
    >>> ensemble({"ks": True, "cvm": False, "mmd": False}, k=2)
    False
    """
    return sum(bool(v) for v in verdicts.values()) >= k


def break_ties(rows: np.ndarray, scale: np.ndarray, seed: int | np.random.Generator = 0) -> np.ndarray:
    """``rows`` plus uniform noise far below each feature's scale (a millionth), drawn with a fixed seed (or from
    a generator, for a stream of rows).

    Rank tests such as Cramér-von Mises assume continuous data; a feature with many equal values (a price gap of
    exactly zero on a quarter of the days) breaks their p-values. Random tie-breaking restores them and moves no
    value by more than the noise.
    """
    rng = np.random.default_rng(seed)
    return (rows + rng.uniform(-0.5, 0.5, rows.shape) * (scale * 1e-6)).astype(rows.dtype)
