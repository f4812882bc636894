"""The drift reference round-trips and refuses to load when tampered with; the statistics behave as documented."""

import asyncio
import json
import shutil

import alibi_detect
import numpy as np
import pytest

from seldon_market_ab.detectors.checks import DriftChecks
from seldon_market_ab.detectors.online import StoredThresholdsCVMDriftOnline, online_detector, online_thresholds
from seldon_market_ab.detectors.reference import (
    HELDOUT_FILE,
    METADATA_FILE,
    REFERENCE_FILE,
    SERIES_FILE,
    InvalidReference,
    Reference,
    write_reference,
)
from seldon_market_ab.detectors.statistics import PSI_MAJOR, bin_shares, break_ties, psi, psi_edges
from seldon_market_ab.features import FEATURE_NAMES

from ..conftest import MODELS

SHIPPED = MODELS / "drift-detector"


@pytest.fixture(scope="module")
def shipped() -> Reference:
    return Reference.load(SHIPPED)


def _small_reference(folder, rng, rows=200, width=3) -> Reference:
    data = rng.normal(size=(rows, width)).astype(np.float32)
    online = {"ert": 50, "window_sizes": [5], "n_bootstraps": 10, "reference_rows": rows, "features": width,
              "thresholds": [0.0] * 9}
    series = {"x": data[:120], "y": data[120:]}
    return write_reference(folder, data, data[:20] + 1, series, ("a", "b", "c"), {"test": True}, online)


def test_the_reference_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    written = _small_reference(tmp_path, rng)
    loaded = Reference.load(tmp_path)
    np.testing.assert_array_equal(loaded.rows, written.rows)
    np.testing.assert_array_equal(loaded.heldout, written.heldout)
    assert [len(s) for s in loaded.segments()] == [120, 80]  # each instrument's rows apart
    np.testing.assert_array_equal(np.concatenate(loaded.segments()), written.rows)
    assert loaded.features == ("a", "b", "c")
    np.testing.assert_allclose(loaded.mean, written.rows.mean(axis=0), rtol=1e-6)
    assert loaded.psi_edges.shape == (9, 3)
    assert not np.load(tmp_path / REFERENCE_FILE, allow_pickle=False).dtype.hasobject  # nothing to unpickle


@pytest.mark.parametrize("missing", [REFERENCE_FILE, HELDOUT_FILE, SERIES_FILE, METADATA_FILE])
def test_a_missing_file_fails_the_load(tmp_path, missing):
    _small_reference(tmp_path, np.random.default_rng(0))
    (tmp_path / missing).unlink()
    with pytest.raises(InvalidReference, match=f"missing \\['{missing}'\\].*market-ab reference"):
        Reference.load(tmp_path)


def test_a_tampered_array_fails_the_load(tmp_path):
    reference = _small_reference(tmp_path, np.random.default_rng(0))
    changed = reference.rows.copy()
    changed[0, 0] += 1
    np.save(tmp_path / REFERENCE_FILE, changed, allow_pickle=False)
    with pytest.raises(InvalidReference, match="does not match the SHA-256"):
        Reference.load(tmp_path)


def test_an_unknown_format_fails_the_load(tmp_path):
    _small_reference(tmp_path, np.random.default_rng(0))
    metadata = json.loads((tmp_path / METADATA_FILE).read_text())
    metadata["format"] = 99
    (tmp_path / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(InvalidReference, match="format 99.*market-ab reference"):
        Reference.load(tmp_path)


def test_the_shipped_reference_holds_the_serving_features(shipped):
    assert shipped.features == FEATURE_NAMES
    assert shipped.rows.shape == (shipped.metadata["rows"], len(FEATURE_NAMES))
    assert np.isfinite(shipped.rows).all() and np.isfinite(shipped.heldout).all()
    source = shipped.metadata["source"]
    assert source["last_date"] < "2010-01-01"  # the training period only: validation starts in 2010
    assert sum(source["instruments"].values()) == len(shipped.rows) + len(shipped.heldout) == len(shipped.series)
    assert shipped.metadata["series_instruments"] == source["instruments"]
    assert np.isfinite(shipped.series).all()
    # the series is every row of the period in order: the reference rows at their drawn positions, the held-out
    # rows between them
    from seldon_market_ab.training.drift_reference import reference_positions

    chosen = reference_positions(len(shipped.series), len(shipped.rows), source["seed"])
    np.testing.assert_array_equal(shipped.series[chosen], shipped.rows)
    np.testing.assert_array_equal(np.delete(shipped.series, chosen, axis=0), shipped.heldout)
    # held-out rows are not reference rows
    reference_rows = {row.tobytes() for row in shipped.rows}
    assert not any(row.tobytes() in reference_rows for row in shipped.heldout)


def test_online_thresholds_are_reused_not_simulated(shipped, monkeypatch):
    """The stored thresholds are what loading uses; simulating them again would take seconds."""
    def simulate(self):
        raise AssertionError("thresholds simulated at load")

    monkeypatch.setattr(alibi_detect.cd.CVMDriftOnline, "_configure_thresholds", simulate)
    detector = online_detector(shipped.rows, shipped.online)
    assert isinstance(detector, StoredThresholdsCVMDriftOnline)
    np.testing.assert_array_equal(np.asarray(detector.thresholds).ravel(),
                                  np.asarray(shipped.online["thresholds"], dtype=np.float64))


def test_stored_thresholds_match_a_fresh_simulation():
    """Pinned to alibi-detect 0.13.0: our override of its ``_configure_thresholds`` must keep meaning the same."""
    assert alibi_detect.__version__ == "0.13.0"
    rows = np.random.default_rng(0).normal(size=(100, 2))
    first = online_thresholds(rows, ert=50, window_sizes=[5], seed=3)
    again = online_thresholds(rows + 10, ert=50, window_sizes=[5], seed=3)  # rank-based: the values do not matter
    np.testing.assert_array_equal(first["thresholds"], again["thresholds"])  # NaN before the first full window
    detector = StoredThresholdsCVMDriftOnline(rows, first)
    assert np.asarray(detector.thresholds).shape == (9, 1)
    with pytest.raises(ValueError, match="computed for a reference of 100 x 2"):
        online_detector(rows[:50], first)


def test_psi_is_zero_on_the_reference_and_large_on_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(5000, 2))
    edges = psi_edges(reference)
    expected = bin_shares(reference, edges)
    same = psi(expected, bin_shares(rng.normal(size=(5000, 2)), edges))
    shifted = psi(expected, bin_shares(rng.normal(loc=[0.0, 1.0], size=(5000, 2)), edges))
    assert (same < 0.01).all()
    assert shifted[0] < 0.01 and shifted[1] > PSI_MAJOR


