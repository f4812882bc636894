"""The series tests (detectors/calibration.py) on data whose truth is known, the shifts the evidence injects
(analysis/drift_shifts.py), and the detector's settings around them."""

import numpy as np
import pytest

from seldon_market_ab.analysis import drift_shifts
from seldon_market_ab.detectors.calibration import (
    RANGE,
    VOLUME_Z,
    FeedTest,
    SeriesCalibration,
    ShiftTest,
    View,
    broken_rows,
    summaries,
)
from seldon_market_ab.detectors.settings import IID_TESTS, DriftSettings
from seldon_market_ab.features import FEATURE_NAMES
from seldon_market_ab.settings import SettingsError
from seldon_market_ab.training.data import load_instrument

FEATURES = len(FEATURE_NAMES)


def random_walks(rng, segments=3, rows=1500) -> list[np.ndarray]:
    """Slowly moving features, as market features are: each a smoothed random walk, with ranges and volume
    z-scores a working feed gives."""
    out = []
    for _ in range(segments):
        steps = rng.normal(size=(rows, FEATURES))
        walk = np.cumsum(steps, axis=0) / 20 + rng.normal(scale=0.3, size=(rows, FEATURES))
        walk[:, RANGE] = np.abs(walk[:, RANGE]) + 0.01
        walk[:, VOLUME_Z] = np.clip(walk[:, VOLUME_Z], -3, 3)
        out.append(walk)
    return out


@pytest.fixture(scope="module")
def calibration():
    rng = np.random.default_rng(0)
    return SeriesCalibration(random_walks(rng), lambda rows: np.asarray(rows, np.float32), 30, 90)


def test_summaries_are_each_windows_mean_and_log_spread():
    rows = np.random.default_rng(1).normal(size=(50, 4))
    got = summaries(rows, 7)
    for start in (0, 13, 43):
        window = rows[start:start + 7]
        np.testing.assert_allclose(got[start], np.r_[window.mean(0), np.log(window.std(0) + 0.05)], atol=1e-9)
    assert got.shape == (44, 8)


def test_the_shift_test_flags_its_level_of_the_reference_windows(calibration):
    """In sample, a p-value is the window's rank among the reference windows: the share flagged is the level."""
    shift, _ = calibration.tests(30)
    windows = np.concatenate([summaries(s, 30) for s in calibration._standard])
    p_values = np.array([shift.run(w, 0.05).p_value for w in windows[::7]])
    assert 0.03 <= np.mean(p_values <= 0.05) <= 0.07
    assert 0.4 <= np.median(p_values) <= 0.6


def test_a_window_beyond_every_reference_window_gets_the_smallest_p_value(calibration):
    """Out of sample: further out than every reference window in both views, the rank is 1 / (windows + 1)."""
    shift, _ = calibration.tests(30)
    windows = len(shift.smallest)
    far = calibration._standard[0][:30] + 100.0
    result = calibration.run(far, ("shift",), 0.05)["shift"]
    assert result.p_value == pytest.approx(1 / (windows + 1))
    ordinary = calibration.run(calibration._standard[0][:30], ("shift",), 0.05)["shift"]
    assert ordinary.p_value > 0.05


def test_a_drifted_window_names_a_feature_even_at_a_strict_level(calibration):
    """At 0.01 no feature's rank p-value can pass 0.01 / 35; the one that moved most is named instead."""
    window = calibration._standard[2][300:330].copy()
    moved = FEATURE_NAMES.index("rsi_14")
    window[:, moved] += 50
    result = calibration.run(window, ("shift",), 0.01)["shift"]
    assert result.drift and [FEATURE_NAMES[j] for j in np.flatnonzero(result.feature_drift)] == ["rsi_14"]


def test_a_moved_feature_is_flagged_and_named(calibration):
    segment = calibration._standard[0]
    window = segment[500:530].copy()
    moved = FEATURE_NAMES.index("vol_20")
    window[:, moved] += 6 * segment[:, moved].std()
    result = calibration.run(window, ("shift",), 0.05)["shift"]
    assert result.drift and result.p_value < 0.01
    assert int(np.argmin(result.feature_p_values)) == moved
    assert [FEATURE_NAMES[j] for j in np.flatnonzero(result.feature_drift)] == ["vol_20"]
    assert result.feature_values[moved] > 3  # its robust z, signed
    calm = calibration.run(segment[500:530], ("shift",), 0.05)["shift"]
    assert not calm.feature_drift.any()


def test_a_constant_feed_is_flagged_by_its_spread(calibration):
    window = calibration._standard[1][200:260].copy()
    window[20:] = window[19]  # the last 40 rows frozen
    assert calibration.run(window, ("shift",), 0.05)["shift"].drift


def test_the_feed_test_counts_rows_no_working_feed_sends():
    rows = np.zeros((10, FEATURES))
    rows[:, RANGE] = 0.01
    assert not broken_rows(rows, 4.0).any()
    rows[3, RANGE], rows[5, VOLUME_Z], rows[7, 0] = 0.0, -4.2, np.nan
    broken = broken_rows(rows, 4.0)
    assert [int(i) for i in np.flatnonzero(broken.any(axis=1))] == [3, 5, 7]
    test = FeedTest(4.0, np.zeros(500))  # the reference windows hold no broken row
    result = test.run(rows, 0.05)
    assert result.drift and result.distance == 3 and result.p_value == pytest.approx(1 / 501)
    assert {FEATURE_NAMES[j] for j in np.flatnonzero(result.feature_drift)} == {"ret_1", "range_pct", "volume_z_20"}
    rows[[3, 5, 7]] = rows[0]
    assert test.run(rows, 0.05).p_value == 1.0


