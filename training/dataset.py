"""Per-instrument sequences with a chronological, gapped train/validation/test split.

Sequences never mix instruments. A sample ending at row ``t`` has features of rows
``t - sequence_length + 1 .. t`` and label ``close[t + 1] > close[t]``. The first
``gap`` samples of validation and test are dropped so that no training label lies
inside a later split's inputs.

A walk-forward split (``SplitDates.walk_forward``) is what a retraining at a cut date can see: no training or
validation sample uses a row after the cut, its label's row included, and the test period is the days after it, as
they would arrive once the model is deployed (no gap: a deployed model answers the day after its cut).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from seldon_market_ab.features import WARMUP, compute_features
from seldon_market_ab.regimes import REGIMES, regime_series

from .data import INSTRUMENTS, load_instrument

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitDates:
    validation_start: str = "2010-01-01"
    test_start: str = "2012-01-01"
    gap: int = 30  # samples dropped at the start of validation and of test
    cut: str | None = None  # walk-forward: the last day any training or validation row, label included, may be
    test_end: str | None = None  # the test period ends before this day (None: at the end of the data)

    @classmethod
    def walk_forward(cls, cut: str, validation_years: int = 2, test_end: str | None = None) -> SplitDates:
        """Training up to ``validation_years`` before ``cut``, validation to ``cut``, test from the day after.

        >>> SplitDates.walk_forward("2015-06-30")
        SplitDates(validation_start='2013-06-30', test_start='2015-07-01', gap=30, cut='2015-06-30', test_end=None)
        """
        day = pd.Timestamp(cut)
        return cls(str((day - pd.DateOffset(years=validation_years)).date()),
                   str((day + pd.Timedelta(days=1)).date()), cut=str(day.date()), test_end=test_end)


@dataclass
class Samples:
    """Samples of one split, all instruments stacked (each sequence from one instrument)."""

    features: np.ndarray  # [n, sequence_length, n_features], raw (unscaled)
    label: np.ndarray  # [n] 1 if the next close is above the last close
    next_return: np.ndarray  # [n] simple return from the last close to the next
    regime: np.ndarray  # [n] index into regimes.REGIMES of the last row
    instrument: np.ndarray  # [n] instrument name
    date: np.ndarray  # [n] date of the last row
    label_date: np.ndarray  # [n] date of the row the label is read from (the next row)
    ohlcv_end: np.ndarray  # [n] row index of the last row in the instrument's frame

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, mask: np.ndarray) -> Samples:
        return Samples(**{name: value[mask] for name, value in vars(self).items()})

    def summary(self) -> dict:
        out = {}
        for name in dict.fromkeys(self.instrument):
            dates = self.date[self.instrument == name]
            out[name] = {"n": int(len(dates)), "first": str(dates.min())[:10], "last": str(dates.max())[:10]}
        return out


@dataclass
class MarketDataset:
    sequence_length: int
    dates: SplitDates = field(default_factory=SplitDates)
    instruments: tuple[str, ...] = INSTRUMENTS

    def __post_init__(self):
        parts = {split: [] for split in SPLITS}
        for name in self.instruments:
            for split, samples in self._instrument_samples(name).items():
                parts[split].append(samples)
        self.splits = {
            split: Samples(**{key: np.concatenate([vars(s)[key] for s in chunks]) for key in vars(chunks[0])})
            for split, chunks in parts.items()
        }

    def __getitem__(self, split: str) -> Samples:
        return self.splits[split]

    def _instrument_samples(self, name: str) -> dict[str, Samples]:
        frame = load_instrument(name)
        close = frame["close"].to_numpy()
        features = compute_features(frame.to_numpy())
        ends = np.arange(WARMUP + self.sequence_length - 1, len(frame) - 1)
        windows = sliding_window_view(features, self.sequence_length, axis=0)  # [T-S+1, F, S]
        all_samples = Samples(
            features=windows[ends - self.sequence_length + 1].transpose(0, 2, 1).astype(np.float32),
            label=(close[ends + 1] > close[ends]).astype(np.float32),
            next_return=close[ends + 1] / close[ends] - 1.0,
            regime=regime_series(close)[ends],
            instrument=np.full(len(ends), name),
            date=frame.index.to_numpy()[ends],
            label_date=frame.index.to_numpy()[ends + 1],
            ohlcv_end=ends,
        )
        dates = self.dates
        validation_start, test_start = pd.Timestamp(dates.validation_start), pd.Timestamp(dates.test_start)
        split_of = np.select([all_samples.date < validation_start, all_samples.date < test_start], [0, 1], 2)
        if dates.cut is not None:  # a label read after the cut is not known at the cut
            split_of[(split_of < 2) & (all_samples.label_date > pd.Timestamp(dates.cut))] = -1
        if dates.test_end is not None:
            split_of[(split_of == 2) & (all_samples.label_date >= pd.Timestamp(dates.test_end))] = -1
        out = {}
        for index, split in enumerate(SPLITS):
            positions = np.flatnonzero(split_of == index)
            if index == 1 or (index == 2 and dates.cut is None):
                positions = positions[dates.gap:]
            if len(positions):
                out[split] = all_samples.subset(positions)
        return out


def ohlcv_windows(instrument: str, ends: np.ndarray, rows: int) -> np.ndarray:
    """Raw OHLCV windows ``[len(ends), rows, 5]`` of ``instrument`` ending at row indices ``ends``."""
    values = load_instrument(instrument).to_numpy()
    ends = np.asarray(ends)
    if (ends < rows - 1).any():
        raise ValueError(f"windows of {rows} rows need end rows >= {rows - 1}")
    return np.stack([values[end - rows + 1:end + 1] for end in ends]).astype(np.float32)


@dataclass(frozen=True)
class MarketDay:
    """One instrument-day to predict: the window of OHLCV up to it, and what happened next."""

    date: str
    instrument: str
    ohlcv: np.ndarray  # [rows, 5], raw prices, the last row the day itself
    next_return: float  # close to next close
    regime: str  # the day's market regime (``seldon_market_ab.regimes``), from prices up to it


def heldout_days(instruments: tuple[str, ...], count: int, rows: int) -> list[MarketDay]:
    """The last ``count`` days of each instrument that have a next day, in date order across instruments (one
    sequence of trading days, as traffic would arrive), each with its ``rows``-row window."""
    days = []
    for instrument in instruments:
        frame = load_instrument(instrument)
        ends = np.arange(len(frame) - 1 - count, len(frame) - 1)
        close = frame["close"].to_numpy()
        windows = ohlcv_windows(instrument, ends, rows)
        regimes = regime_series(close)
        days += [MarketDay(str(frame.index[end])[:10], instrument, window, float(close[end + 1] / close[end] - 1),
                           REGIMES[regimes[end]]) for end, window in zip(ends, windows, strict=True)]
    return sorted(days, key=lambda day: (day.date, day.instrument))