def test_break_ties_moves_values_by_less_than_a_millionth_of_their_scale():
    rows = np.zeros((1000, 2), np.float32)
    broken = break_ties(rows, np.array([1.0, 100.0], np.float32))
    assert len(np.unique(broken[:, 0])) > 990
    assert np.abs(broken[:, 0]).max() <= 0.5e-6 and np.abs(broken[:, 1]).max() <= 0.5e-4


def test_checks_pass_held_out_rows_and_flag_a_shift(shipped):
    checks = DriftChecks(shipped, ("ks", "cvm", "tabular", "psi"))
    rng = np.random.default_rng(0)
    null = checks.run(shipped.heldout[rng.choice(len(shipped.heldout), 250, replace=False)])
    shifted_rows = shipped.heldout[:250].copy()
    column = FEATURE_NAMES.index("vol_20")
    shifted_rows[:, column] *= 3  # volatility three times the training period's
    shifted = checks.run(shifted_rows)
    assert sum(r.drift for r in null.values()) <= 1
    assert all(r.drift for r in shifted.values())
    assert int(np.argmin(shifted["ks"].feature_p_values)) == column
    assert int(np.argmax(shifted["psi"].feature_values)) == column


def test_the_runtime_refuses_a_reference_of_other_features(tmp_path):
    """A reference built on other features than the serving code computes cannot be served (training/serving skew)."""
    from mlserver.settings import ModelParameters, ModelSettings

    from seldon_market_ab.detectors.drift import DriftRuntime

    folder = tmp_path / "drift-detector"
    shutil.copytree(SHIPPED, folder)
    metadata = json.loads((folder / METADATA_FILE).read_text())
    metadata["features"][0] = "ret_2"
    (folder / METADATA_FILE).write_text(json.dumps(metadata))
    settings = ModelSettings(name="drift-detector", implementation=DriftRuntime,
                             parameters=ModelParameters(uri=str(folder), extra={"online": False}))
    with pytest.raises(InvalidReference, match="other features"):
        asyncio.run(DriftRuntime(settings).load())


def test_the_online_detector_keeps_bounded_state_and_the_same_verdicts(shipped):
    """Trimming alibi-detect's stream buffers changes no statistic: a plain ``CVMDriftOnline`` with the same
    thresholds gives the same ones, row after row."""
    rows = shipped.rows
    ours = online_detector(rows, shipped.online)

    class Untrimmed(alibi_detect.cd.CVMDriftOnline):
        def _configure_thresholds(self):
            self.thresholds = ours.thresholds

    plain = Untrimmed(rows, ert=shipped.online["ert"], window_sizes=shipped.online["window_sizes"], verbose=False)
    stream = np.concatenate([shipped.heldout[:150], shipped.heldout[:150] * 3])
    for row in stream:
        a, b = ours.predict(row)["data"], plain.predict(row)["data"]
        assert a["is_drift"] == b["is_drift"]
        np.testing.assert_array_equal(a["test_stat"], b["test_stat"])
    assert len(ours.xs) == max(shipped.online["window_sizes"]) and len(plain.xs) == len(stream)
    assert sum(plain.drift_preds[150:]) > 0  # the tripled stream did raise the alarm
