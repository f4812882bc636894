"""The shared feature module: enough indicators, causal, and identical on a request window and on full history."""

import numpy as np
import pytest

from seldon_market_ab.features import FEATURE_NAMES, WARMUP, compute_features, min_window
from seldon_market_ab.training.data import INSTRUMENTS, load_instrument

from ..conftest import SEQUENCE_LENGTH


@pytest.fixture(scope="module")
def sp500():
    return load_instrument("sp500").to_numpy()


def test_at_least_25_named_indicators():
    assert len(FEATURE_NAMES) >= 25
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    for family in ("rsi", "macd", "bb_", "atr", "stoch", "williams", "cci", "roc", "adx", "vol_", "obv", "volume_z"):
        assert any(name.startswith(family) for name in FEATURE_NAMES), family


@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_complete_and_finite_after_warmup_on_real_data(instrument):
    features = compute_features(load_instrument(instrument).to_numpy())
    assert np.isnan(features[:WARMUP]).any(axis=1).all()  # warm-up rows are marked missing, not invented
    assert np.isfinite(features[WARMUP:]).all()


def test_changing_later_rows_leaves_earlier_rows_unchanged(sp500):
    reference = compute_features(sp500)
    rng = np.random.default_rng(1)
    for t in rng.integers(WARMUP, len(sp500) - 2, size=25):
        changed = sp500.copy()
        changed[t + 1:] *= rng.uniform(0.5, 1.5, size=changed[t + 1:].shape)  # rewrite the whole future
        changed[t + 1:, 1] = changed[t + 1:, [0, 1, 3]].max(axis=1)
        changed[t + 1:, 2] = changed[t + 1:, [0, 2, 3]].min(axis=1)
        after = compute_features(changed)
        np.testing.assert_array_equal(after[: t + 1], reference[: t + 1])
        assert not np.allclose(after[t + 1:], reference[t + 1:], equal_nan=True)  # the change did reach later rows


@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_request_window_gives_the_training_features_bit_for_bit(instrument):
    """A window of ``min_window`` rows yields exactly the rows training computed on the full history."""
    ohlcv = load_instrument(instrument).to_numpy()
    full = compute_features(ohlcv)
    sequence = SEQUENCE_LENGTH
    rows = min_window(sequence)
    ends = np.arange(rows - 1, len(ohlcv), 53)
    windows = np.stack([ohlcv[end - rows + 1:end + 1] for end in ends])
    served = compute_features(windows)[:, -sequence:]
    expected = np.stack([full[end - sequence + 1:end + 1] for end in ends])
    np.testing.assert_array_equal(served, expected)
    assert np.isfinite(served).all()
    only_read = compute_features(windows, rows=sequence)  # what the runtime computes: the rows the model reads
    np.testing.assert_array_equal(only_read[:, -sequence:], expected)
    assert np.isnan(only_read[:, :-sequence]).all()


def test_one_row_too_few_leaves_a_gap(sp500):
    windows = sp500[None, : min_window(SEQUENCE_LENGTH) - 1]
    assert np.isnan(compute_features(windows)[:, -SEQUENCE_LENGTH:]).any()


def test_rejects_wrong_column_count():
    with pytest.raises(ValueError, match=r"\[..., time, 5\]"):
        compute_features(np.ones((200, 4)))


def test_vix_ships_with_arch():
    from seldon_market_ab.training.data import load_vix

    vix = load_vix()
    assert vix.index.is_monotonic_increasing and len(vix) > 1000
    assert str(vix.index[0].year) == "2014" and (vix > 5).all()