def test_feed_p_values_rank_against_the_reference_counts():
    test = FeedTest(4.0, np.sort(np.r_[np.zeros(90), np.ones(8), [2, 3]]))
    rows = np.zeros((5, FEATURES))
    rows[:, RANGE] = 0.01
    rows[0, RANGE] = 0.0
    assert test.run(rows, 0.05).p_value == pytest.approx(11 / 101)  # one broken row is not rare here
    rows[1:3, RANGE] = 0.0
    assert test.run(rows, 0.05).p_value == pytest.approx(2 / 101)


def test_sizes_are_fitted_once_and_out_of_range_sizes_refused(calibration):
    assert calibration.tests(45) is calibration.tests(45)
    for size in (29, 91):
        with pytest.raises(ValueError, match="30 to 90"):
            calibration.tests(size)
    for size in range(31, 45):
        calibration.tests(size)
    assert len(calibration._fitted) == 8  # the most recent sizes, no more


def test_too_few_reference_windows_for_the_largest_size_are_refused():
    short = [np.zeros((80, FEATURES))]
    with pytest.raises(ValueError, match="holds 21 windows of 60 rows"):
        SeriesCalibration(short, lambda rows: rows, 30, 60)


def test_the_trimmed_fit_leaves_the_extremes_out_of_the_scatter_only():
    rng = np.random.default_rng(2)
    windows = rng.normal(size=(2000, 6))
    windows[:60] *= 8  # a crisis: 3% of the windows
    trimmed, plain = View.fit(windows, trim=0.1), View.fit(windows)
    assert len(trimmed.scores) == len(plain.scores) == 2000  # every window still ranks
    assert np.trace(np.linalg.inv(trimmed.precision)) < 0.5 * np.trace(np.linalg.inv(plain.precision))


def test_the_combined_p_value_keeps_its_level():
    """The smaller of two views' p-values is ranked against the reference windows' own: in sample, the share
    of windows at or below any level is that level, though each view alone would flag about as many."""
    rng = np.random.default_rng(3)
    windows = np.cumsum(rng.normal(size=(3000, 8)), axis=0) / 30 + rng.normal(size=(3000, 8))
    test = ShiftTest.fit(windows)
    p_values = np.array([test.p_value(w)[0] for w in windows[::3]])
    for level in (0.05, 0.2):
        assert abs(np.mean(p_values <= level) - level) < 0.02
    smallest = np.array([test.p_value(w)[1] for w in windows[::3]])
    assert np.mean(smallest <= 0.05) > 0.06  # the uncalibrated minimum would flag more


# the shifts the evidence injects -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prices():
    return load_instrument("sp500").to_numpy()[3000:3200]


def test_volatility_scales_the_daily_moves_and_keeps_bars_valid(prices):
    shifted = drift_shifts.volatility(prices, 3.0, 100)
    np.testing.assert_array_equal(shifted[:100], prices[:100])
    before, after = np.diff(np.log(prices[99:, 3])), np.diff(np.log(shifted[99:, 3]))
    assert after.std() == pytest.approx(3 * before.std(), rel=1e-6)
    assert after.mean() == pytest.approx(before.mean(), abs=1e-12)  # the trend stays
    assert (shifted[:, 1] >= shifted[:, [0, 3]].max(axis=1) - 1e-9).all()
    assert (shifted[:, 2] <= shifted[:, [0, 3]].min(axis=1) + 1e-9).all()


def test_a_drift_adds_its_annual_return(prices):
    shifted = drift_shifts.drift(prices, -0.5, 100)
    added = np.log(shifted[-1, 3] / prices[-1, 3])
    assert added == pytest.approx(-0.5 * 100 / 252)


def test_broken_feeds(prices):
    close_only = drift_shifts.close_only(prices, 150)
    assert (close_only[150:, :3] == close_only[150:, [3]]).all() and (close_only[:150] == prices[:150]).all()
    stale = drift_shifts.stale(prices, 150)
    assert (stale[150:, :4] == prices[149, 3]).all()
    volume = drift_shifts.volume_scale(prices, 1000, 150)
    np.testing.assert_allclose(volume[150:, 4], 1000 * prices[150:, 4])


# settings ----------------------------------------------------------------------------------------------------

def test_series_settings_take_only_series_tests():
    assert DriftSettings().tests == ("shift", "feed") and DriftSettings().votes == 1
    with pytest.raises(SettingsError, match="'tests' names \\['ks'\\], not tests of calibration 'series'.*iid"):
        DriftSettings.from_extra({"tests": "ks,shift"})
    iid = DriftSettings.from_extra({"calibration": "iid"})
    assert iid.tests == IID_TESTS and iid.votes == 2
    assert DriftSettings.from_extra({"calibration": "iid", "tests": "ks"}).votes == 1
    with pytest.raises(SettingsError, match="'max_window_size' 50 is below 'window_size' 60"):
        DriftSettings.from_extra({"max_window_size": 50})
    assert DriftSettings.from_extra({"calibration": "iid", "window_size": 300}).window_size == 300
    for tests in ("", "shift,shift"):
        with pytest.raises(SettingsError, match="at least one test, each once"):
            DriftSettings.from_extra({"tests": tests})
